"""Dependency aliases for the REST edge: the container, the caller, and a signed-in caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import AuthenticationError
from stockade.web.credentials import credentials_from


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_principal(request: Request, container: ContainerDep) -> Principal:
    principal = container.authenticator.authenticate(credentials_from(request))
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_signed_in(principal: CurrentPrincipal) -> Principal:
    if principal.is_anonymous:
        raise AuthenticationError("sign in, or pass a token (Authorization: Bearer stk_…)")
    return principal


SignedIn = Annotated[Principal, Depends(get_signed_in)]
