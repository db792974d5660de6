"""Turn presented credentials into a principal, with a short in-memory cache for hot paths.

The cache is per process, but its invalidation is not: ``forget_all`` bumps a counter row in the
database (``auth/revision.py``) that every process reads at least every
``REVISION_CHECK_SECONDS``, so a revoked token stops working on every worker within a second.

The cache and its single-flight refreshes are in ``auth/credential_cache.py``.

Credentials come from the edge already extracted: a token (URL ``/t/TOKEN/``, ``Bearer``, or basic
auth password), a username and password, or a web session cookie. Wrong credentials raise; no
credentials give the anonymous principal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.audit.service import AuditLog, Target
from stockade.auth.credential_cache import REVISION_CHECK_SECONDS, CredentialCache, Credentials
from stockade.auth.errors import InvalidCredentialsError
from stockade.auth.identity import ExternalIdentity, IdentityService
from stockade.auth.models import User
from stockade.auth.principal import ANONYMOUS, Principal
from stockade.auth.ratelimit import AttemptLimiter
from stockade.auth.revision import bump_revision
from stockade.auth.secrets import hash_secret, looks_like_token
from stockade.auth.service import UserService
from stockade.auth.sessions import SessionService
from stockade.auth.token_touch import TokenTouches
from stockade.auth.tokens import TokenService, needs_touch
from stockade.core.clock import utcnow
from stockade.core.errors import AuthenticationError
from stockade.db.engine import transaction

__all__ = [
    "REVISION_CHECK_SECONDS",
    "Authenticator",
    "BearerVerifier",
    "Credentials",
    "PasswordDirectory",
    "looks_like_jwt",
]

MAX_NAME = 256
MAX_PASSWORD = 1024


class PasswordDirectory(Protocol):
    """A directory that checks passwords (LDAP/AD): ``stockade.auth.ldap.LdapDirectory``."""

    @property
    def group_roles(self) -> Mapping[str, Sequence[str]]: ...

    def holds(self, dn: str) -> bool:
        """Whether the directory still has this user entry."""
        ...

    def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """The identity on success; None when the directory has no such user.

        Raises ``InvalidCredentialsError`` for a wrong password or a disabled account, and an
        ``ErrorKind.UNAVAILABLE`` error when the directory cannot be reached.
        """
        ...


class BearerVerifier(Protocol):
    """Checks an OpenID provider's JWT access token: ``stockade.auth.oidc.OidcBearerVerifier``."""

    @property
    def group_roles(self) -> Mapping[str, Sequence[str]]: ...

    def verify(self, token: str) -> ExternalIdentity:
        """Signature (JWKS), issuer, audience, expiry; raises ``InvalidCredentialsError``."""
        ...


def _token_key(token: str) -> str:
    return "t:" + hashlib.sha256(token.encode()).hexdigest()


def looks_like_jwt(value: str) -> bool:
    return value.startswith("eyJ") and value.count(".") == 2


class Authenticator(CredentialCache):
    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        read_factory: sessionmaker[Session] | None = None,
        token_max_days: int,
        session_hours: int,
        directory: PasswordDirectory | None = None,
        bearer: BearerVerifier | None = None,
        login_attempts_per_minute: int = 20,
    ) -> None:
        self.factory = factory
        #: Credentials are checked in read-only sessions (on SQLite they run beside a writer).
        self.read_factory = read_factory or factory
        self.token_max_days = token_max_days
        self.session_hours = session_hours
        self.directory = directory
        self.bearer = bearer
        self.limiter = AttemptLimiter(factory, per_minute=login_attempts_per_minute)
        self.touches = TokenTouches(factory)
        self._init_cache()

    def forget_all(self) -> None:
        """Drop cached principals here and in every other process (after a revocation, a
        password change, a user disabled or deleted, a role or group change).

        Call it after the change committed: other processes may cache again as soon as they see
        the new revision."""
        with transaction(self.factory) as session:
            revision = bump_revision(session)
        with self._lock:
            self._cache.clear()
            self._revision = revision
            self._revision_read_at = time.monotonic()

    def cached_token(self, token: str) -> Principal | None:
        """``cached`` for a bare token (the conda fast path's common case)."""
        return self._lookup(_token_key(token), time.monotonic())

    def cached(self, creds: Credentials) -> Principal | None:
        """The principal if these credentials were resolved in the last seconds (no I/O):
        hot paths call this on the event loop and go to a thread only on a miss."""
        if creds.empty:
            return ANONYMOUS
        return self._lookup(self._cache_key(creds), time.monotonic())

    def authenticate(self, creds: Credentials) -> Principal:
        """The principal for these credentials; wrong ones raise (and are remembered briefly)."""
        if creds.empty:
            return ANONYMOUS
        key = self._cache_key(creds)
        now = time.monotonic()
        self._follow_revision(now)
        hit = self._lookup(key, now)
        if hit is not None:
            return hit
        return self._resolve_once(key, creds)

    @staticmethod
    def _cache_key(creds: Credentials) -> str:
        if creds.malformed:
            return "m:"
        if creds.token:
            return _token_key(creds.token)
        if creds.session_cookie:
            return "s:" + hash_secret(creds.session_cookie)
        return "p:" + hash_secret(f"{creds.username}\0{creds.password}")

    def _resolve(self, creds: Credentials) -> Principal:
        if creds.malformed:
            exc = InvalidCredentialsError("the Authorization header could not be read")
            self._record_failure("basic", None, exc)
            raise exc
        token = creds.token
        if token is None and creds.password and looks_like_token(creds.password):
            token = creds.password  # conda's basic auth with the token as password
        if token is None and creds.username and looks_like_token(creds.username):
            token = creds.username  # https://stk-…@host/…: the token as the user name
        if token is not None and self.bearer is not None and looks_like_jwt(token):
            return self._bearer_principal(token)
        if token is not None:
            return self._token_principal(token, creds.ip)
        if creds.session_cookie:
            with self.read_factory() as session:
                web = SessionService(session, hours=self.session_hours).resolve(
                    creds.session_cookie
                )
                if web is None:
                    return ANONYMOUS
                return UserService(session).principal_for(web.user, via="session")
        return self.password_principal(creds.username or "", creds.password or "", ip=creds.ip)

    def _token_principal(self, token: str, ip: str | None) -> Principal:
        """Checked in a read-only session; the last use is written at most once a minute per
        token, beside the request (``auth/token_touch.py``): a token check never waits for a
        writer."""
        try:
            with self.read_factory() as session:
                user, record = TokenService(session, max_days=self.token_max_days).authenticate(
                    token
                )
                principal = UserService(session).principal_for(user, via="token", token=record)
                now = utcnow()
                stale = needs_touch(record, now)
        except AuthenticationError as exc:
            self._record_failure("token", None, exc)
            raise
        if stale and principal.token_id is not None:
            self.touches.ask(principal.token_id, ip, now)  # beside the request (token_touch.py)
        return principal

    def _bearer_principal(self, token: str) -> Principal:
        assert self.bearer is not None
        try:
            identity = self.bearer.verify(token)
            with transaction(self.factory) as session:
                user = IdentityService(session).upsert(
                    identity, group_roles=self.bearer.group_roles
                )
                if not user.is_active:
                    raise InvalidCredentialsError("this account is disabled")
                return UserService(session).principal_for(user, via="oidc-token")
        except AuthenticationError as exc:
            self._record_failure("oidc-token", None, exc)
            raise

    def password_principal(
        self, username: str, password: str, *, ip: str | None = None, method: str = "password"
    ) -> Principal:
        """Check a password (local, or the directory's); every outcome is audited.

        Failures are counted in the database (per address, and per name and address) before
        raising; the answer is the same whether or not the account exists.
        """
        self.limiter.check(username, ip)
        failure: AuthenticationError | None = None
        principal: Principal | None = None
        with transaction(self.factory) as session:
            use_directory = False
            try:
                if not _usable(username, MAX_NAME) or not _usable(password, MAX_PASSWORD):
                    raise InvalidCredentialsError("wrong username or password")
                existing = session.scalar(select(User).where(User.username == username))
                use_directory = self.directory is not None and (
                    existing is None or existing.source == "ldap"
                )
                principal = self._check_password(session, username, password, existing, method)
            except AuthenticationError as exc:
                failure = exc
                AuditLog(session).record(
                    "auth.failed",
                    _Who(None, "anonymous", "anonymous", method),
                    Target("user", _shown_name(username)),
                    outcome="failure",
                    details={"method": "ldap" if use_directory else method, "reason": exc.code},
                )
        if failure is not None or principal is None:
            self.limiter.failed(username, ip)
            raise failure or InvalidCredentialsError("wrong username or password")
        self.limiter.succeeded(username, ip)
        return principal

    def _check_password(
        self, session: Session, username: str, password: str, existing: User | None, method: str
    ) -> Principal:
        users = UserService(session)
        if self.directory is not None and (existing is None or existing.source == "ldap"):
            user = self._directory_login(session, username, password, existing)
            via = "ldap"
        else:
            user = users.authenticate_password(username, password)
            via = "password"
        AuditLog(session).record(
            "auth.login",
            _Who(user.id, user.username, user.kind, via),
            Target("user", user.username, user.id),
            details={"method": via if method == "password" else method},
        )
        return users.principal_for(user, via=via)

    def _directory_login(
        self, session: Session, username: str, password: str, existing: User | None
    ) -> User:
        """Sign in through the directory (the lock, per name and address, was checked before)."""
        assert self.directory is not None
        identities = IdentityService(session)
        known = existing or identities.find_by_name("ldap", username)
        identity = self.directory.authenticate(username, password)
        if identity is None:
            # Removed from the directory: disable at once, but only after checking the account's
            # own entry (a name typed differently must not disable anyone).
            gone = (
                known is not None
                and known.is_active
                and known.external_id is not None
                and not self.directory.holds(known.external_id)
            )
            if gone:
                assert known is not None
                identities.disable_missing_user(known, "not found in ldap")
            raise InvalidCredentialsError("wrong username or password")
        user = identities.upsert(identity, group_roles=self.directory.group_roles)
        if not user.is_active:
            raise InvalidCredentialsError("wrong username or password")  # do not reveal why
        user.last_login_at = utcnow()
        return user

    def _record_failure(self, method: str, username: str | None, exc: AuthenticationError) -> None:
        with transaction(self.factory) as session:
            AuditLog(session).record(
                "auth.failed",
                _Who(None, "anonymous", "anonymous", method),
                Target("user", username) if username else None,
                outcome="failure",
                details={"method": method, "reason": exc.code},
            )


def _usable(value: str, limit: int) -> bool:
    """Whether a typed name or password can be looked up at all (no NUL, a sane length)."""
    return len(value) <= limit and "\x00" not in value


def _shown_name(username: str) -> str:
    """The typed name as the audit log may keep it: never a token, no control characters."""
    if looks_like_token(username):
        return "stk-***"
    return "".join(c if c.isprintable() else "?" for c in username[:MAX_NAME])


@dataclass(frozen=True)
class _Who:
    user_id: int | None
    username: str
    kind: str
    via: str
    token_id: int | None = None
