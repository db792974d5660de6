"""Pure ASGI middleware: token-in-URL rewriting, request ids, access log, security headers."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockade.core.logging import scrub

access_log = structlog.get_logger("stockade.access")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class TokenPathMiddleware:
    """``/t/TOKEN/conda/…`` and ``/conda/t/TOKEN/…`` become ``/conda/…`` with the token aside.

    The scope is changed in place so nothing downstream (routing, logs) ever sees the token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            token, rest = _split_token(path)
            if token is not None:
                scope["stockade.url_token"] = token
                scope["path"] = rest
                scope["raw_path"] = rest.encode()
        await self.app(scope, receive, send)


def _split_token(path: str) -> tuple[str | None, str]:
    for prefix in ("/t/", "/conda/t/"):
        if path.startswith(prefix):
            token, sep, rest = path[len(prefix) :].partition("/")
            if not sep or not token:
                return None, path
            base = "/" if prefix == "/t/" else "/conda/"
            return token, base + rest
    return None, path


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope["stockade.request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 0, "bytes": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                status["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _log_access(scope, status, started, request_id)


def _log_access(scope: Scope, status: dict[str, Any], started: float, request_id: str) -> None:
    if scope["path"] in ("/healthz", "/readyz", "/metrics"):
        return
    client = scope.get("client")
    access_log.info(
        "request",
        method=scope["method"],
        path=scrub(scope["path"]),
        status=status["code"],
        bytes=status["bytes"],
        ms=round((time.perf_counter() - started) * 1000, 1),
        ip=client[0] if client else None,
        request_id=request_id,
    )
