"""Serving immutable blobs fast: strong ETags, Last-Modified, 304s, HEAD and single Range requests.

Index files are small and hot, so their bytes are kept in memory (bounded); package files stream
from disk, or are handed to nginx with ``X-Accel-Redirect`` when configured.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from stockade.storage.interfaces import BlobStore

IMMUTABLE = "public, max-age=31536000, immutable"
CHUNK = 256 * 1024


class BytesCache:
    """LRU of blob bytes, bounded by total size; blobs are immutable so entries never go stale."""

    def __init__(self, max_bytes: int = 512 * 1024**2, max_item: int = 64 * 1024**2) -> None:
        self.max_bytes = max_bytes
        self.max_item = max_item
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, sha256: str) -> bytes | None:
        with self._lock:
            data = self._items.get(sha256)
            if data is not None:
                self._items.move_to_end(sha256)
            return data

    def put(self, sha256: str, data: bytes) -> None:
        if len(data) > self.max_item:
            return
        with self._lock:
            if sha256 in self._items:
                return
            self._items[sha256] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)


def _headers(
    sha256: str, size: int, modified: float, cache_control: str, ctype: str
) -> dict[str, str]:
    return {
        "etag": f'"{sha256}"',
        "last-modified": formatdate(modified, usegmt=True),
        "cache-control": cache_control,
        "content-type": ctype,
        "accept-ranges": "bytes",
        "content-length": str(size),
    }


def not_modified(request: Request, etag: str, modified: float) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return etag in tags or "*" in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            return int(modified) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """A (start, end inclusive) pair, None for 'serve everything', 'invalid' for 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return "invalid"
            return max(0, size - length), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "invalid"
    return start, min(end, size - 1)


class BlobResponder:
    def __init__(self, blobs: BlobStore, cache: BytesCache, x_accel: str | None) -> None:
        self.blobs = blobs
        self.cache = cache
        self.x_accel = x_accel.rstrip("/") + "/" if x_accel else None

    async def respond(
        self,
        request: Request,
        sha256: str,
        *,
        modified: float,
        cache_control: str,
        content_type: str,
        in_memory: bool,
    ) -> Response:
        etag = f'"{sha256}"'
        if not_modified(request, etag, modified):
            headers = {
                "etag": etag,
                "cache-control": cache_control,
                "last-modified": formatdate(modified, usegmt=True),
            }
            return Response(status_code=304, headers=headers)
        data = self.cache.get(sha256) if in_memory else None
        if data is None and in_memory:
            data = await anyio.to_thread.run_sync(self.blobs.read_bytes, sha256)
            self.cache.put(sha256, data)
        size = (
            len(data)
            if data is not None
            else await anyio.to_thread.run_sync(self.blobs.size, sha256)
        )
        headers = _headers(sha256, size, modified, cache_control, content_type)
        if self.x_accel and data is None:
            headers.pop("content-length")
            headers["x-accel-redirect"] = f"{self.x_accel}{sha256[:2]}/{sha256[2:4]}/{sha256}"
            return Response(status_code=200, headers=headers)
        span = parse_range(request.headers.get("range"), size)
        if_range = request.headers.get("if-range")
        if if_range is not None and if_range.strip() != etag:
            span = None
        if span == "invalid":
            return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
        head = request.method == "HEAD"
        if isinstance(span, tuple):
            start, end = span
            headers["content-range"] = f"bytes {start}-{end}/{size}"
            headers["content-length"] = str(end - start + 1)
            return self._body(206, headers, data, sha256, start, end, head)
        return self._body(200, headers, data, sha256, 0, size - 1, head)

    def _body(
        self,
        status: int,
        headers: dict[str, str],
        data: bytes | None,
        sha256: str,
        start: int,
        end: int,
        head: bool,
    ) -> Response:
        if head:
            return Response(status_code=status, headers=headers)
        if data is not None:
            return Response(data[start : end + 1], status_code=status, headers=headers)
        path = self.blobs.local_path(sha256)
        assert path is not None
        return StreamingResponse(_stream(path, start, end), status_code=status, headers=headers)


async def _stream(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as fh:
        await fh.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = await fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
