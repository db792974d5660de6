"""Pure ASGI middleware: token-in-URL rewriting, request ids, access log, security headers, metrics.

``TokenPathMiddleware`` is the outermost middleware of the FastAPI app. After moving a URL token
aside it hands ``GET`` and ``HEAD`` requests under ``/conda/`` straight to the conda protocol app
(``CondaApp``), wrapped in the same request-context middleware as everything else, so those
requests skip FastAPI's routing and exception middleware (``CondaApp`` maps its own errors to
problem responses). ``CondaFastPath`` does the same one step earlier, around the whole FastAPI
application, so that conda requests also skip FastAPI's own per-request work.

Every option is given to each instance (``app.add_middleware(Cls, option=…)``), never kept on a
class: two applications built in one process with different settings stay apart.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Iterator
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from stockade.core.context import Origin, set_origin
from stockade.core.logging import ACCESS_LOGGER, AccessRecord, render_access, scrub
from stockade.core.metrics import method_label, metrics
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
#: The route label of conda requests, whether the fast path or FastAPI's routing answers them.
CONDA_ROUTE = "/conda/{path:path}"
#: The label of a request no route took (never its path: it may name a private channel).
UNMATCHED = "unmatched"
#: An incoming X-Request-ID is kept only when it is this (a load balancer's id); else a new one.
#: At most 64 characters: the width of ``request_id`` in the audit log and download records.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class TokenPathMiddleware:
    """``/t/TOKEN/conda/…`` and ``/conda/t/TOKEN/…`` become ``/conda/…`` with the token aside.

    The scope is changed in place so nothing downstream (routing, logs) ever sees the token.
    ``hsts``: the conda answers it gives carry Strict-Transport-Security.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self._conda = RequestContextMiddleware(_CondaDispatch(None), hsts=hsts, route=CONDA_ROUTE)

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
    request, and the lifespan, goes to it unchanged. ``hsts`` defaults to the application's own
    setting (``auth.secure_cookies``).
    """

    def __init__(self, app: Any, *, hsts: bool | None = None) -> None:
        self.app = app
        if hsts is None:
            hsts = bool(app.state.container.settings.auth.secure_cookies)
        self._conda = RequestContextMiddleware(_CondaDispatch(app), hsts=hsts, route=CONDA_ROUTE)

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
    """A request id (echoed in ``X-Request-ID``, bound into every log line of the request), the
    security headers, the access log line and the HTTP metrics.

    ``hsts``: answers carry Strict-Transport-Security. ``route``: a fixed route label (the conda
    fast path, which no router sees); else the template of the route that took the request.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = False, route: str | None = None) -> None:
        self.app = app
        self.headers = security_headers(hsts=hsts)
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or f"{random.getrandbits(64):016x}"
        scope["stockade.request_id"] = request_id
        set_origin(_origin(scope, request_id))
        bound = bind_contextvars(request_id=request_id)
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
        except Exception:
            status["code"] = status["code"] or 500  # what the server's error middleware answers
            raise
        finally:
            if scope["path"] not in QUIET_PATHS and _access_log_enabled():
                _log_access(scope, status, started, request_id)
            _count(scope, self.route or route_template(scope), status, started)
            reset_contextvars(**bound)


def incoming_request_id(scope: Scope) -> str | None:
    """The client's (or load balancer's) ``X-Request-ID`` when it is a short safe token."""
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            # never a token (logged as the client sent it, in the access log and audit events)
            safe = REQUEST_ID_RE.fullmatch(text) and scrub(text) == text
            return text if safe else None
    return None


def route_template(scope: Scope) -> str:
    """The path template of the route that took the request (``/api/v1/channels/{channel:path}``),
    never the path itself; ``unmatched`` when no route took it."""
    templates = _templates_of(scope.get("app"))
    for key in ("route", "endpoint"):  # FastAPI routes set both; Starlette routes, mounts: endpoint
        found = scope.get(key)
        if found is not None and id(found) in templates:
            return templates[id(found)]
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def _templates_of(app: Any) -> dict[int, str]:
    """``id(route or endpoint) -> full path template`` of an application's routes, made on first
    use (the router keeps included routes without their prefix)."""
    state = getattr(app, "state", None)
    if state is None:
        return {}
    templates: dict[int, str] | None = getattr(state, "route_templates", None)
    if templates is None:
        templates = {}
        for route in _flat(app.router.routes):
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                continue
            original = getattr(route, "original_route", None) or route
            for target in (
                original,
                getattr(original, "endpoint", None),
                getattr(original, "app", None),
            ):
                if target is not None:
                    templates.setdefault(id(target), path)
        state.route_templates = templates
    return templates


def _flat(routes: Any) -> Iterator[Any]:
    """Every route, FastAPI's included routers (resolved lazily) opened up."""
    for route in routes:
        nested = getattr(route, "effective_candidates", None)
        if callable(nested):
            yield from _flat(nested())
        else:
            yield route


def _count(scope: Scope, route: str, status: dict[str, Any], started: float) -> None:
    requests, duration, sent = _series(method_label(scope["method"]), route, status["code"])
    requests.inc()
    duration.observe(time.perf_counter() - started)
    if status["bytes"]:
        sent.inc(status["bytes"])


@functools.cache  # bounded: methods, route templates and status codes are fixed sets
def _series(method: str, route: str, code: int) -> tuple[Any, Any, Any]:
    """The labelled series of one kind of request (``labels()`` on every request cost ~10 µs)."""
    m = metrics()
    return (
        m.http_requests.labels(method, route, str(code)),
        m.http_duration.labels(method, route),
        m.http_bytes.labels(route),
    )


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
        ip=client[0][:64] if client else None, user_agent=agent, request_id=request_id, channel=kind
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
    # Made here rather than through ``Logger.info``: the logger class structlog installs walks
    # the stack for every record, and a full LogRecord looks up what an access line never shows.
    record = AccessRecord(render_access(fields))
    _access_logger.handle(record)


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

        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send_headers_only)
        finally:
            if "route" in as_get:  # the metrics' route label (RequestContextMiddleware)
                scope["route"] = as_get["route"]


def _get_only(scope: Scope) -> bool:
    """Whether routing would refuse this ``HEAD`` request but take it as a ``GET``."""
    as_get = {**scope, "method": "GET"}
    routes = scope["app"].router.routes
    if any(route.matches(scope)[0] is Match.FULL for route in routes):
        return False
    return any(route.matches(as_get)[0] is Match.FULL for route in routes)
