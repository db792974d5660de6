"""Personal API tokens: created once and shown once, stored hashed, expiring, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.admin import PrincipalAdmin
from stockade.auth.errors import AccessDeniedError, InvalidCredentialsError, TokenNotFoundError
from stockade.auth.models import ApiToken, User
from stockade.auth.permissions import Level, Permission, parse_scope
from stockade.auth.principal import Principal
from stockade.auth.revision import bump_revision
from stockade.auth.secrets import hash_secret, looks_like_token, new_token
from stockade.auth.sessions import MAX_ADDRESS
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError


@dataclass(frozen=True)
class IssuedToken:
    record: ApiToken
    secret: str  # shown once, never stored


TOKEN_KINDS = ("personal", "resource", "scope")


class TokenService:
    def __init__(self, session: Session, *, max_days: int) -> None:
        self.session = session
        self.max_days = max_days

    def create(
        self,
        user_id: int,
        name: str,
        expires_in_days: int | None,
        *,
        kind: str = "personal",
        scopes: list[str] | None = None,
        resources: dict[str, str] | None = None,
        actor: Principal | None = None,
    ) -> IssuedToken:
        """A new token for ``user_id``; ``actor`` is who asks (the user, or an admin)."""
        name = name.strip()
        if not 1 <= len(name) <= 256:
            raise InvalidInputError("token name must have 1-256 characters", field="name")
        days = self.max_days if expires_in_days is None else expires_in_days
        if not 1 <= days <= self.max_days:
            raise InvalidInputError(
                f"expires_in_days must be between 1 and {self.max_days}",
                code="token:expiry",
                field="expires_in_days",
            )
        clean_scopes, clean_resources = _check_kind(kind, scopes, resources)
        secret = new_token()
        record = ApiToken(
            user_id=user_id,
            name=name,
            kind=kind,
            scopes=clean_scopes,
            resources=clean_resources,
            token_hash=hash_secret(secret),
            display_prefix=secret[:8],
            expires_at=utcnow() + timedelta(days=days),
            created_by_id=actor.user_id if actor is not None else user_id,
        )
        self.session.add(record)
        self.session.flush()
        owner = self.session.get(User, user_id)
        AuditLog(self.session).record(
            "token.create",
            actor,
            Target("token", name, record.id),
            after={
                "owner": owner.username if owner else None,
                "kind": kind,
                "scopes": clean_scopes,
                "resources": clean_resources,
                "expires_at": record.expires_at.isoformat(),
                "prefix": record.display_prefix,
            },
        )
        return IssuedToken(record=record, secret=secret)

    def list_for(self, user_id: int) -> list[ApiToken]:
        return list(
            self.session.scalars(
                select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
            ).all()
        )

    def revoke(self, principal: Principal, token_id: int) -> ApiToken:
        """Revoke one of the principal's tokens (``users:manage``: those of anyone it has all the
        power of; admins: anyone's)."""
        restricted = principal.scopes is not None or principal.resources is not None
        if restricted and token_id != principal.token_id:
            raise AccessDeniedError(
                f"a {principal.token_kind} token can revoke only itself",
                code="access:restricted-token",
            )
        token = self.session.get(ApiToken, token_id)
        may_manage = principal.is_admin or principal.has(Permission.USER_MANAGE)
        if token is None or (token.user_id != principal.user_id and not may_manage):
            raise TokenNotFoundError(f"token {token_id} not found")
        if token.user_id != principal.user_id:
            # users:manage is not enough for the tokens of someone more powerful (an admin)
            PrincipalAdmin(self.session, principal).require_power_over(
                token.user, "revoke the tokens of"
            )
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            bump_revision(self.session)  # with the revocation: no process keeps it cached
            AuditLog(self.session).record(
                "token.revoke",
                principal,
                Target("token", token.name, token.id),
                details={"owner": token.user.username, "prefix": token.display_prefix},
            )
        return token

    def authenticate(self, secret: str) -> tuple[User, ApiToken]:
        """Resolve a token secret to its user, reading only (a read-only session will do: a
        token check never queues behind writers). Raises without echoing the secret."""
        if not looks_like_token(secret):
            raise InvalidCredentialsError("invalid token")
        token = self.session.scalar(
            select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))
        )
        now = utcnow()
        if token is None or token.revoked_at is not None:
            raise InvalidCredentialsError("invalid or revoked token")
        if token.expires_at <= now:
            raise InvalidCredentialsError("token expired")
        if not token.user.is_active:
            raise InvalidCredentialsError("the token's user is disabled")
        return token.user, token


#: How often a token's last use is written: hot paths must not write on every request.
TOUCH_EVERY = timedelta(seconds=60)


def needs_touch(token: ApiToken, now: datetime) -> bool:
    """Whether this use should be recorded as the token's last one."""
    return token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY


def touch_token(session: Session, token_id: int, ip: str | None, now: datetime) -> None:
    """Record a token's use, unless another request (any replica) recorded one just now."""
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - TOUCH_EVERY),
        )
        .values(last_used_at=now, last_used_ip=ip[:MAX_ADDRESS] if ip else None)
    )


def _check_kind(
    kind: str, scopes: list[str] | None, resources: dict[str, str] | None
) -> tuple[list[str], dict[str, str]]:
    if kind not in TOKEN_KINDS:
        raise InvalidInputError(
            f"kind must be one of {', '.join(TOKEN_KINDS)} (got {kind!r})",
            code="token:kind",
            field="kind",
        )
    if kind == "scope":
        if not scopes:
            raise InvalidInputError(
                "a scope token needs at least one scope, e.g. artifacts:read",
                code="token:scopes",
                field="scopes",
            )
        for scope in scopes:
            try:
                parse_scope(scope)
            except ValueError as exc:
                raise InvalidInputError(str(exc), code="token:scopes", field="scopes") from None
        return sorted(set(scopes)), {}
    if kind == "resource":
        if not resources:
            raise InvalidInputError(
                'a resource token needs at least one channel, e.g. {"team": "read"}',
                code="token:resources",
                field="resources",
            )
        clean: dict[str, str] = {}
        for channel, level in resources.items():
            try:
                parsed = Level.parse(level)
            except KeyError:
                parsed = Level.NONE
            if parsed == Level.NONE:
                raise InvalidInputError(
                    f"level for {channel!r} must be read, write or manage (got {level!r})",
                    code="token:resources",
                    field="resources",
                )
            clean[channel] = parsed.label
        return [], clean
    if scopes or resources:
        raise InvalidInputError(
            "scopes and resources belong to scope and resource tokens; set kind",
            code="token:kind",
            field="kind",
        )
    return [], {}
