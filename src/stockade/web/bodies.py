"""Request bodies: one size limit for every body the server reads, uploads staged in the data folder.

``BodyLimitMiddleware`` (pure ASGI) counts the bytes of every request body as the application
receives them and refuses, with a ``413`` problem, a body that declares or reaches more than the
request's limit. The limit is ``server.max_body_size`` unless the handler that reads the body
raised it first (``allow_body``): the upload routes do, to ``upload.max_archive_size`` and
``upload.max_request_size``. The limit is read at each ``receive``, so nothing is read past it,
whoever reads (FastAPI's JSON and form parsing, ``request.stream()``).

Uploaded files never go to ``/tmp``: ``stage_body`` streams a raw body, and ``read_staged_form``
streams each file part of a multipart body, into the blob store's staging folder (in the data
folder) while hashing it, refusing a file past its own limit while it is read. A refused or broken
upload leaves no partial file behind.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from fastapi import FastAPI
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser, _user_safe_decode
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.storage.staging import StagedFile, StagingWriter
from stockade.web.errors import problem

BODY_LIMIT_KEY = "stockade.body_limit"
#: Room for a multipart body's boundaries and part headers around its files.
MULTIPART_SLACK = 1024 * 1024


class BodyTooLargeError(HTTPException):
    """An ``HTTPException`` so that FastAPI's body parsing passes it on instead of a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit}-byte limit")
        self.limit = limit


def allow_body(request: Request, limit: int) -> None:
    """Let this request's body be up to ``limit`` bytes (call before reading it)."""
    request.scope[BODY_LIMIT_KEY] = limit


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, default: int) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, _LimitedReceive(scope, receive, self.default), send)


class _LimitedReceive:
    def __init__(self, scope: Scope, receive: Receive, default: int) -> None:
        self.scope = scope
        self.receive = receive
        self.default = default
        self.size = 0
        declared = Headers(scope=scope).get("content-length", "")
        self.declared = int(declared) if declared.isdigit() else None

    async def __call__(self) -> Message:
        limit: int = self.scope.get(BODY_LIMIT_KEY, self.default)
        if self.declared is not None and self.declared > limit:
            raise BodyTooLargeError(limit)
        message = await self.receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > limit:
                raise BodyTooLargeError(limit)
        return message


def install_body_limit(app: FastAPI, default: int) -> None:
    """Every request body limited (``default`` unless a handler allows more); 413 problems."""

    async def _too_large(_request: Request, exc: Exception) -> Response:
        detail = str(exc.detail) if isinstance(exc, HTTPException) else "too large"
        return problem(413, "Too large", detail, code="request:too-large")

    app.add_exception_handler(BodyTooLargeError, _too_large)
    app.add_middleware(BodyLimitMiddleware, default=default)


async def stage_body(
    request: Request, container: Container, name: str, max_size: int
) -> StagedFile:
    """The request body streamed into the staging folder (refused past ``max_size``)."""
    allow_body(request, max_size)
    writer = StagingWriter(container.blobs.staging_dir(), name, max_size=max_size)
    try:
        async for chunk in request.stream():
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


# -- multipart ------------------------------------------------------------------------------------


@dataclass
class StagedForm:
    """A multipart body: its text fields, and its files staged (hashed) in the staging folder."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, StagedFile]] = field(default_factory=list)

    def discard(self) -> None:
        for _name, staged in self.files:
            staged.discard()


class _StagingSink:
    """The file object of a form's ``UploadFile``: writes go to a ``StagingWriter``."""

    def __init__(self, writer: StagingWriter) -> None:
        self.writer = writer

    def write(self, data: bytes) -> int:
        self.writer.write(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0  # the parser rewinds a finished part: nothing to do, it is read back by path

    def close(self) -> None:
        """Called by the parser when the body fails: the partial file goes."""
        self.writer.abort()


class _StagingParser(MultiPartParser):
    """Starlette's parser, with file parts written to the staging folder instead of /tmp."""

    def __init__(
        self,
        headers: Headers,
        stream: AsyncGenerator[bytes, None],
        staging: Path,
        max_file_size: int,
        **limits: Any,
    ) -> None:
        super().__init__(headers, stream, **limits)
        self.staging = staging
        self.max_file_size = max_file_size
        self.sinks: list[_StagingSink] = []

    def on_headers_finished(self) -> None:
        part = self._current_part
        _, options = parse_options_header(part.content_disposition)
        if b"filename" not in options:
            super().on_headers_finished()
            return
        try:
            part.field_name = _user_safe_decode(options[b"name"], self._charset)
        except KeyError:
            raise MultiPartException('a part needs a "name" in its Content-Disposition') from None
        self._current_files += 1
        if self._current_files > self.max_files:
            raise MultiPartException(f"at most {self.max_files} files in one request")
        filename = _user_safe_decode(options[b"filename"], self._charset)
        sink = _StagingSink(StagingWriter(self.staging, filename, max_size=self.max_file_size))
        self.sinks.append(sink)
        self._files_to_close_on_error.append(cast(Any, sink))
        part.file = UploadFile(
            file=cast(BinaryIO, sink),
            size=0,
            filename=filename,
            headers=Headers(raw=part.item_headers),
        )


async def read_staged_form(
    request: Request,
    staging: Path,
    *,
    max_file_size: int,
    max_request_size: int,
    max_files: int,
    max_fields: int = 100,
) -> StagedForm:
    """A ``multipart/form-data`` body, files staged; an empty form for other content types.

    Each file is refused past ``max_file_size`` and the whole body past ``max_request_size``
    (413), as they are read; a malformed or truncated body is a 422. Nothing is left behind on
    failure.
    """
    allow_body(request, max_request_size)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return StagedForm()
    try:
        async with aclosing(request.stream()) as stream:
            parser = _StagingParser(
                request.headers,
                stream,
                staging,
                max_file_size,
                max_files=max_files,
                max_fields=max_fields,
            )
            form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInputError(
            f"the multipart body cannot be read: {exc.message}", code="request:bad-multipart"
        ) from None
    complete = sum(isinstance(value, UploadFile) for _name, value in form.multi_items())
    if complete != len(parser.sinks):  # the body ended inside a file part
        for sink in parser.sinks:
            sink.close()
        raise InvalidInputError(
            "the multipart body ends inside a file part", code="request:bad-multipart"
        )
    result = StagedForm()
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            sink = cast(_StagingSink, value.file)
            result.files.append((name, sink.writer.finish()))
        else:
            result.fields.append((name, value))
    return result
