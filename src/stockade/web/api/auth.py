"""Tokens, users and the current caller."""

from __future__ import annotations

from fastapi import APIRouter

from stockade.auth.access import AccessService
from stockade.auth.models import ApiToken, User
from stockade.auth.permissions import Permission
from stockade.auth.service import UserService
from stockade.auth.tokens import TokenService
from stockade.db.engine import transaction
from stockade.web.api.schemas import (
    TokenCreate,
    TokenIssued,
    TokenPublic,
    UserCreate,
    UserPublic,
    WhoAmI,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn

router = APIRouter(tags=["auth"])


def token_public(token: ApiToken) -> TokenPublic:
    return TokenPublic(
        id=token.id,
        name=token.name,
        kind=token.kind,
        prefix=token.display_prefix,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


def user_public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        email=user.email,
        kind=user.kind,
        source=user.source,
        is_active=user.is_active,
        is_admin=any(a.role.name == "admin" for a in user.role_assignments),
        created_at=user.created_at,
    )


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: CurrentPrincipal) -> WhoAmI:
    return WhoAmI(
        username=principal.username,
        anonymous=principal.is_anonymous,
        admin=principal.is_admin,
        via=principal.via,
    )


@router.post("/tokens", response_model=TokenIssued, status_code=201)
def create_token(body: TokenCreate, principal: SignedIn, container: ContainerDep) -> TokenIssued:
    assert principal.user_id is not None
    with transaction(container.factory) as session:
        service = TokenService(session, max_days=container.settings.auth.token_max_days)
        issued = service.create(principal.user_id, body.name, body.expires_in_days)
        public = token_public(issued.record)
    return TokenIssued(**public.model_dump(), token=issued.secret)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(principal: SignedIn, container: ContainerDep) -> list[TokenPublic]:
    assert principal.user_id is not None
    with transaction(container.factory) as session:
        service = TokenService(session, max_days=container.settings.auth.token_max_days)
        return [token_public(t) for t in service.list_for(principal.user_id)]


@router.delete("/tokens/{token_id}", response_model=TokenPublic)
def revoke_token(token_id: int, principal: SignedIn, container: ContainerDep) -> TokenPublic:
    with transaction(container.factory) as session:
        service = TokenService(session, max_days=container.settings.auth.token_max_days)
        public = token_public(service.revoke(principal, token_id))
    container.authenticator.forget_all()
    return public


@router.post("/users", response_model=UserPublic, status_code=201)
def create_user(
    body: UserCreate, principal: CurrentPrincipal, container: ContainerDep
) -> UserPublic:
    with transaction(container.factory) as session:
        AccessService(session).require(principal, Permission.USER_MANAGE)
        user = UserService(session).create_user(
            body.username, body.password, email=body.email, admin=body.admin
        )
        return user_public(user)


@router.get("/users", response_model=list[UserPublic])
def list_users(principal: CurrentPrincipal, container: ContainerDep) -> list[UserPublic]:
    with transaction(container.factory) as session:
        AccessService(session).require(principal, Permission.USER_MANAGE)
        return [user_public(u) for u in UserService(session).list_users()]
