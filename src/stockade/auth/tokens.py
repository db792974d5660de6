"""Personal API tokens: created once and shown once, stored hashed, expiring, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.errors import InvalidCredentialsError, TokenNotFoundError
from stockade.auth.models import ApiToken, User
from stockade.auth.principal import Principal
from stockade.auth.secrets import hash_secret, looks_like_token, new_token
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError


@dataclass(frozen=True)
class IssuedToken:
    record: ApiToken
    secret: str  # shown once, never stored


class TokenService:
    def __init__(self, session: Session, *, max_days: int) -> None:
        self.session = session
        self.max_days = max_days

    def create(self, user_id: int, name: str, expires_in_days: int | None) -> IssuedToken:
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
        secret = new_token()
        record = ApiToken(
            user_id=user_id,
            name=name,
            token_hash=hash_secret(secret),
            display_prefix=secret[:8],
            expires_at=utcnow() + timedelta(days=days),
        )
        self.session.add(record)
        self.session.flush()
        return IssuedToken(record=record, secret=secret)

    def list_for(self, user_id: int) -> list[ApiToken]:
        return list(
            self.session.scalars(
                select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
            ).all()
        )

    def revoke(self, principal: Principal, token_id: int) -> ApiToken:
        token = self.session.get(ApiToken, token_id)
        if token is None or (token.user_id != principal.user_id and not principal.is_admin):
            raise TokenNotFoundError(f"token {token_id} not found")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
        return token

    def authenticate(self, secret: str, *, ip: str | None = None) -> tuple[User, ApiToken]:
        """Resolve a token secret to its user. Raises without echoing the secret."""
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
        if token.last_used_at is None or now - token.last_used_at > timedelta(seconds=60):
            token.last_used_at = now  # throttled so hot paths do not write on every request
            token.last_used_ip = ip
        return token.user, token
