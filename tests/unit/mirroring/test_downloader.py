"""The downloader against a fake transport (no network) and a blob store in tmp_path."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import httpx
import pytest

from stockade.mirroring.downloader import Downloader, DownloadItem, DownloadResult
from stockade.mirroring.sources import SourceConfig
from stockade.storage.filesystem import FilesystemBlobStore

BASE = "https://up.example/chan"
FILES = {f"/chan/noarch/p{i}-1-0.conda": bytes([i]) * (100_000 * (i + 1)) for i in range(6)}


def items() -> list[DownloadItem]:
    return [
        DownloadItem(
            "noarch",
            path.rsplit("/", 1)[1],
            hashlib.sha256(body).hexdigest(),
            len(body),
            BASE[:-5] + path,
        )
        for path, body in FILES.items()
    ]


def downloader(
    tmp_path: Path, handler: object, **kwargs: object
) -> tuple[Downloader, FilesystemBlobStore]:
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    return Downloader(SourceConfig(BASE), blobs, transport=transport, backoff_s=0, **kwargs), blobs  # type: ignore[arg-type]


def serve(request: httpx.Request) -> httpx.Response:
    body = FILES.get(request.url.path)
    return httpx.Response(200, content=body) if body is not None else httpx.Response(404)


def test_downloads_verifies_and_stores(tmp_path: Path) -> None:
    dl, blobs = downloader(tmp_path, serve, concurrency=3)
    seen: list[DownloadResult] = []
    caller = threading.get_ident()
    threads: set[int] = set()

    def on_result(result: DownloadResult) -> None:
        threads.add(threading.get_ident())
        seen.append(result)

    summary = dl.download_all(items(), on_result=on_result)
    assert (summary.done, summary.skipped, summary.failed, summary.stopped) == (6, 0, [], False)
    assert summary.bytes == sum(map(len, FILES.values()))
    assert len(seen) == 6
    assert threads == {caller}
    for item in items():
        assert blobs.read_bytes(item.sha256) == FILES[httpx.URL(item.url).path]
    assert list(blobs.staging_dir().iterdir()) == []

    again = dl.download_all(items())
    assert (again.done, again.skipped, again.bytes) == (0, 6, 0)


def test_mismatch_and_missing_are_reported_not_stored(tmp_path: Path) -> None:
    dl, blobs = downloader(tmp_path, serve)
    bad = [
        DownloadItem("noarch", "p0-1-0.conda", "0" * 64, None, f"{BASE}/noarch/p0-1-0.conda"),
        DownloadItem("noarch", "gone.conda", "1" * 64, None, f"{BASE}/noarch/gone.conda"),
    ]
    summary = dl.download_all([*bad, items()[1]])
    assert summary.done == 1
    assert {r.item.filename: r.code for r in summary.failed} == {
        "p0-1-0.conda": "mirror:sha256-mismatch",
        "gone.conda": "mirror:upstream-status",
    }
    assert not blobs.exists("0" * 64)
    assert list(blobs.staging_dir().iterdir()) == []


def test_retries_transient_statuses_but_not_4xx(tmp_path: Path) -> None:
    calls: dict[str, int] = {}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] = calls.get(request.url.path, 0) + 1
        if request.url.path.endswith("p0-1-0.conda") and calls[request.url.path] <= 2:
            return httpx.Response(500)
        if request.url.path.endswith("p1-1-0.conda"):
            return httpx.Response(403)
        if request.url.path.endswith("p2-1-0.conda"):
            return httpx.Response(429)
        return serve(request)

    dl, _ = downloader(tmp_path, flaky, retries=2)
    summary = dl.download_all(items()[:3])
    assert summary.done == 1
    assert {r.item.filename: r.code for r in summary.failed} == {
        "p1-1-0.conda": "mirror:upstream-auth",
        "p2-1-0.conda": "mirror:upstream-status",
    }
    paths = sorted(calls)
    assert [calls[p] for p in paths] == [3, 1, 3]


def test_should_stop_before_anything(tmp_path: Path) -> None:
    dl, _ = downloader(tmp_path, serve)
    summary = dl.download_all(items(), should_stop=lambda: True)
    assert summary.stopped
    assert (summary.done, summary.skipped, summary.failed) == (0, 0, [])


def test_same_file_twice_is_fetched_once(tmp_path: Path) -> None:
    calls: list[str] = []

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return serve(request)

    dl, _ = downloader(tmp_path, counting, concurrency=4)
    one = items()[0]
    summary = dl.download_all([one, one, one])
    assert (summary.done, summary.skipped) == (1, 2)
    assert len(calls) == 1


def test_a_crashing_callback_stops_the_run(tmp_path: Path) -> None:
    dl, _ = downloader(tmp_path, serve)

    def boom(_result: DownloadResult) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        dl.download_all(items(), on_result=boom)
