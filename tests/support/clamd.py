"""A REAL ClamAV daemon (Debian's ``clamd``) for tests, with a signature database the test writes.

::

    with run_clamd(signatures) as daemon:     # daemon.address: "unix:///tmp/clamd-…/clamd.sock"
        ClamdScanner(daemon.address).scan_member(subject, member)
        daemon.stop()                          # the socket now refuses connections

The official database needs the internet, so each start writes its own: a temporary folder with a
``clamd.conf`` (a local socket in that folder, ``Foreground yes``, no freshclam) and the
:class:`Signatures` given, as ``stockade-test.ndb`` (body signatures, hex) and
``stockade-test.hsb`` (sha256 hash signatures). :func:`default_signatures` has a harmless test
string, a hash of a harmless blob and the EICAR test string (built from parts here, so this file is
not itself a test virus). With such a database clamd starts in about a second.

The binary is ``$STOCKADE_TEST_CLAMD`` (set by ``scripts/test-env``) or ``/usr/sbin/clamd``;
:func:`require_clamd` FAILS the test when neither exists (it must not pass unseen in CI), with the
command that installs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT = 60.0
DEFAULT_BINARY = "/usr/sbin/clamd"
TEST_STRING = b"STOCKADE-CLAMAV-TEST-STRING-3f9c1e"
TEST_SIGNATURE = "Stockade.Test.String"
HASH_BLOB = b"a harmless blob that the test hash signature names\n"
HASH_SIGNATURE = "Stockade.Test.Hash"
EICAR_SIGNATURE = "Stockade.Test.Eicar"
EICAR = b"".join(
    (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$", b"EICAR-STANDARD-ANTIVIRUS-", b"TEST-FILE!$H+H*")
)


@dataclass(frozen=True)
class Signatures:
    """``body``: name -> bytes anywhere in a file (``.ndb``); ``hashes``: name -> whole content."""

    body: dict[str, bytes] = field(default_factory=dict)
    hashes: dict[str, bytes] = field(default_factory=dict)


def default_signatures() -> Signatures:
    return Signatures(
        body={TEST_SIGNATURE: TEST_STRING, EICAR_SIGNATURE: EICAR},
        hashes={HASH_SIGNATURE: HASH_BLOB},
    )


def clamd_binary() -> str | None:
    candidate = os.environ.get("STOCKADE_TEST_CLAMD") or DEFAULT_BINARY
    return candidate if os.access(candidate, os.X_OK) else shutil.which("clamd")


def require_clamd() -> str:
    binary = clamd_binary()
    if binary is None:
        pytest.fail(
            "clamd is not installed: run scripts/test-env as root, or "
            "apt-get install clamav-daemon (then STOCKADE_TEST_CLAMD=/usr/sbin/clamd)"
        )
    return binary


def write_database(folder: Path, signatures: Signatures) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ndb = "".join(f"{name}:0:*:{data.hex()}\n" for name, data in signatures.body.items())
    hsb = "".join(
        f"{hashlib.sha256(data).hexdigest()}:{len(data)}:{name}\n"
        for name, data in signatures.hashes.items()
    )
    for name, text in (("stockade-test.ndb", ndb), ("stockade-test.hsb", hsb)):
        if text:  # clamd refuses an empty database file
            (folder / name).write_text(text)


def write_config(folder: Path) -> Path:
    conf = folder / "clamd.conf"
    (folder / "tmp").mkdir(exist_ok=True)
    conf.write_text(
        "\n".join(
            (
                f"LocalSocket {folder / 'clamd.sock'}",
                "LocalSocketMode 600",
                "FixStaleSocket yes",
                f"DatabaseDirectory {folder / 'db'}",
                f"TemporaryDirectory {folder / 'tmp'}",
                f"LogFile {folder / 'clamd.log'}",
                "Foreground yes",
                "OfficialDatabaseOnly no",
                "SelfCheck 0",
                "MaxThreads 4",
                "StreamMaxLength 32M",
                "ReadTimeout 30",
                "CommandReadTimeout 10",
                "",
            )
        )
    )
    return conf


@dataclass
class Clamd:
    folder: Path
    process: subprocess.Popen[bytes]
    startup_s: float

    @property
    def socket_path(self) -> Path:
        return self.folder / "clamd.sock"

    @property
    def address(self) -> str:
        return f"unix://{self.socket_path}"

    def log(self) -> str:
        path = self.folder / "clamd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def _answers_ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            sock.sendall(b"zPING\0")
            return sock.recv(64).startswith(b"PONG")
    except OSError:
        return False


@contextmanager
def run_clamd(signatures: Signatures | None = None) -> Iterator[Clamd]:
    """Start clamd on a database of ``signatures`` (default: :func:`default_signatures`)."""
    binary = require_clamd()
    folder = Path(tempfile.mkdtemp(prefix="clamd-", dir="/tmp"))  # unix socket paths: < 108 bytes
    write_database(folder / "db", signatures or default_signatures())
    conf = write_config(folder)
    started = time.monotonic()
    process = subprocess.Popen(
        [binary, "--config-file", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon = Clamd(folder, process, 0.0)
    try:
        while not _answers_ping(daemon.socket_path):
            if process.poll() is not None:
                pytest.fail(f"clamd exited ({process.returncode}):\n{daemon.log()}")
            if time.monotonic() - started > START_TIMEOUT:
                pytest.fail(f"clamd did not start in {START_TIMEOUT:.0f} s:\n{daemon.log()}")
            time.sleep(0.05)
        daemon.startup_s = time.monotonic() - started
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)
