"""A real ``stockade serve``: private file modes, and a deadline for a request's headers.

The data folder is prepared as an older Stockade left it (everything world-readable, 0644/0755)
before the server starts on it; the server tightens it and creates what it adds privately.
Then the server gets 20 half-sent requests (a 2 s header deadline): each is closed, while a normal
request still works.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stockade.storage.permissions import PRIVATE_DIR, PRIVATE_FILE
from tests.conftest import TESTDATA
from tests.support.process import STOCKADE, ServerProcess, server_process
from tests.support.server import fresh_database

pytestmark = pytest.mark.functional

HEADER_TIMEOUT_S = 2
OLD_BLOB = "ab" * 32


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("hardening")
    _as_an_older_version_left_it(data_dir)
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        server_process(
            data_dir, db_url, STOCKADE_SERVER__HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S)
        ) as server,
    ):
        yield server


def _as_an_older_version_left_it(data_dir: Path) -> None:
    old = os.umask(0o022)
    try:
        os.chmod(data_dir, 0o755)
        blob = data_dir / "blobs" / OLD_BLOB[:2] / OLD_BLOB[2:4] / OLD_BLOB
        blob.parent.mkdir(parents=True)
        blob.write_bytes(b"old")
        os.chmod(blob, 0o644)
        (data_dir / "secret.key").write_bytes(b"k" * 44)
        os.chmod(data_dir / "secret.key", 0o644)
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_folder_is_private(served: ServerProcess) -> None:
    channel = served.new_channel(prefix="modes")
    package = TESTDATA / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
    with served.client() as client, package.open("rb") as fh:
        files = {"files": (package.name, fh, "application/octet-stream")}
        response = client.post(f"/api/v1/channels/{channel}/files", files=files)
    assert response.status_code == 201, response.text
    served.wait_published(channel)
    data = served.data_dir
    assert _mode(data) == PRIVATE_DIR
    for name in ("stockade.db", "stockade.db-wal", "stockade.db-shm", "jobs.db", "secret.key"):
        assert _mode(data / name) == PRIVATE_FILE, name
    blobs = list((data / "blobs").glob("??/??/*"))
    assert len(blobs) > 2  # the old one, the package, its indexes
    for path in blobs:
        assert _mode(path) == PRIVATE_FILE, path
        assert _mode(path.parent) == PRIVATE_DIR
        assert _mode(path.parent.parent) == PRIVATE_DIR
    for folder in (data / "blobs", data / "blobs" / "tmp", data / "spool"):
        assert _mode(folder) == PRIVATE_DIR, folder


def _half_sent(port: int, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_half_sent_requests_are_closed_and_others_served(served: ServerProcess) -> None:
    beginnings = [
        b"",  # opened, nothing sent
        b"GET /api/v1/whoami HTTP/1.1\r\n",  # request line only
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # in the middle of a header
        b"POST /api/v1/channels HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n",  # no blank line
    ]
    sockets = [_half_sent(served.port, beginnings[i % len(beginnings)]) for i in range(20)]
    # A kept-alive connection whose next request stops half-way.
    kept = _half_sent(served.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept.recv(4096).startswith(b"HTTP/1.1 200")
    kept.sendall(b"GET /healthz HTTP/1.1\r\n")
    sockets.append(kept)
    try:
        started = time.monotonic()
        response = httpx.get(f"{served.url}/healthz", timeout=10)
        assert response.status_code == 200  # served meanwhile
        for sock in sockets:
            assert _closed_by_server(sock, within=HEADER_TIMEOUT_S * 3), (
                "a half-sent request stayed"
            )
        assert time.monotonic() - started < HEADER_TIMEOUT_S * 3
        response = httpx.get(f"{served.url}/healthz", timeout=10)
        assert response.status_code == 200
    finally:
        for sock in sockets:
            sock.close()


def test_a_request_whose_headers_arrived_is_not_cut_off(served: ServerProcess) -> None:
    """The deadline is for headers only: a slow body within its own limits is still read."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/channels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n{"
        )
        time.sleep(HEADER_TIMEOUT_S + 1)
        sock.sendall(b"}")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_db_upgrade_creates_a_private_database(tmp_path: Path) -> None:
    """The documented ``stockade db upgrade`` before the first start does not leave a 0644 file."""
    data = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env["STOCKADE_DATA_DIR"] = str(data)
    done = subprocess.run(
        [str(STOCKADE), "db", "upgrade"], env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert _mode(data) == PRIVATE_DIR
    assert _mode(data / "stockade.db") == PRIVATE_FILE
