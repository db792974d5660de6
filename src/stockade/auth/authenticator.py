"""Turn presented credentials into a principal, with a short in-memory cache for hot paths.

Credentials come from the edge already extracted: a token (URL ``/t/TOKEN/``, ``Bearer``, or basic
auth password), a username and password, or a web session cookie. Wrong credentials raise; no
credentials give the anonymous principal.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.errors import InvalidCredentialsError
from stockade.auth.principal import ANONYMOUS, Principal
from stockade.auth.secrets import hash_secret, looks_like_token
from stockade.auth.service import UserService
from stockade.auth.sessions import SessionService
from stockade.auth.tokens import TokenService
from stockade.db.engine import transaction

CACHE_SECONDS = 15.0


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    username: str | None = None
    password: str | None = None
    session_cookie: str | None = None
    ip: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.token or self.username or self.session_cookie)


class Authenticator:
    def __init__(
        self, factory: sessionmaker[Session], *, token_max_days: int, session_hours: int
    ) -> None:
        self.factory = factory
        self.token_max_days = token_max_days
        self.session_hours = session_hours
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def forget_all(self) -> None:
        """Drop cached principals (after a revocation, a password change, a role change)."""
        with self._lock:
            self._cache.clear()

    def authenticate(self, creds: Credentials) -> Principal:
        if creds.empty:
            return ANONYMOUS
        key = self._cache_key(creds)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = self._resolve(creds)
        with self._lock:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[key] = (now + CACHE_SECONDS, principal)
        return principal

    @staticmethod
    def _cache_key(creds: Credentials) -> str:
        if creds.token:
            return "t:" + hash_secret(creds.token)
        if creds.session_cookie:
            return "s:" + hash_secret(creds.session_cookie)
        return "p:" + hash_secret(f"{creds.username}\0{creds.password}")

    def _resolve(self, creds: Credentials) -> Principal:
        with transaction(self.factory) as session:
            users = UserService(session)
            token = creds.token
            if token is None and creds.password and looks_like_token(creds.password):
                token = creds.password  # conda's basic auth with the token as password
            if token is not None:
                tokens = TokenService(session, max_days=self.token_max_days)
                user, record = tokens.authenticate(token, ip=creds.ip)
                return users.principal_for(user, via="token", token_id=record.id)
            if creds.session_cookie:
                web = SessionService(session, hours=self.session_hours).resolve(
                    creds.session_cookie
                )
                if web is None:
                    return ANONYMOUS
                return users.principal_for(web.user, via="session")
        return self.password_principal(creds.username or "", creds.password or "")

    def password_principal(self, username: str, password: str) -> Principal:
        """Check a password; failed attempts are committed (they feed the lockout) before raising."""
        failure: InvalidCredentialsError | None = None
        with transaction(self.factory) as session:
            users = UserService(session)
            try:
                user = users.authenticate_password(username, password)
                return users.principal_for(user, via="password")
            except InvalidCredentialsError as exc:
                failure = exc
        raise failure
