"""Dependency aliases for the REST edge: the container, the caller, and a signed-in caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import AuthenticationError, PermissionDeniedError
from stockade.web.credentials import credentials_from
from stockade.web.csrf import session_csrf, tokens_match


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))


def get_principal(request: Request, container: ContainerDep) -> Principal:
    principal = container.authenticator.authenticate(credentials_from(request))
    if (
        principal.via == "session"
        and request.method not in SAFE_METHODS
        and request.url.path.startswith("/api/")
        and not tokens_match(session_csrf(request), request.headers.get("x-csrf-token"))
    ):
        # A browser's cookie alone never changes anything through the API (no cross-site
        # request forgery): scripts send the session's CSRF token, tools use a token.
        raise PermissionDeniedError(
            "with a session cookie, send the X-CSRF-Token header (or use an API token)",
            code="csrf:missing",
        )
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_signed_in(principal: CurrentPrincipal) -> Principal:
    if principal.is_anonymous:
        raise AuthenticationError("sign in, or pass a token (Authorization: Bearer stk-…)")
    return principal


SignedIn = Annotated[Principal, Depends(get_signed_in)]
