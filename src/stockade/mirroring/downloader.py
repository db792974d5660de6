"""Download many package files from an upstream into the blob store, concurrently, verified.

``Downloader.download_all`` is synchronous (call it from a worker thread). For ``http(s)://`` it
runs an asyncio loop with one ``httpx.AsyncClient`` and ``concurrency`` worker tasks that pull
items from the iterable one at a time (600,000 items are never 600,000 tasks); for ``file://`` a
pool of ``concurrency`` threads copies. Each file streams into a temporary file of
``blobs.staging_dir()`` while it is hashed (hashing and writing run on a thread pool, so they
overlap the network and use other cores), is checked against the record's sha256 and size, and
only then goes into the blob store with ``put_file``. A blob already present is skipped without a
request: a crashed run resumes where it was.

Threads: ``items`` is iterated, and ``on_result`` and ``should_stop`` are called, only from the
calling thread (the asyncio loop runs in it), so they need no lock. ``should_stop`` is called
before each item and about five times a second while files are in flight: keep it cheap. Once it
returns True no new item starts, transfers in flight are abandoned (their temporary files
deleted), and the summary says ``stopped``; abandoned and never-started items get no result.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

import httpx

from stockade.core.outbound import guarded_async_client
from stockade.core.urls import URLParseError, parse_url, redact_url
from stockade.mirroring.airgap_source import copy_member
from stockade.mirroring.http_fetch import STOP_POLL_S, HttpRun
from stockade.mirroring.sources import FileSource, SourceConfig, http_client_options
from stockade.mirroring.transfer import (
    DownloadItem,
    DownloadResult,
    DownloadSummary,
    RetryPolicy,
    StopSignal,
    Tally,
    TransferStoppedError,
    copy_verified,
    failure_result,
)
from stockade.storage.interfaces import BlobStore

__all__ = ["DownloadItem", "DownloadResult", "DownloadSummary", "Downloader"]

log = logging.getLogger("stockade.mirroring")


class Downloader:
    def __init__(
        self,
        config: SourceConfig,
        blobs: BlobStore,
        *,
        concurrency: int = 8,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._blobs = blobs
        self._concurrency = max(1, concurrency)
        self._retry = RetryPolicy(retries=retries, backoff_s=backoff_s)
        self._transport = transport
        try:
            is_file = parse_url(config.url).scheme == "file"
        except URLParseError:
            is_file = False  # the http(s) client refuses it
        self._files = FileSource(config) if is_file else None
        self._bundle = config.bundle  # an air-gap run: files come out of the bundle
        local = is_file or self._bundle is not None
        self._options = None if local else http_client_options(config)

    def download_all(
        self,
        items: Iterable[DownloadItem],
        *,
        on_result: Callable[[DownloadResult], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> DownloadSummary:
        tally = Tally(on_result)
        stop = StopSignal(should_stop)
        if self._files is not None or self._bundle is not None:
            self._copy_all(iter(items), tally, stop)
        else:
            asyncio.run(self._fetch_all(iter(items), tally, stop))
        return tally.summary(stop.event.is_set())

    # ----------------------------------------------------------------------------- http(s)

    async def _fetch_all(
        self, items: Iterator[DownloadItem], tally: Tally, stop: StopSignal
    ) -> None:
        limits = httpx.Limits(
            max_connections=self._concurrency, max_keepalive_connections=self._concurrency
        )
        run = HttpRun(
            blobs=self._blobs,
            store=self._store,
            retry=self._retry,
            secrets=self._config.secrets(),
            concurrency=self._concurrency,
            items=items,
            tally=tally,
            stop=stop,
        )
        try:
            options = replace(self._options or http_client_options(self._config), limits=limits)
            async with guarded_async_client(
                self._config.outbound, options, transport=self._transport
            ) as client:
                await run.run(client)
        finally:
            run.close()

    # ----------------------------------------------------------------------------- file://

    def _copy_all(self, items: Iterator[DownloadItem], tally: Tally, stop: StopSignal) -> None:
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="mirror-copy") as pool:
            pending: set[Future[DownloadResult | None]] = set()
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * self._concurrency and not stop.check():
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                    else:
                        pending.add(pool.submit(self._copy_one, item, stop.event))
                if not pending and (exhausted or stop.check()):
                    return
                done, pending = wait(pending, timeout=STOP_POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    if result is not None:
                        tally.add(result)
                stop.check()

    def _copy_one(self, item: DownloadItem, stop: threading.Event) -> DownloadResult | None:
        try:
            if stop.is_set():
                return None
            if self._blobs.exists(item.sha256):
                return DownloadResult(item, True, 0, True)
            path = self._copy_local(item, stop)
            size = path.stat().st_size
            self._store(path, item.sha256)
            return DownloadResult(item, True, size, False)
        except TransferStoppedError:
            return None
        except FileNotFoundError:
            message = f"{redact_url(item.url)}: missing"
            return DownloadResult(item, False, 0, False, message, "mirror:upstream-status")
        except Exception as exc:  # noqa: BLE001 - one file's failure is reported, the run goes on
            return failure_result(item, exc)

    def _copy_local(self, item: DownloadItem, stop: threading.Event) -> Path:
        staging = self._blobs.staging_dir()
        if self._bundle is not None:
            return copy_member(
                self._bundle, item.subdir, item.filename, staging, item.sha256, item.size, stop
            )
        assert self._files is not None
        source = self._files.path_for_url(item.url)
        return copy_verified(source, staging, item.sha256, item.size, stop)

    def _store(self, path: Path, sha256: str) -> None:
        try:
            self._blobs.put_file(path, sha256)
        finally:
            path.unlink(missing_ok=True)  # put_file moved it, unless it failed
