"""The current caller and tokens: whoami, create (personal, resource, scope), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from stockade.auth.admin import PrincipalAdmin
from stockade.auth.models import ApiToken, Group
from stockade.auth.tokens import TokenService
from stockade.channels.service import check_token_resources
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.web.api import API
from stockade.web.api.identity_schemas import TokenCreate, TokenIssued, TokenPublic, WhoAmI
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn

router = APIRouter(prefix=API, tags=["auth"])


def token_public(token: ApiToken) -> TokenPublic:
    now = utcnow()
    return TokenPublic(
        id=token.id,
        name=token.name,
        kind=token.kind,
        prefix=token.display_prefix,
        owner=token.user.username,
        scopes=list(token.scopes or []),
        resources=dict(token.resources or {}),
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
        active=token.revoked_at is None and token.expires_at > now and token.user.is_active,
    )


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: CurrentPrincipal, container: ContainerDep) -> WhoAmI:
    groups: list[str] = []
    if principal.group_ids:
        with container.read_factory() as session:
            groups = sorted(
                session.scalars(select(Group.name).where(Group.id.in_(principal.group_ids)))
            )
    return WhoAmI(
        username=principal.username,
        anonymous=principal.is_anonymous,
        admin=principal.is_admin,
        via=principal.via,
        kind=principal.kind,
        roles=sorted(principal.roles),
        groups=groups,
        permissions=sorted(p.value for p in principal.permissions),
        token_kind=principal.token_kind,
        token_id=principal.token_id,
    )


@router.post("/tokens", response_model=TokenIssued, status_code=201)
def create_token(body: TokenCreate, principal: SignedIn, container: ContainerDep) -> TokenIssued:
    """A token for yourself, or (admins) for a service account: the secret is in this answer only."""
    with transaction(container.factory) as session:
        admin = PrincipalAdmin(session, principal)
        owner = admin.user_for_token(body.user or principal.username)
        check_token_resources(session, owner, principal, body.resources)
        service = TokenService(session, max_days=container.settings.auth.token_max_days)
        issued = service.create(
            owner.id,
            body.name,
            body.expires_in_days,
            kind=body.kind,
            scopes=body.scopes,
            resources=dict(body.resources),
            actor=principal,
        )
        public = token_public(issued.record)
    return TokenIssued(**public.model_dump(), token=issued.secret)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(
    principal: SignedIn,
    container: ContainerDep,
    user: str | None = Query(default=None, max_length=128, description="admins: whose tokens"),
) -> list[TokenPublic]:
    """Your tokens (never their secrets), with their last use."""
    with container.read_factory() as session:
        tokens = PrincipalAdmin(session, principal).tokens_of(user or principal.username)
        return [token_public(t) for t in tokens]


@router.delete("/tokens/{token_id}", response_model=TokenPublic)
def revoke_token(token_id: int, principal: SignedIn, container: ContainerDep) -> TokenPublic:
    with transaction(container.factory) as session:
        service = TokenService(session, max_days=container.settings.auth.token_max_days)
        public = token_public(service.revoke(principal, token_id))
    container.authenticator.forget_all()
    return public
