"""The request-body helpers: limits hold while reading, file parts go to the staging folder."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette import formparsers
from starlette.requests import Request

from stockade.core.errors import InvalidInputError, TooLargeError
from stockade.web.bodies import (
    BodyLimitMiddleware,
    BodyTooLargeError,
    allow_body,
    read_staged_form,
)

CHUNK = 1024


def _multipart(*files: tuple[str, bytes], fields: dict[str, str] | None = None) -> Request:
    built = httpx.Request(
        "POST",
        "http://x/",
        data=fields or {},
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )
    return _request(built.read(), built.headers["content-type"])


class _Feed:
    """An ASGI receive that hands out the body in ``CHUNK`` pieces and counts what was taken."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        piece = self.body[self.taken : self.taken + CHUNK]
        self.taken += len(piece)
        return {"type": "http.request", "body": piece, "more_body": self.taken < len(self.body)}


def _request(body: bytes, content_type: str, *, declare: bool = False) -> Request:
    headers = [(b"content-type", content_type.encode())]
    if declare:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, _Feed(body))


def _limited(request: Request, default: int) -> Request:
    """The request as the application sees it behind ``BodyLimitMiddleware``."""
    seen: list[Request] = []

    async def app(scope: Any, receive: Any, _send: Any) -> None:
        seen.append(Request(scope, receive))

    asyncio.run(BodyLimitMiddleware(app, default)(request.scope, request.receive, _no_send))
    return seen[0]


async def _no_send(_message: Any) -> None:
    raise AssertionError("nothing is sent")


def _feed(request: Request) -> _Feed:
    receive = request.receive
    while not isinstance(receive, _Feed):
        receive = receive.receive  # type: ignore[attr-defined]
    return receive


def test_files_are_staged_in_the_staging_folder_never_in_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a file part was spooled to a temporary file (/tmp)")

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", refuse)
    data = b"package bytes " * 500
    request = _multipart(("a-1.0-0.conda", data), fields={"note": "kept"})
    form = asyncio.run(
        read_staged_form(
            request, tmp_path, max_file_size=10_000, max_request_size=20_000, max_files=5
        )
    )
    assert form.fields == [("note", "kept")]
    [(name, staged)] = form.files
    assert name == "files"
    assert staged.path.parent == tmp_path
    assert staged.path.read_bytes() == data
    assert staged.sha256 == hashlib.sha256(data).hexdigest()
    assert staged.size == len(data)
    form.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_file_past_its_limit_stops_the_reading_and_leaves_nothing(tmp_path: Path) -> None:
    request = _multipart(("a-1.0-0.conda", b"x" * 50 * CHUNK))
    with pytest.raises(TooLargeError):
        asyncio.run(
            read_staged_form(
                request, tmp_path, max_file_size=4 * CHUNK, max_request_size=10**9, max_files=5
            )
        )
    assert _feed(request).taken <= 6 * CHUNK  # refused while reading, not after the whole body
    assert list(tmp_path.iterdir()) == []


def test_a_request_past_its_limit_stops_the_reading_and_leaves_nothing(tmp_path: Path) -> None:
    files = [(f"f{i}-1.0-0.conda", b"y" * 3 * CHUNK) for i in range(10)]
    request = _limited(_multipart(*files), default=CHUNK)
    with pytest.raises(BodyTooLargeError):
        asyncio.run(
            read_staged_form(
                request, tmp_path, max_file_size=4 * CHUNK, max_request_size=8 * CHUNK, max_files=20
            )
        )
    assert _feed(request).taken <= 9 * CHUNK
    assert list(tmp_path.iterdir()) == []


def test_too_many_files_or_a_broken_body_is_a_4xx_and_leaves_nothing(tmp_path: Path) -> None:
    request = _multipart(*[(f"f{i}-1.0-0.conda", b"z") for i in range(3)])
    with pytest.raises(InvalidInputError):
        asyncio.run(
            read_staged_form(
                request, tmp_path, max_file_size=100, max_request_size=10_000, max_files=2
            )
        )
    broken = _request(
        b"--b\r\nContent-Disposition: form-data; name=x; filename=a\r\n\r\nab",
        "multipart/form-data; boundary=b",
    )
    with pytest.raises(InvalidInputError):
        asyncio.run(
            read_staged_form(
                broken, tmp_path, max_file_size=100, max_request_size=10_000, max_files=2
            )
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("declare", [True, False], ids=["declared", "chunked"])
def test_the_default_limit_holds_for_every_reader(declare: bool) -> None:
    request = _limited(
        _request(b"{" + b" " * 10 * CHUNK + b"}", "application/json", declare=declare),
        default=2 * CHUNK,
    )
    with pytest.raises(BodyTooLargeError) as caught:
        asyncio.run(request.body())
    assert caught.value.status_code == 413
    assert _feed(request).taken <= 3 * CHUNK


def test_a_handler_may_allow_a_larger_body() -> None:
    request = _limited(
        _request(b"x" * 5 * CHUNK, "application/octet-stream", declare=True), default=CHUNK
    )
    allow_body(request, 6 * CHUNK)
    assert asyncio.run(request.body()) == b"x" * 5 * CHUNK
