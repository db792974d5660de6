"""The credential cache of ``Authenticator`` (``auth/authenticator.py``): per process, a few
seconds, invalidated across processes through the shared revision (``auth/revision.py``).

Refreshes are single-flight, so that an expiring entry never sends every waiting request to the
database at once (issue 18: Bearer 304s had a p99 of 260 ms against 25 ms public): the shared
revision is read by one thread at a time (the others wait for it), concurrent misses of one
credential resolve it once (the others wait for that answer), and a hot token or session entry is
refreshed by one background thread shortly before it expires while requests keep using it. None of
this lengthens how long a revocation may go unseen (``REVISION_CHECK_SECONDS``).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.principal import Principal
from stockade.auth.revision import current_revision
from stockade.core.errors import AuthenticationError

log = logging.getLogger("stockade.auth")

CACHE_SECONDS = 15.0
REVISION_CHECK_SECONDS = 1.0  # how stale another process's revocation may be seen here
#: A hot entry this close to its expiry is refreshed in the background (one thread per entry)
REFRESH_AHEAD_SECONDS = 3.0
#: The shared revision is re-read in the background once it is this old (hard limit above)
REVISION_REFRESH_AHEAD = 0.5
#: How long a request waits for another thread's resolution of the same credential
FLIGHT_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    username: str | None = None
    password: str | None = None
    session_cookie: str | None = None
    ip: str | None = None
    malformed: bool = (
        False  # an Authorization header that could not be read: refused, not anonymous
    )

    @property
    def empty(self) -> bool:
        return not (self.token or self.username or self.session_cookie or self.malformed)


class _Entry(NamedTuple):
    expires: float  # time.monotonic()
    value: Principal | AuthenticationError
    creds: Credentials | None  # to refresh it in the background (tokens, sessions)


class _Flight:
    """One resolution of a credential in progress; others wait on ``done``."""

    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: Principal | AuthenticationError | None = None


class CredentialCache:
    """The cache and its single-flight refreshes; the authenticator supplies ``_resolve``."""

    factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]

    def _init_cache(self) -> None:
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._revision_read_at = float("-inf")
        self._revision_lock = threading.Lock()  # one reader of the shared revision at a time
        self._flights: dict[str, _Flight] = {}  # credentials being resolved, by cache key
        self._refreshing: set[str] = set()  # keys refreshed in the background right now

    def _resolve(self, creds: Credentials) -> Principal:
        raise NotImplementedError

    def _resolve_once(self, key: str, creds: Credentials) -> Principal:
        """Resolve a missed credential; concurrent misses of the same one wait for the first."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            if flight.done.wait(FLIGHT_WAIT_SECONDS) and flight.outcome is not None:
                if isinstance(flight.outcome, AuthenticationError):
                    raise _bare(flight.outcome)
                return flight.outcome
            return self._resolve_and_remember(key, creds)  # it failed otherwise: try ourselves
        try:
            principal = self._resolve_and_remember(key, creds, flight)
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
        return principal

    def _resolve_and_remember(
        self, key: str, creds: Credentials, flight: _Flight | None = None
    ) -> Principal:
        seen = self._revision  # what was read may be stale once the revision moves
        now = time.monotonic()
        try:
            principal = self._resolve(creds)
        except AuthenticationError as exc:
            self._remember(key, now, _bare(exc), seen, None)
            if flight is not None:
                flight.outcome = _bare(exc)
            raise
        self._remember(key, now, principal, seen, creds)
        if flight is not None:
            flight.outcome = principal
        return principal

    def _follow_revision(self, now: float) -> None:
        """Read the shared revision when ours is older than a second; drop the cache if it moved.

        One thread reads it; the others wait for that read instead of querying too."""
        if now - self._revision_read_at < REVISION_CHECK_SECONDS:
            return
        if not self._revision_lock.acquire(blocking=False):
            with self._revision_lock:  # another thread is reading it: use what it reads
                return
        try:
            if time.monotonic() - self._revision_read_at < REVISION_CHECK_SECONDS:
                return  # read meanwhile
            self._read_revision()
        finally:
            self._revision_lock.release()

    def forget_locally(self) -> None:
        """Drop this process's cached principals and read the shared revision again on the next
        check (nothing changes for the other processes: ``forget_all`` is for changes)."""
        with self._lock:
            self._cache.clear()
            self._revision_read_at = float("-inf")

    def _read_revision(self) -> None:
        read_at = time.monotonic()
        with self.read_factory() as session:  # beside a writer, never behind it
            revision = current_revision(session)
        with self._lock:
            if revision != self._revision:
                self._cache.clear()
            self._revision = revision
            self._revision_read_at = read_at

    def _lookup(self, key: str, now: float) -> Principal | None:
        """A live cache entry: the principal, or the remembered failure raised again.

        Nothing counts as cached once the shared revision has not been read for a second: the
        caller then goes the slow way (``authenticate``), which reads it. Shortly before either
        limit, one background thread refreshes what is about to expire (no I/O here)."""
        age = now - self._revision_read_at
        if age >= REVISION_CHECK_SECONDS:
            return None
        hit = self._cache.get(key)
        if hit is None or hit.expires <= now:
            return None
        if isinstance(hit.value, AuthenticationError):
            raise _bare(hit.value)  # a copy: raising the kept one would grow its traceback
        if age >= REVISION_REFRESH_AHEAD:
            self._refresh_in_background("", None)
        if hit.creds is not None and hit.expires - now < REFRESH_AHEAD_SECONDS:
            self._refresh_in_background(key, hit.creds)
        return hit.value

    def _refresh_in_background(self, key: str, creds: Credentials | None) -> None:
        """Start one thread refreshing ``key`` (``""``: the shared revision) unless one is."""
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
        threading.Thread(
            target=self._refresh, args=(key, creds), name="stockade-auth-refresh", daemon=True
        ).start()

    def _refresh(self, key: str, creds: Credentials | None) -> None:
        try:
            if creds is None:
                with self._revision_lock:
                    self._read_revision()
            else:
                self._resolve_and_remember(key, creds)
        except Exception:  # a failed refresh leaves the entry to expire
            log.debug("background credential refresh failed", exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _remember(
        self,
        key: str,
        now: float,
        value: Principal | AuthenticationError,
        seen: int | None,
        creds: Credentials | None,
    ) -> None:
        """Cache ``value`` unless the revision moved while it was read (a change committed
        meanwhile, here or in another process, may have made it stale). ``creds`` are kept for
        a background refresh of token and session entries (never of passwords: each check of
        one is a sign-in, audited and throttled)."""
        with self._lock:
            if self._revision != seen:
                return
            if len(self._cache) > 50_000:
                self._cache.clear()
            keep = creds if key.startswith(("t:", "s:")) else None
            self._cache[key] = _Entry(now + CACHE_SECONDS, value, keep)


def _bare(error: AuthenticationError) -> AuthenticationError:
    """A copy of ``error`` with no traceback, cause or context.

    A remembered failure is raised again on every hit: raising the same object would add each
    request's frames (and, through them, its scope and credentials) to one traceback that grows
    for as long as the entry lives. The copy keeps the message, code and extra fields."""
    return copy.copy(error).with_traceback(None)
