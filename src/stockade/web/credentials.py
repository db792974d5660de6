"""Extract credentials from a request: URL token, Bearer, basic auth, session cookie."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import HTTPConnection

from stockade.auth.authenticator import Credentials

SESSION_COOKIE = "stockade_session"


def credentials_from(conn: HTTPConnection) -> Credentials:
    ip = conn.client.host if conn.client else None
    url_token = conn.scope.get("stockade.url_token")
    if url_token:
        return Credentials(token=url_token, ip=ip)
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return Credentials(token=value.strip(), ip=ip)
    if scheme == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return Credentials(username="", password="", ip=ip)  # fails as wrong credentials
        username, _, password = decoded.partition(":")
        return Credentials(username=username, password=password, ip=ip)
    cookie = conn.cookies.get(SESSION_COOKIE)
    if cookie:
        return Credentials(session_cookie=cookie, ip=ip)
    return Credentials(ip=ip)
