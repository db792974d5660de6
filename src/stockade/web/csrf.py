"""CSRF protection for the page forms.

Signed-in forms carry the ``csrf_token`` of the web session row. The sign-in form has no session
yet, so it uses a double-submit token: a random value in a cookie and the same in a hidden field.
Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import re
import secrets

from starlette.requests import Request

from stockade.auth.sessions import SessionService
from stockade.container import Container
from stockade.core.errors import PermissionDeniedError
from stockade.web.credentials import SESSION_COOKIE

FIELD = "csrf_token"
LOGIN_COOKIE = "stockade_login_csrf"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class CsrfError(PermissionDeniedError):
    code = "csrf:invalid"
    title = "Form expired"


def tokens_match(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def session_csrf(request: Request) -> str | None:
    """The CSRF token of the request's web session, or None without a live session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    container: Container = request.app.state.container
    with container.read_factory() as session:
        sessions = SessionService(session, hours=container.settings.auth.session_hours)
        record = sessions.resolve(cookie)
        return record.csrf_token if record is not None else None


def require_session_token(request: Request, given: str | None) -> None:
    if not tokens_match(session_csrf(request), given):
        raise CsrfError("the form was missing its security token or it has expired; try again")


def login_token(request: Request) -> str:
    """The double-submit token for the sign-in form: the cookie's if it has one, else a new one."""
    current = request.cookies.get(LOGIN_COOKIE, "")
    return current if TOKEN_RE.match(current) else secrets.token_urlsafe(32)


def require_login_token(request: Request, given: str | None) -> None:
    if not tokens_match(request.cookies.get(LOGIN_COOKIE), given):
        raise CsrfError("the sign-in form was missing its security token; reload it and try again")
