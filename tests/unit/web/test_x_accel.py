"""Which answers are handed to nginx (X-Accel-Redirect) and which are sent inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from stockade.storage.filesystem import FilesystemBlobStore
from stockade.web.channel.responses import BlobResponder, BytesCache, RequestInfo

PUBLIC_INDEX = "public, max-age=30"
PRIVATE_INDEX = "private, max-age=30"
PUBLIC_PACKAGE = "public, max-age=31536000, immutable"


def _answer(
    tmp_path: Path, *, method: str, headers: list[tuple[bytes, bytes]], cc: str, in_memory: bool
) -> tuple[int, dict[bytes, bytes], bytes]:
    store = FilesystemBlobStore(tmp_path / "blobs")
    sha = store.put_bytes(b"x" * 100_000)  # above ACCEL_MIN_SIZE
    responder = BlobResponder(store, BytesCache(), "/_blobs/")
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def main() -> None:
        await responder.respond(
            send,
            RequestInfo.from_headers(method, headers),
            sha,
            modified=0.0,
            cache_control=cc,
            content_type="application/json",
            in_memory=in_memory,
        )

    anyio.run(main)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], dict(sent[0]["headers"]), body


CACHE = [(b"x-stockade-proxy-cache", b"1")]


@pytest.mark.parametrize(
    ("headers", "cc", "in_memory", "accel"),
    [
        ([], PUBLIC_INDEX, True, True),  # plain X-Accel deployment: nginx sends index files too
        (CACHE, PUBLIC_INDEX, True, False),  # nginx caches: public index files inline
        (CACHE, PRIVATE_INDEX, True, True),  # never cached: nginx sends the bytes
        (CACHE, PUBLIC_PACKAGE, False, True),  # packages always through X-Accel
        ([(b"x-stockade-proxy-cache", b"")], PUBLIC_INDEX, True, True),
    ],
)
def test_x_accel_or_inline(
    tmp_path: Path, headers: list[tuple[bytes, bytes]], cc: str, in_memory: bool, accel: bool
) -> None:
    status, sent, body = _answer(
        tmp_path, method="GET", headers=headers, cc=cc, in_memory=in_memory
    )
    assert status == 200
    assert sent[b"cache-control"] == cc.encode()
    if accel:
        assert sent[b"x-accel-redirect"].startswith(b"/_blobs/")
        assert body == b""
    else:
        assert b"x-accel-redirect" not in sent
        assert sent[b"content-length"] == b"100000"
        assert body == b"x" * 100_000


def test_head_and_304_are_answered_by_stockade(tmp_path: Path) -> None:
    status, sent, body = _answer(
        tmp_path, method="HEAD", headers=CACHE, cc=PUBLIC_INDEX, in_memory=True
    )
    assert status == 200 and b"x-accel-redirect" not in sent and body == b""
    etag = b'"' + FilesystemBlobStore(tmp_path / "blobs").put_bytes(b"x" * 100_000).encode() + b'"'
    status, sent, body = _answer(
        tmp_path, method="GET", headers=[(b"if-none-match", etag)], cc=PRIVATE_INDEX, in_memory=True
    )
    assert status == 304 and b"x-accel-redirect" not in sent and body == b""
