"""Refuse request paths and query strings with control characters (NUL and friends) up front."""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from stockade.web.errors import problem

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ControlCharacterGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote(scope.get("query_string", b"").decode("latin-1"))
            if _CONTROL.search(scope["path"]) or _CONTROL.search(query):
                response = problem(
                    400,
                    "Invalid request",
                    "the URL contains control characters",
                    code="request:control-characters",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
