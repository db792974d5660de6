"""One ``Downloader.download_all`` over HTTP(S): an asyncio loop in the calling thread.

``concurrency`` worker tasks pull items one at a time from the iterable. A worker checks the blob
store, streams the body into a verifying temporary file (writes and hashing go to a thread pool in
~1 MiB pieces, one piece in flight while the next is read), then hands the verified file to a
store task (``put_file`` and its fsync run on a second pool) and takes its next item at once, so
storing overlaps downloading. At most ``concurrency`` files wait to be stored. A monitor polls
``should_stop`` and cancels the workers; files already verified are still stored and reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from stockade.core.outbound import RefusedDestinationError
from stockade.core.urls import redact_url
from stockade.mirroring.transfer import (
    CHUNK,
    DownloadItem,
    DownloadResult,
    RetryPolicy,
    StopSignal,
    Tally,
    TransientStatusError,
    VerifyingSink,
    failure_result,
    is_transient_status,
    refused_error,
    status_error,
    transport_error,
)
from stockade.storage.interfaces import BlobStore

log = logging.getLogger("stockade.mirroring")
STOP_POLL_S = 0.2
IDENTITY = {"accept-encoding": "identity"}  # package files are compressed already


class HttpRun:
    def __init__(
        self,
        *,
        blobs: BlobStore,
        store: Callable[[Path, str], None],
        retry: RetryPolicy,
        secrets: tuple[str, ...],
        concurrency: int,
        items: Iterator[DownloadItem],
        tally: Tally,
        stop: StopSignal,
    ) -> None:
        self._blobs = blobs
        self._store_file = store
        self._retry = retry
        self._secrets = secrets
        self._concurrency = concurrency
        self._items = items
        self._tally = tally
        self._stop = stop
        self._staging = blobs.staging_dir()
        self._io = ThreadPoolExecutor(concurrency, thread_name_prefix="mirror-io")
        self._storing = ThreadPoolExecutor(concurrency, thread_name_prefix="mirror-store")
        self._inflight: dict[str, asyncio.Event] = {}
        self._stores: set[asyncio.Task[None]] = set()
        self._store_slots: asyncio.Semaphore | None = None

    def close(self) -> None:
        self._io.shutdown(wait=True)
        self._storing.shutdown(wait=True)

    async def run(self, client: httpx.AsyncClient) -> None:
        self._store_slots = asyncio.Semaphore(self._concurrency)
        workers = [asyncio.create_task(self._worker(client)) for _ in range(self._concurrency)]
        monitor = asyncio.create_task(self._monitor(workers))
        try:
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
            outcomes += await asyncio.gather(*list(self._stores), return_exceptions=True)
        finally:
            monitor.cancel()
            for task in [*workers, *self._stores]:
                task.cancel()
        for outcome in outcomes:  # a crash (a callback raised...), not a cancelled transfer
            if isinstance(outcome, Exception):
                raise outcome

    async def _monitor(self, workers: list[asyncio.Task[None]]) -> None:
        while not self._stop.check():  # noqa: ASYNC110 - should_stop is a plain callable
            await asyncio.sleep(STOP_POLL_S)
        for worker in workers:
            worker.cancel()

    async def _worker(self, client: httpx.AsyncClient) -> None:
        try:
            while not self._stop.check():
                item = next(self._items, None)
                if item is None:
                    return
                result = await self._one(client, item)
                if result is not None:
                    self._tally.add(result)
        except Exception:
            self._stop.event.set()  # the iterable or a callback failed: the others stop too
            raise

    async def _in(self, pool: ThreadPoolExecutor, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, func, *args)

    async def _one(self, client: httpx.AsyncClient, item: DownloadItem) -> DownloadResult | None:
        """The result, or None when a store task took the verified file (it reports)."""
        while (busy := self._inflight.get(item.sha256)) is not None:
            await busy.wait()  # the same file for another record is on its way
        done = self._inflight[item.sha256] = asyncio.Event()
        handed_over = False
        try:
            if await self._in(self._io, self._blobs.exists, item.sha256):
                return DownloadResult(item, True, 0, True)
            path, size = await self._fetch_retrying(client, item)
            handed_over = await self._hand_over(item, path, size, done)
            return None
        except Exception as exc:  # noqa: BLE001 - one file's failure is reported, the run goes on
            return failure_result(item, exc)
        finally:
            if not handed_over:
                self._inflight.pop(item.sha256, None)
                done.set()

    async def _hand_over(
        self, item: DownloadItem, path: Path, size: int, done: asyncio.Event
    ) -> bool:
        assert self._store_slots is not None
        try:
            await self._store_slots.acquire()
        except BaseException:
            path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink when cancelled
            raise
        task = asyncio.create_task(self._store(item, path, size, done))
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)
        return True

    async def _store(self, item: DownloadItem, path: Path, size: int, done: asyncio.Event) -> None:
        assert self._store_slots is not None
        try:
            try:
                await self._in(self._storing, self._store_file, path, item.sha256)
                result = DownloadResult(item, True, size, False)
            except Exception as exc:  # noqa: BLE001 - reported as this file's failure
                result = failure_result(item, exc)
            self._tally.add(result)
        except Exception:
            self._stop.event.set()
            raise
        finally:
            self._store_slots.release()
            self._inflight.pop(item.sha256, None)
            done.set()

    async def _fetch_retrying(
        self, client: httpx.AsyncClient, item: DownloadItem
    ) -> tuple[Path, int]:
        attempt = 0
        while True:
            try:
                return await self._fetch_once(client, item, attempt)
            except RefusedDestinationError as exc:
                raise refused_error(exc, item.url) from None
            except httpx.TransportError as exc:
                if not self._retry.should_retry(attempt, exc):
                    raise transport_error(exc, item.url, self._secrets) from None
                delay = self._retry.delay(attempt, None)
            except TransientStatusError as later:
                delay = self._retry.delay(attempt, later.retry_after)
            log.info("retrying %s in %.2fs", redact_url(item.url), delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _fetch_once(
        self, client: httpx.AsyncClient, item: DownloadItem, attempt: int
    ) -> tuple[Path, int]:
        async with client.stream("GET", item.url, headers=IDENTITY) as response:
            status = response.status_code
            if is_transient_status(status) and attempt < self._retry.retries:
                raise TransientStatusError(response.headers.get("retry-after"))
            if not response.is_success:
                raise status_error(status, item.url, self._secrets)
            sink = VerifyingSink(self._staging, item.sha256, item.size, redact_url(item.url))
            try:
                await self._drain(response, sink)
                path: Path = await self._in(self._io, sink.finish)
                return path, sink.size
            except BaseException:
                sink.abort()
                raise

    async def _drain(self, response: httpx.Response, sink: VerifyingSink) -> None:
        """Body -> sink in ~1 MiB writes on the pool, one write in flight while reading on."""
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[None] | None = None
        buffer: list[bytes] = []
        buffered = 0
        try:
            async for chunk in response.aiter_bytes():
                buffer.append(chunk)
                buffered += len(chunk)
                if buffered >= CHUNK:
                    if pending is not None:
                        await pending
                    pending = loop.run_in_executor(self._io, sink.write_many, buffer)
                    buffer, buffered = [], 0
            if pending is not None:
                await pending
                pending = None
            if buffer:
                await loop.run_in_executor(self._io, sink.write_many, buffer)
        finally:
            if pending is not None and not pending.done():
                await asyncio.wait([pending])  # never close the file under a running write
