"""Extract credentials from a request: URL token, Bearer, basic auth, session cookie.

Works on the raw ASGI scope (no Request object), because the conda fast path runs it on every
request.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import HTTPConnection, cookie_parser
from starlette.types import Scope

from stockade.auth.authenticator import Credentials

SESSION_COOKIE = "stockade_session"
_COOKIE_MARK = SESSION_COOKIE.encode() + b"="


def credentials_from(conn: HTTPConnection) -> Credentials:
    return credentials_from_scope(conn.scope)


def credentials_from_scope(scope: Scope) -> Credentials:
    client = scope.get("client")
    ip = client[0] if client else None
    url_token = scope.get("stockade.url_token")
    if url_token:
        return Credentials(token=url_token, ip=ip)
    authorization = cookie = None
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = value
        elif key == b"cookie" and _COOKIE_MARK in value:
            cookie = value
    if authorization:
        scheme, _, rest = authorization.decode("latin-1").partition(" ")
        scheme, rest = scheme.lower(), rest.strip()
        if scheme == "bearer" and rest:
            return Credentials(token=rest, ip=ip)
        if scheme == "basic" and rest:
            try:
                decoded = base64.b64decode(rest.encode("latin-1"), validate=True).decode()
            except (binascii.Error, ValueError):  # not base64, not UTF-8, non-ASCII bytes
                return Credentials(malformed=True, ip=ip)  # refused (401), never anonymous
            username, _, password = decoded.partition(":")
            return Credentials(username=username, password=password, ip=ip)
    if cookie:
        value = cookie_parser(cookie.decode("latin-1")).get(SESSION_COOKIE)
        if value:
            return Credentials(session_cookie=value, ip=ip)
    return Credentials(ip=ip)
