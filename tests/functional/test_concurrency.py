"""Concurrent uploads against a real ``stockade serve`` lose nothing and never fail with 5xx (§12).

- 12 clients upload 240 distinct packages in parallel into one channel (two subdirs), one or
  two files per request: each is listed exactly once by the API and in the published index, which
  agrees with itself; no request fails.
- Several clients upload the same filename at the same moment: exactly one 201, the others 409,
  and the file served is the winner's.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL
from tests.factories.packages import PackageSpec, build_conda, file
from tests.support.process import ServerProcess, server_process
from tests.support.published import check_channel
from tests.support.server import fresh_database

pytestmark = [
    pytest.mark.functional,
    pytest.mark.slow,
    pytest.mark.xdist_group("concurrency"),
]

CLIENTS = 12
PACKAGES = 240
SUBDIRS = ("noarch", "linux-64")
NAMES = 20  # 240 packages over 20 names: several uploads rebuild the same shard at once


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp(f"concurrency-{backend}")
    with (
        fresh_database(backend, data_dir, PG_URL) as db_url,
        server_process(data_dir, db_url) as live,
    ):
        yield live


def _packages(directory: Path) -> list[Path]:
    """``PACKAGES`` small distinct packages; client ``w`` gets ``paths[w::CLIENTS]``, whose
    subdirs alternate, so one request of two of them spans both subdirs."""
    paths = []
    for i in range(PACKAGES):
        spec = PackageSpec(
            name=f"conc-{i % NAMES}",
            version=f"1.{i}",
            build=f"h{i:04d}_0",
            subdir=SUBDIRS[(i // CLIENTS) % len(SUBDIRS)],
            payload=(file(f"lib/conc-{i}.txt", f"package {i}\n".encode()),),
        )
        target = directory / spec.subdir
        target.mkdir(exist_ok=True)
        paths.append(build_conda(target, spec))
    return paths


def _upload(client: httpx.Client, channel: str, path: Path, *, put: bool) -> httpx.Response:
    data = path.read_bytes()
    if put:
        return client.put(
            f"/api/v1/channels/{channel}/files/{path.name}",
            content=data,
            params={"sha256": hashlib.sha256(data).hexdigest()},
        )
    return client.post(f"/api/v1/channels/{channel}/files", files=[("files", (path.name, data))])


def _requests(worker: int, paths: list[Path]) -> list[list[Path]]:
    """How a client sends its files: one per request (PUT or POST), or two per POST, one per
    subdir, in subdir order ``noarch, linux-64`` for some clients and the reverse for others."""
    if worker % 3 == 0:
        return [[p] for p in paths]
    pairs = [paths[i : i + 2] for i in range(0, len(paths), 2)]
    return [pair[::-1] if worker % 3 == 2 else pair for pair in pairs]


def _send(client: httpx.Client, channel: str, files: list[Path], worker: int) -> httpx.Response:
    if len(files) == 1:
        return _upload(client, channel, files[0], put=worker % 2 == 1)
    parts = [("files", (p.name, p.read_bytes())) for p in files]
    return client.post(f"/api/v1/channels/{channel}/files", files=parts)


def test_parallel_uploads_lose_nothing(server: ServerProcess, tmp_path: Path) -> None:
    channel = server.new_channel("conc")
    paths = _packages(tmp_path)
    expected = {(p.parent.name, p.name): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        with server.client() as client:
            for files in _requests(worker, paths[worker::CLIENTS]):
                names = [p.name for p in files]
                try:
                    response = _send(client, channel, files, worker)
                except httpx.TransportError as exc:  # e.g. the connection closed after a 500
                    with lock:
                        failures.append(f"{names}: {exc!r}")
                    continue
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code != 201:
                        failures.append(f"{names}: {response.status_code} {response.text[:200]}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(work, range(CLIENTS)))
    assert not failures, f"{statuses}: {failures[:5]}\n{server.log_tail(10)}"

    artifacts = server.artifacts(channel)
    listed = Counter((a["subdir"], a["filename"]) for a in artifacts)
    assert [k for k, n in listed.items() if n > 1] == []
    assert {(a["subdir"], a["filename"]): a["sha256"] for a in artifacts} == expected
    server.wait_published(channel)
    with server.client() as client:
        snapshots = check_channel(
            client, channel, artifacts, blob_dir=server.data_dir / "blobs", exact=True
        )
    assert set(snapshots) == set(SUBDIRS)
    assert sum(len(s.records) for s in snapshots.values()) == PACKAGES


def _contend(
    server: ServerProcess, channel: str, path: Path, i: int, barrier: threading.Barrier
) -> tuple[int, str, str]:
    """Upload ``path`` the moment every contender is ready; (status, body, sha256 sent)."""
    data = path.read_bytes()
    with server.client() as client:
        barrier.wait()
        response = _upload(client, channel, path, put=i % 2 == 0)
    return response.status_code, response.text[:300], hashlib.sha256(data).hexdigest()


def test_same_filename_at_once_has_one_winner(server: ServerProcess, tmp_path: Path) -> None:
    channel = server.new_channel("race")
    contenders = 8
    for round_ in range(4):
        # Same filename, different bytes: which one won must be visible in what is served.
        paths = []
        for i in range(contenders):
            spec = PackageSpec(
                name=f"race-{round_}",
                subdir=SUBDIRS[round_ % 2],
                payload=(file("lib/race.txt", f"contender {i}\n".encode()),),
            )
            target = tmp_path / f"{round_}-{i}"
            target.mkdir()
            paths.append(build_conda(target, spec))
        barrier = threading.Barrier(contenders)
        with ThreadPoolExecutor(contenders) as pool:
            futures = [
                pool.submit(_contend, server, channel, path, i, barrier)
                for i, path in enumerate(paths)
            ]
            results = [f.result() for f in futures]
        codes = sorted(code for code, _, _ in results)
        assert codes == [201] + [409] * (contenders - 1), [
            (c, t) for c, t, _ in results if c != 409
        ]
        winner = next(sha for code, _, sha in results if code == 201)
        filename = paths[0].name
        subdir = SUBDIRS[round_ % 2]
        with server.client() as client:
            shown = client.get(f"/api/v1/channels/{channel}/files/{subdir}/{filename}").json()
            assert shown["sha256"] == winner
        # An upload is served only once its scan verdict is in (docs/adr/0012): wait for the
        # verdict (the publication it asks for comes after it, so waiting for publications alone
        # could end before the scan did), then what is served must be the winner's bytes.
        shown = _verdict(server, f"/api/v1/channels/{channel}/files/{subdir}/{filename}")
        assert (shown["sha256"], shown["scan_status"]) == (winner, "clean")
        server.wait_published(channel)
        with server.client() as client:
            served = client.get(f"/conda/{channel}/{subdir}/{filename}")
            assert served.status_code == 200, (served.status_code, served.text[:300], shown)
            assert hashlib.sha256(served.content).hexdigest() == winner
    server.wait_published(channel)
    with server.client() as client:
        check_channel(client, channel, server.artifacts(channel), exact=True)


def _verdict(server: ServerProcess, path: str, timeout: float = 60.0) -> dict[str, Any]:
    """The file as listed once its scan is no longer pending."""
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while True:
            shown: dict[str, Any] = client.get(path).json()
            if shown["scan_status"] != "pending" or time.monotonic() > deadline:
                return shown
            time.sleep(0.05)
