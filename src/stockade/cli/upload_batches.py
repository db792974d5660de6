"""Send package files in batches over a few connections, each file accepted or refused on its own.

Files are packed in order into batches of at most ``max_files`` files and ``max_bytes`` bytes (a
file larger than that goes alone) and posted to ``POST /channels/{channel}/uploads`` (multipart,
one outcome per file) by ``jobs`` threads sharing one HTTP client (one TLS context, kept-alive
connections). Bodies are streamed from disk in 64 KiB reads: a 500 MB file is never in memory.

A batch refused as a whole for its size (413) or its body (422 ``request:bad-multipart``) is sent
again one file per request, so each file gets its own answer; any other whole-batch refusal (no
access, channel gone, server unreachable) is the answer for each of its files.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stockade.cli.client import ApiClient, describe_problem, not_stockade, unreachable

MAX_FILES = 50
MAX_BYTES = 32 << 20
JOBS = 4
_SPLIT = {413, 422}  # refused for the request's size or body: send each file alone


@dataclass(frozen=True)
class Outcome:
    path: Path
    accepted: bool
    reason: str = ""
    subdir: str = ""


def plan(
    files: list[Path], max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES
) -> list[list[Path]]:
    """Consecutive batches of at most ``max_files`` files and ``max_bytes`` bytes (a bigger file
    is a batch of its own)."""
    batches: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if current and (len(current) >= max_files or size + length > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(path)
        size += length
    if current:
        batches.append(current)
    return batches


class _Tracked(io.FileIO):
    """A file read by the HTTP client that reports each read (and undoes them on a rewind)."""

    def __init__(self, path: Path, on_read: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self._on_read = on_read
        self._sent = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._sent += len(data)
        self._on_read(len(data))
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET and offset == 0:
            self.rewind()
        return super().seek(offset, whence)

    def rewind(self) -> None:
        """Take back what was reported as sent (the file is sent again)."""
        if self._sent:
            self._on_read(-self._sent)
            self._sent = 0


class BatchUploader:
    """Posts batches for one channel on one shared client; ``on_read(n)`` and ``on_done(outcome)``
    are called from the sending threads (a Rich progress is thread-safe)."""

    def __init__(
        self,
        api: ApiClient,
        channel: str,
        *,
        force: bool,
        jobs: int,
        on_read: Callable[[int], None],
        on_done: Callable[[Outcome], None],
    ) -> None:
        self.api = api
        self.channel = channel
        self.force = force
        self.jobs = max(1, jobs)
        self.on_read = on_read
        self.on_done = on_done
        self.http: httpx.Client | None = None

    def run(self, batches: list[list[Path]]) -> list[Outcome]:
        limits = httpx.Limits(max_connections=self.jobs, max_keepalive_connections=self.jobs)
        with self.api.http(limits=limits) as http, ThreadPoolExecutor(self.jobs) as pool:
            self.http = http
            done = pool.map(self.send, batches)
            return [outcome for outcomes in done for outcome in outcomes]

    def send(self, batch: list[Path]) -> list[Outcome]:
        split = len(batch) > 1
        try:
            response = self._post(batch, rewind_on=_SPLIT if split else frozenset())
        except httpx.HTTPError as exc:
            return self._all(batch, unreachable(self.api.profile.url, exc))
        if response.status_code in _SPLIT and split:
            return [outcome for path in batch for outcome in self.send([path])]
        if response.status_code >= 400:
            return self._all(batch, describe_problem(response))
        try:
            body = response.json()
            files = body["files"]
        except (ValueError, KeyError, TypeError):
            return self._all(batch, not_stockade(response))
        return [self._report(_outcome(path, item)) for path, item in _paired(batch, files)]

    def _post(self, batch: list[Path], rewind_on: frozenset[int] | set[int]) -> httpx.Response:
        """One multipart request; the files' progress is taken back if it is to be sent again."""
        assert self.http is not None
        with ExitStack() as stack:
            opened = [stack.enter_context(_Tracked(p, self.on_read)) for p in batch]
            parts = [
                ("files", (p.name, fh, "application/octet-stream"))
                for p, fh in zip(batch, opened, strict=True)
            ]
            response = self.http.post(
                f"/channels/{self.channel}/uploads", params={"force": self.force}, files=parts
            )
            if response.status_code in rewind_on:
                for fh in opened:
                    fh.rewind()
            return response

    def _all(self, batch: list[Path], reason: str) -> list[Outcome]:
        return [self._report(Outcome(path, accepted=False, reason=reason)) for path in batch]

    def _report(self, outcome: Outcome) -> Outcome:
        self.on_done(outcome)
        return outcome


def _paired(batch: list[Path], files: list[Any]) -> Iterator[tuple[Path, Any]]:
    """Each path with its outcome (the server answers in the order sent; a missing one is None)."""
    for i, path in enumerate(batch):
        yield path, files[i] if i < len(files) and isinstance(files[i], dict) else None


def _outcome(path: Path, item: dict[str, Any] | None) -> Outcome:
    if item is None:
        return Outcome(path, accepted=False, reason="the server did not answer for this file")
    if item.get("status") == "accepted":
        artifact = item.get("artifact") or {}
        return Outcome(path, accepted=True, subdir=str(artifact.get("subdir", "")))
    problem = item.get("problem") or {}
    detail = problem.get("detail") or problem.get("title") or "refused"
    where = [f"{k}={problem[k]}" for k in ("member", "field") if problem.get(k)]
    suffix = f" ({', '.join(where)})" if where else ""
    status = problem.get("status", "4xx")
    return Outcome(
        path,
        accepted=False,
        reason=f"{detail}{suffix} [HTTP {status}, {problem.get('code', 'error')}]",
    )
