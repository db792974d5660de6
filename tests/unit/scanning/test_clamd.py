"""ClamAV through a REAL clamd (Debian's clamav-daemon) with a signature database the test writes:
the test signature and EICAR are found, clean data passes, and a clamd that is down, slow or
refuses a stream gives no verdict (ScannerUnavailableError: the artifact is held)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Member, ScannerUnavailableError, ScanSubject, Verdict
from stockade.scanning.scanners.clamd import ClamdScanner, parse_address
from tests.support.clamd import (
    EICAR,
    EICAR_SIGNATURE,
    HASH_BLOB,
    HASH_SIGNATURE,
    TEST_SIGNATURE,
    TEST_STRING,
    Clamd,
    Signatures,
    require_clamd,
    run_clamd,
)
from tests.support.hostile import HostileCase, subject_for
from tests.support.hostile_yara import HOSTILE_YARA

SUBJECT = ScanSubject("demo-1.0-0.conda", "0" * 64, 1, "demo", "noarch", {})
CLAMD_CASES = [c for c in HOSTILE_YARA if c.scanner == "clamd"]
REAL_PACKAGES = Path(__file__).resolve().parents[3] / "tests" / "data" / "packages"


@pytest.fixture(scope="module")
def clamd() -> Iterator[Clamd]:
    with run_clamd() as daemon:
        yield daemon


@pytest.fixture
def scanner(clamd: Clamd) -> ClamdScanner:
    return ClamdScanner(clamd.address, timeout_s=10)


def _member(data: bytes, path: str = "share/x.bin") -> Member:
    return Member(path=path, data=data, size=len(data))


def test_clamd_starts_quickly_with_a_small_database(clamd: Clamd) -> None:
    assert clamd.startup_s < 20, clamd.startup_s


@pytest.mark.parametrize(
    ("data", "signature"),
    [
        (b"prefix " + TEST_STRING + b" suffix", TEST_SIGNATURE),
        (EICAR, EICAR_SIGNATURE),
        (HASH_BLOB, HASH_SIGNATURE),
    ],
    ids=["body-signature", "eicar", "hash-signature"],
)
def test_a_signature_in_a_member_is_a_malicious_finding(
    scanner: ClamdScanner, data: bytes, signature: str
) -> None:
    [finding] = scanner.scan_member(SUBJECT, _member(data))
    assert finding.scanner == "clamd"
    assert finding.rule == f"clamd:{signature}.UNOFFICIAL"
    assert finding.verdict == Verdict.MALICIOUS
    assert finding.member == "share/x.bin"
    assert signature in finding.evidence


def test_clean_data_of_every_size_passes(scanner: ClamdScanner) -> None:
    for size in (0, 1, 65_535, 65_536, 65_537, 3 * 1024**2):
        assert list(scanner.scan_member(SUBJECT, _member(b"\xab" * size))) == []


def test_a_signature_across_a_chunk_boundary_is_found(scanner: ClamdScanner) -> None:
    data = b"x" * (65_536 - 10) + TEST_STRING + b"y" * 100
    assert [f.rule for f in scanner.scan_member(SUBJECT, _member(data))] == [
        f"clamd:{TEST_SIGNATURE}.UNOFFICIAL"
    ]


@pytest.mark.parametrize("case", CLAMD_CASES, ids=lambda c: c.name)
def test_hostile_package_is_found_through_the_engine(
    case: HostileCase, scanner: ClamdScanner, tmp_path: Path
) -> None:
    path = case.build(tmp_path)
    report = scan_archive(path, subject_for(path), [scanner])
    assert not report.errors
    assert [(f.rule, f.verdict) for f in report.findings] == [(case.rule, case.verdict)]
    assert report.versions["clamd"] == scanner.version


def test_real_packages_are_clean(scanner: ClamdScanner) -> None:
    for path in sorted(REAL_PACKAGES.glob("*.conda"))[:5] + sorted(REAL_PACKAGES.glob("*.bz2"))[:5]:
        subject = ScanSubject(path.name, "0" * 64, 1, path.name, "noarch", {})
        report = scan_archive(path, subject, [scanner])
        assert (report.findings, report.errors) == ([], {}), path.name


def test_version_names_the_engine_and_is_cached(scanner: ClamdScanner) -> None:
    version = scanner.version
    assert version.startswith("1/ClamAV ")
    assert scanner.version == version


def test_a_stopped_clamd_gives_no_verdict() -> None:
    with run_clamd(Signatures(body={"Stockade.Other": b"OTHER-MARK-123"})) as daemon:
        scanner = ClamdScanner(daemon.address, timeout_s=5)
        assert list(scanner.scan_member(SUBJECT, _member(b"clean"))) == []
        daemon.stop()
        with pytest.raises(ScannerUnavailableError, match="is not reachable"):
            list(scanner.scan_member(SUBJECT, _member(b"clean")))
        assert ClamdScanner(daemon.address).version == "1/unavailable"


def test_the_engine_holds_the_package_when_clamd_is_down(tmp_path: Path) -> None:
    scanner = ClamdScanner(f"unix://{tmp_path}/absent.sock", timeout_s=2)
    path = CLAMD_CASES[0].build(tmp_path)
    report = scan_archive(path, subject_for(path), [scanner])
    assert report.failed
    assert "not reachable" in report.errors["clamd"]


def _fake_clamd(answer: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A TCP listener that reads one request and answers ``answer`` (None: never answers)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            try:
                request = b""
                while not request.endswith(b"\0\0\0\0"):  # the whole INSTREAM, then answer
                    part = conn.recv(65_536)
                    if not part:
                        return
                    request += part
                if answer is not None:
                    conn.sendall(answer)
                else:
                    while conn.recv(65_536):  # read on, answer nothing, until the client gives up
                        pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"INSTREAM size limit exceeded. ERROR\0", "could not scan share/x.bin: INSTREAM size"),
        (b"something else\0", "could not scan"),
        (b"", "without an answer"),
        (None, "timed out"),
    ],
    ids=["error", "unknown", "closed", "silent"],
)
def test_an_unusable_answer_gives_no_verdict(answer: bytes | None, message: str) -> None:
    server, thread = _fake_clamd(answer)
    try:
        port = server.getsockname()[1]
        scanner = ClamdScanner(f"tcp://127.0.0.1:{port}", timeout_s=1)
        with pytest.raises(ScannerUnavailableError, match=message):
            list(scanner.scan_member(SUBJECT, _member(b"data")))
    finally:
        thread.join(timeout=10)
        server.close()


def test_a_closed_port_gives_no_verdict() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ScannerUnavailableError, match="not reachable"):
        list(
            ClamdScanner(f"tcp://127.0.0.1:{port}", timeout_s=2).scan_member(SUBJECT, _member(b"x"))
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:///run/clamav/clamd.ctl", "unix:///run/clamav/clamd.ctl"),
        ("tcp://127.0.0.1:3310", "tcp://127.0.0.1:3310"),
        ("tcp://clamav.internal", "tcp://clamav.internal:3310"),
    ],
)
def test_addresses(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize(
    "text", ["http://127.0.0.1:3310", "unix://relative/path", "tcp://:3310", "tcp://h:99999", "/x"]
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_a_missing_clamd_fails_the_test_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOCKADE_TEST_CLAMD", str(tmp_path / "no-clamd"))
    monkeypatch.setattr("tests.support.clamd.DEFAULT_BINARY", str(tmp_path / "no-clamd"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="apt-get install clamav-daemon"):
        require_clamd()
