"""Serving immutable blobs fast: strong ETags, Last-Modified, 304s, HEAD and single Range requests.

Pure ASGI, no Starlette ``Response`` objects on the hot path. Blobs never change, so everything
about one (its size, its header lists, small ones' bytes) is computed once and reused: answering a
cached index file is a dict lookup and two ``send`` calls, with no thread hop.

Index files are kept in memory (bounded LRU of bytes); so are small package files (up to
``SMALL_FILE``, in a smaller LRU of their own: read once in one thread hop, then sent from memory).
Bigger blobs stream from the store in 1 MiB chunks read off the event loop (memory stays flat), or
are handed to nginx with ``X-Accel-Redirect`` when configured. With an S3 store and
``[storage.s3] downloads = "redirect"``, package files are answered by a 307 to a presigned URL
(index files and shards are still sent from memory).

When nginx in front caches Stockade's public answers (``proxy_cache``, see
``docs/deployment-nginx.md``) it says so with the request header ``X-Stockade-Proxy-Cache``. Public
index files and shards are then sent inline, so that nginx can store them (it never stores an
``X-Accel-Redirect`` answer); packages and every non-public file keep ``X-Accel-Redirect``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from functools import partial

import anyio
from starlette.types import Send

from stockade.storage.interfaces import BlobStore

IMMUTABLE = "public, max-age=31536000, immutable"
CHUNK = 1024 * 1024
#: With ``X-Accel-Redirect``, bodies at least this large are sent by nginx (sendfile); smaller
#: ones (shards, small indexes) cost less to send from memory than an internal redirect.
ACCEL_MIN_SIZE = 64 * 1024
#: Sent by an nginx that caches public answers (any non-empty value). A client sending it itself
#: only gets the body from Stockade instead of from nginx's ``sendfile``: nothing else changes.
PROXY_CACHE_HEADER = b"x-stockade-proxy-cache"
#: Package files up to this size are read whole and kept in ``small`` (most conda packages of a
#: channel's own builds; big ones stream).
SMALL_FILE = 256 * 1024
SMALL_CACHE_BYTES = 32 * 1024**2

Headers = list[tuple[bytes, bytes]]


class BytesCache:
    """LRU of blob bytes, bounded by total size; blobs are immutable so entries never go stale."""

    def __init__(self, max_bytes: int = 512 * 1024**2, max_item: int = 64 * 1024**2) -> None:
        self.max_bytes = max_bytes
        self.max_item = max_item
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, sha256: str) -> bytes | None:
        # Called from the event loop only; a plain dict read needs no lock and no LRU bump
        # under the GIL. The LRU order is refreshed on every 64th hit of an entry (cheap).
        return self._items.get(sha256)

    def touch(self, sha256: str) -> None:
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)

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


class RequestInfo:
    """What the responder needs from a request, taken from the raw ASGI scope once."""

    __slots__ = (
        "if_modified_since",
        "if_none_match",
        "if_range",
        "method",
        "proxy_cache",
        "range",
    )

    def __init__(
        self,
        method: str,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
        range: str | None = None,
        if_range: str | None = None,
        proxy_cache: bool = False,
    ) -> None:
        self.method = method
        self.if_none_match = if_none_match
        self.if_modified_since = if_modified_since
        self.range = range
        self.if_range = if_range
        self.proxy_cache = proxy_cache

    @classmethod
    def from_headers(cls, method: str, headers: Iterable[tuple[bytes, bytes]]) -> RequestInfo:
        info = cls(method)
        for key, value in headers:
            if key == b"if-none-match":
                info.if_none_match = value.decode("latin-1")
            elif key == b"if-modified-since":
                info.if_modified_since = value.decode("latin-1")
            elif key == b"range":
                info.range = value.decode("latin-1")
            elif key == b"if-range":
                info.if_range = value.decode("latin-1")
            elif key == PROXY_CACHE_HEADER:
                info.proxy_cache = bool(value)
        return info


def not_modified(info: RequestInfo, etag: str, modified: float) -> bool:
    inm = info.if_none_match
    if inm is not None:
        if inm == etag:
            return True
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return etag in tags or "*" in tags
    ims = info.if_modified_since
    if ims:
        try:
            return int(modified) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
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


@dataclass(frozen=True)
class BlobHeaders:
    """Precomputed header lists of one blob served with one set of caching headers."""

    size: int
    ok: Headers  # 200, with content-length
    not_modified: Headers  # 304
    partial: Headers  # 206 base, without content-length / content-range


def _build_headers(
    sha256: str, size: int, modified: float, cache_control: str, content_type: str
) -> BlobHeaders:
    etag = f'"{sha256}"'.encode()
    last_modified = formatdate(modified, usegmt=True).encode()
    cc = cache_control.encode()
    common: Headers = [
        (b"etag", etag),
        (b"last-modified", last_modified),
        (b"cache-control", cc),
        (b"content-type", content_type.encode()),
        (b"accept-ranges", b"bytes"),
    ]
    return BlobHeaders(
        size=size,
        ok=[*common, (b"content-length", str(size).encode())],
        not_modified=[(b"etag", etag), (b"cache-control", cc), (b"last-modified", last_modified)],
        partial=common,
    )


async def send_simple(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BlobResponder:
    def __init__(
        self,
        blobs: BlobStore,
        cache: BytesCache,
        x_accel: str | None,
        small: BytesCache | None = None,
        *,
        redirect_s: int | None = None,
    ) -> None:
        self.blobs = blobs
        # Package files answered by a redirect to a presigned URL of the object store, valid
        # this many seconds (``[storage.s3] downloads = "redirect"``); None: sent from here.
        self.redirect_s = redirect_s
        self.cache = cache
        self.small = small or BytesCache(max_bytes=SMALL_CACHE_BYTES, max_item=SMALL_FILE)
        self.x_accel = x_accel.rstrip("/") + "/" if x_accel else None
        self._sizes: dict[str, int] = {}
        self._headers: dict[tuple[str, float, str, str], BlobHeaders] = {}
        self._hits = 0

    async def _size(self, sha256: str) -> int:
        size = self._sizes.get(sha256)
        if size is None:
            size = await anyio.to_thread.run_sync(self.blobs.size, sha256)
            if len(self._sizes) > 200_000:
                self._sizes.clear()
            self._sizes[sha256] = size
        return size

    async def headers_for(
        self, sha256: str, modified: float, cache_control: str, content_type: str
    ) -> BlobHeaders:
        key = (sha256, modified, cache_control, content_type)
        found = self._headers.get(key)
        if found is None:
            size = await self._size(sha256)
            found = _build_headers(sha256, size, modified, cache_control, content_type)
            if len(self._headers) > 50_000:
                self._headers.clear()
            self._headers[key] = found
        return found

    async def _bytes(self, sha256: str, size: int, cache: BytesCache) -> bytes | None:
        """The blob's bytes from memory (read once, in one thread hop) when it is small enough
        to keep in ``cache``."""
        data = cache.get(sha256)
        if data is not None:
            self._hits += 1
            if self._hits & 63 == 0:
                cache.touch(sha256)
            return data
        if size > cache.max_item:
            return None
        data = await anyio.to_thread.run_sync(self.blobs.read_bytes, sha256)
        cache.put(sha256, data)
        return data

    async def respond(
        self,
        send: Send,
        info: RequestInfo,
        sha256: str,
        *,
        modified: float,
        cache_control: str,
        content_type: str,
        in_memory: bool,
        filename: str | None = None,
    ) -> tuple[int, int]:
        """Send the blob (or a 304 / 206 / 416); returns the status and the body bytes sent
        (by nginx for ``X-Accel-Redirect``, by the object store for a redirect; 0 for
        ``HEAD``). A package file (``filename``) may be answered by a redirect."""
        hdrs = await self.headers_for(sha256, modified, cache_control, content_type)
        if (info.if_none_match is not None or info.if_modified_since) and not_modified(
            info, f'"{sha256}"', modified
        ):
            await send_simple(send, 304, hdrs.not_modified)
            return 304, 0
        size = hdrs.size
        head = info.method == "HEAD"
        if self.redirect_s and filename and not head and not in_memory:
            return await self._redirect(send, info, sha256, size, filename, hdrs)
        if (
            self.x_accel
            and not head
            and (not in_memory or size >= ACCEL_MIN_SIZE)
            and not (info.proxy_cache and in_memory and cache_control.startswith("public"))
        ):
            target = f"{self.x_accel}{sha256[:2]}/{sha256[2:4]}/{sha256}".encode()
            headers = [h for h in hdrs.partial if h[0] != b"accept-ranges"]
            await send_simple(send, 200, [*headers, (b"x-accel-redirect", target)])
            return 200, size
        span = parse_range(info.range, size) if info.range else None
        if info.if_range is not None and info.if_range.strip() != f'"{sha256}"':
            span = None
        if span == "invalid":
            await send_simple(send, 416, [(b"content-range", f"bytes */{size}".encode())])
            return 416, 0
        data = None
        if not head:
            data = await self._bytes(sha256, size, self.cache if in_memory else self.small)
        if isinstance(span, tuple):
            start, end = span
            headers = [
                *hdrs.partial,
                (b"content-range", f"bytes {start}-{end}/{size}".encode()),
                (b"content-length", str(end - start + 1).encode()),
            ]
            status = 206
        else:
            start, end = 0, size - 1
            headers = hdrs.ok
            status = 200
        if head:
            await send_simple(send, status, headers)
        elif data is not None:
            body = data if status == 200 else data[start : end + 1]
            await send_simple(send, status, headers, body)
        else:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await self._stream(send, sha256, start, end)
        return status, 0 if head else end - start + 1

    async def _redirect(
        self,
        send: Send,
        info: RequestInfo,
        sha256: str,
        size: int,
        filename: str,
        hdrs: BlobHeaders,
    ) -> tuple[int, int]:
        """A 307 to a presigned URL of the object store, whose answer carries this file's
        Content-Type and Cache-Control (and a Range the client sends again). The redirect
        itself is never cached: its URL expires. Returned as the download it hands out."""
        ctype = next(v for k, v in hdrs.ok if k == b"content-type").decode()
        cc = next(v for k, v in hdrs.ok if k == b"cache-control").decode()
        url = await anyio.to_thread.run_sync(
            partial(
                self.blobs.presigned_url,
                sha256,
                filename,
                self.redirect_s or 300,
                content_type=ctype,
                cache_control=cc,
            )
        )
        if url is None:
            raise RuntimeError("redirect_s is set for a blob store without presigned URLs")
        location = [(b"location", url.encode()), (b"cache-control", b"no-store")]
        await send_simple(send, 307, [*location, (b"content-length", b"0")])
        span = parse_range(info.range, size) if info.range else None
        if info.if_range is not None and info.if_range.strip() != f'"{sha256}"':
            span = None
        if isinstance(span, tuple):
            return 206, span[1] - span[0] + 1
        return (416, 0) if span == "invalid" else (200, size)

    async def _stream(self, send: Send, sha256: str, start: int, end: int) -> None:
        """Send bytes ``start..end`` of a blob in chunks; memory stays at one chunk in flight."""
        path = self.blobs.local_path(sha256)
        fh = None if path is not None else await anyio.to_thread.run_sync(self.blobs.open, sha256)
        fd = await anyio.to_thread.run_sync(os.open, path, os.O_RDONLY) if path is not None else -1
        try:
            if fh is not None and start:
                await anyio.to_thread.run_sync(fh.seek, start)
            offset = start
            while offset <= end:
                want = min(CHUNK, end - offset + 1)
                if fh is None:
                    chunk = await anyio.to_thread.run_sync(os.pread, fd, want, offset)
                else:
                    chunk = await anyio.to_thread.run_sync(fh.read, want)
                if not chunk:
                    raise OSError(f"blob {sha256} is shorter than its size")
                offset += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": offset <= end}
                )
        finally:
            if fh is not None:
                fh.close()
            if fd >= 0:
                os.close(fd)
