"""Pure ASGI middleware: token-in-URL rewriting, request ids, access log, security headers.

``TokenPathMiddleware`` is the outermost middleware of the FastAPI app. After moving a URL token
aside it hands ``GET`` and ``HEAD`` requests under ``/conda/`` straight to the conda protocol app
(``CondaApp``), wrapped in the same request-context middleware as everything else, so those
requests skip FastAPI's routing and exception middleware (``CondaApp`` maps its own errors to
problem responses). ``CondaFastPath`` does the same one step earlier, around the whole FastAPI
application, so that conda requests also skip FastAPI's own per-request work.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockade.core.context import Origin, set_origin
from stockade.core.logging import ACCESS_LOGGER, render_access, scrub
from stockade.web.channel.routes import conda_app_for

_access_logger = logging.getLogger(ACCESS_LOGGER)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def security_headers(*, hsts: bool) -> list[tuple[bytes, bytes]]:
    """The headers every answer carries (pages add their own Content-Security-Policy)."""
    extra = [(b"strict-transport-security", b"max-age=31536000; includeSubDomains")] if hsts else []
    return [*SECURITY_HEADERS, *extra]


QUIET_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))


class TokenPathMiddleware:
    """``/t/TOKEN/conda/…`` and ``/conda/t/TOKEN/…`` become ``/conda/…`` with the token aside.

    The scope is changed in place so nothing downstream (routing, logs) ever sees the token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._conda = RequestContextMiddleware(_CondaDispatch(None))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _take_token(scope)
            if path.startswith("/conda/") and scope["method"] in ("GET", "HEAD"):
                await self._conda(scope, receive, send)
                return
        await self.app(scope, receive, send)


class CondaFastPath:
    """Around the whole application: conda ``GET``/``HEAD`` requests go straight to ``CondaApp``.

    ``app`` is the Stockade FastAPI application (its ``state`` holds the container); every other
    request, and the lifespan, goes to it unchanged.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._conda = RequestContextMiddleware(_CondaDispatch(app))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and _take_token(scope).startswith("/conda/")
        ):
            await self._conda(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _take_token(scope: Scope) -> str:
    """Move a URL token from the path into ``scope["stockade.url_token"]``; returns the path."""
    path: str = scope["path"]
    if path.startswith(("/t/", "/conda/t/")):
        token, rest = _split_token(path)
        if token is not None:
            scope["stockade.url_token"] = token
            scope["path"] = path = rest
            scope["raw_path"] = rest.encode()
    return path


class _CondaDispatch:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await conda_app_for(self.app or scope["app"])(scope, receive, send)


def _split_token(path: str) -> tuple[str | None, str]:
    for prefix in ("/t/", "/conda/t/"):
        if path.startswith(prefix):
            token, sep, rest = path[len(prefix) :].partition("/")
            if not sep or not token:
                return None, path
            base = "/" if prefix == "/t/" else "/conda/"
            return token, base + rest
    return None, path


def _access_log_enabled() -> bool:
    """Skip building access log lines that the configured level would drop anyway."""
    return _access_logger.isEnabledFor(logging.INFO)


class RequestContextMiddleware:
    headers: list[tuple[bytes, bytes]] = security_headers(hsts=False)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @classmethod
    def configure(cls, *, hsts: bool) -> None:
        cls.headers = security_headers(hsts=hsts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"{random.getrandbits(64):016x}"  # unique enough to find a request's lines
        scope["stockade.request_id"] = request_id
        set_origin(_origin(scope, request_id))
        started = time.perf_counter()
        status = {"code": 0, "bytes": 0}
        extra = [(b"x-request-id", request_id.encode()), *self.headers]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.body":
                status["bytes"] += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if scope["path"] not in QUIET_PATHS and _access_log_enabled():
                _log_access(scope, status, started, request_id)


def _origin(scope: Scope, request_id: str) -> Origin:
    client = scope.get("client")
    agent = None
    for key, value in scope.get("headers", ()):
        if key == b"user-agent":
            agent = value.decode("latin-1")[:512]
            break
    path: str = scope["path"]
    kind = "api" if path.startswith("/api/") else "conda" if path.startswith("/conda/") else "ui"
    return Origin(
        ip=client[0] if client else None, user_agent=agent, request_id=request_id, channel=kind
    )


def _log_access(scope: Scope, status: dict[str, Any], started: float, request_id: str) -> None:
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": scrub(scope["path"]),
        "status": status["code"],
        "bytes": status["bytes"],
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "ip": client[0] if client else None,
        "request_id": request_id,
    }
    _access_logger.info(render_access(fields))


class HeadAsGetMiddleware:
    """``HEAD`` answers like ``GET`` on every route that only declares ``GET``, with no body.

    FastAPI's ``@get`` routes (unlike Starlette's ``Route``) refuse ``HEAD`` with 405. A ``HEAD``
    request that no route takes as it is but a route takes as ``GET`` runs as ``GET``; the answer
    keeps its status and headers (``content-length`` included) and drops its body. Routes that
    answer ``HEAD`` themselves (static files, the conda endpoints) are left alone.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or not _get_only(scope):
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def _get_only(scope: Scope) -> bool:
    """Whether routing would refuse this ``HEAD`` request but take it as a ``GET``."""
    as_get = {**scope, "method": "GET"}
    routes = scope["app"].router.routes
    if any(route.matches(scope)[0] is Match.FULL for route in routes):
        return False
    return any(route.matches(as_get)[0] is Match.FULL for route in routes)
