"""Web sessions: a random cookie secret, stored as its sha256, with a CSRF token per session."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from stockade.auth.models import WebSession
from stockade.auth.secrets import hash_secret
from stockade.core.clock import utcnow

#: What ``WebSession.ip`` and ``ApiToken.last_used_ip`` hold. Behind a trusted proxy the address is
#: what X-Forwarded-For said, which may be any text: it is kept as the request log keeps it.
MAX_ADDRESS = 64


@dataclass(frozen=True)
class NewSession:
    record: WebSession
    cookie: str


class SessionService:
    def __init__(self, session: Session, *, hours: int) -> None:
        self.session = session
        self.hours = hours

    def start(self, user_id: int, *, ip: str | None, user_agent: str | None) -> NewSession:
        cookie = secrets.token_urlsafe(32)
        record = WebSession(
            session_hash=hash_secret(cookie),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(24),
            expires_at=utcnow() + timedelta(hours=self.hours),
            ip=ip[:MAX_ADDRESS] if ip else None,
            user_agent=(user_agent or "")[:512],
        )
        self.session.add(record)
        self.session.flush()
        return NewSession(record=record, cookie=cookie)

    def resolve(self, cookie: str) -> WebSession | None:
        record = self.session.scalar(
            select(WebSession).where(WebSession.session_hash == hash_secret(cookie))
        )
        if record is None or record.expires_at <= utcnow() or not record.user.is_active:
            return None
        return record

    def end(self, cookie: str) -> None:
        self.session.execute(
            delete(WebSession).where(WebSession.session_hash == hash_secret(cookie))
        )

    def end_all(self, user_id: int, *, keep: str | None = None) -> None:
        """Sign a user out everywhere (disabled, password changed or reset), except the session
        whose cookie is ``keep`` (the one changing its own password)."""
        stmt = delete(WebSession).where(WebSession.user_id == user_id)
        if keep:
            stmt = stmt.where(WebSession.session_hash != hash_secret(keep))
        self.session.execute(stmt)
