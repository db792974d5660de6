"""Sign in with a local account, sign out: ``/login`` and ``/logout``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from stockade.audit.service import AuditLog, Target
from stockade.auth.principal import Principal
from stockade.auth.secrets import TOKEN_PREFIXES
from stockade.auth.service import UserService
from stockade.auth.sessions import SessionService
from stockade.container import Container
from stockade.core.errors import AuthenticationError, TooManyRequestsError
from stockade.db.engine import transaction
from stockade.web.credentials import SESSION_COOKIE
from stockade.web.csrf import (
    LOGIN_COOKIE,
    CsrfError,
    login_token,
    require_login_token,
    session_csrf,
    tokens_match,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.render import error_page, render, sentence

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form()]
NextQuery = Annotated[str, Query(alias="next")]
MAX_FIELD = 1024
CSRF_HELP = "the form was missing its security token or it has expired; go back and try again"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 for c in value) or value.startswith(("/login", "/logout")):
        return "/"
    if value.startswith(("/t/", "/conda/t/")) or any(p in value for p in TOKEN_PREFIXES):
        return "/"  # never carry a token through a sign-in form or a redirect
    return value


def _login_form(
    request: Request, *, next_url: str, username: str = "", error: str | None = None, status: int
) -> Response:
    token = login_token(request)
    container: Container = request.app.state.container
    oidc = container.settings.oidc
    context = {
        "title": "Sign in",
        "next_url": next_url,
        "username": username,
        "error": error,
        "sso_name": oidc.display_name if oidc.enabled else None,
        "directory": container.settings.ldap.enabled,
    }
    response = render(request, "login.html", {**context, "login_csrf": token}, status=status)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="lax",
        secure=container.settings.auth.secure_cookies,
    )
    return response


@router.get("/login")
def login_page(
    request: Request, principal: CurrentPrincipal, next_url: NextQuery = "/"
) -> Response:
    if not principal.is_anonymous:
        return RedirectResponse(safe_next(next_url), status_code=303)
    return _login_form(request, next_url=safe_next(next_url), status=200)


@router.post("/login")
def login(
    request: Request,
    container: ContainerDep,
    username: FormText = "",
    password: FormText = "",
    next_url: Annotated[str, Form(alias="next")] = "/",
    csrf_token: FormText = "",
) -> Response:
    next_url = safe_next(next_url)
    try:
        require_login_token(request, csrf_token)
    except CsrfError as exc:
        return error_page(request, 403, exc.title, exc.detail)
    username = username.strip()[:MAX_FIELD]
    if not username or not password or len(password) > MAX_FIELD:
        error = "Enter your username and password."
        return _login_form(request, next_url=next_url, username=username, error=error, status=400)
    ip = request.client.host if request.client else None
    try:
        principal = container.authenticator.password_principal(username, password, ip=ip)
    except AuthenticationError as exc:
        error = sentence(exc.detail)
        return _login_form(request, next_url=next_url, username=username, error=error, status=401)
    except TooManyRequestsError as exc:
        error = sentence(exc.detail)
        return _login_form(request, next_url=next_url, username=username, error=error, status=429)
    return _start_session(request, container, principal, next_url)


def _start_session(
    request: Request, container: Container, principal: Principal, next_url: str
) -> Response:
    assert principal.user_id is not None
    hours = container.settings.auth.session_hours
    with transaction(container.factory) as session:
        sessions = SessionService(session, hours=hours)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            sessions.end(old)  # never keep a session id from before sign-in
        started = sessions.start(
            principal.user_id,
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        started.cookie,
        max_age=hours * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=container.settings.auth.secure_cookies,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, container: ContainerDep, csrf_token: FormText = "") -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    expected = session_csrf(request)
    single_sign_on = False
    if cookie and expected is not None:
        if not tokens_match(expected, csrf_token):
            return error_page(request, 403, CsrfError.title, CSRF_HELP)
        with transaction(container.factory) as session:
            sessions = SessionService(session, hours=container.settings.auth.session_hours)
            web = sessions.resolve(cookie)
            if web is not None:
                who = UserService(session).principal_for(web.user, via="session")
                AuditLog(session).record(
                    "auth.logout", who, Target("user", who.username, who.user_id)
                )
                single_sign_on = web.user.source == "oidc"
            sessions.end(cookie)
        container.authenticator.forget_all()  # the cookie must stop working right now
    after = "/"
    if single_sign_on:  # end the provider's session too, when it supports that
        from stockade.web.ui.sso import sso_logout_url  # sso imports this module

        after = sso_logout_url(request) or "/"
    response = RedirectResponse(after, status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=container.settings.auth.secure_cookies,
    )
    return response
