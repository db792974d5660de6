"""Failed sign-ins, counted in the database so that every worker and replica shares them.

Two counters, and neither says whether an account exists:

- per client address: after ``per_minute`` failures in a minute, the address gets 429 for the
  rest of that minute (IPv6 clients are counted per /64: one host usually owns the prefix);
- per account name *and* client address: after 10 failures within 15 minutes, that name from that
  address is locked for 15 minutes. Someone else's guesses cannot lock a user out from their own
  address, and a name that does not exist locks exactly like one that does.

Names are stored only as hashes (people type passwords into the name field). Stale rows are
deleted as new failures come in, so the table stays small.
"""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.errors import AccountLockedError
from stockade.auth.models import SignInFailures
from stockade.core.clock import utcnow
from stockade.core.errors import TooManyRequestsError
from stockade.db.engine import transaction

WINDOW = timedelta(seconds=60)
MAX_FAILED_LOGINS = 10
LOCKOUT = timedelta(minutes=15)
LOCKED_MESSAGE = (
    "too many failed sign-ins with this name from your address; try again in 15 minutes"
)


def client_key(ip: str | None) -> str:
    if ip is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(address)


def address_key(ip: str | None) -> str:
    return "ip:" + hashlib.sha256(client_key(ip).encode()).hexdigest()[:64]


def account_key(name: str, ip: str | None) -> str:
    """One typed account name (case and surrounding spaces ignored) from one address."""
    typed = name.strip().lower()
    digest = hashlib.sha256(f"{typed}\0{client_key(ip)}".encode(errors="replace"))
    return "acct:" + digest.hexdigest()


class AttemptLimiter:
    def __init__(self, factory: sessionmaker[Session], *, per_minute: int) -> None:
        self.factory = factory
        self.per_minute = per_minute

    def check(self, name: str, ip: str | None) -> None:
        """Raise 429 (address limited) or ``auth:locked`` (this name from this address)."""
        keys = (address_key(ip), account_key(name, ip))
        with self.factory() as session:
            found = session.scalars(select(SignInFailures).where(SignInFailures.key.in_(keys)))
            rows = {r.key: r for r in found}
        now = utcnow()
        by_address = rows.get(keys[0])
        if (
            by_address is not None
            and by_address.window_started_at > now - WINDOW
            and by_address.failures >= self.per_minute
        ):
            retry = (by_address.window_started_at + WINDOW - now).total_seconds()
            raise TooManyRequestsError(
                "too many failed sign-ins from your address; wait a minute and try again",
                retry_after=int(retry) + 1,
            )
        by_account = rows.get(keys[1])
        locked_until = by_account.locked_until if by_account is not None else None
        if locked_until is not None and locked_until > now:
            raise AccountLockedError(LOCKED_MESSAGE)

    def failed(self, name: str, ip: str | None) -> None:
        """Count a failure for the address and for this name from it (committed at once)."""
        now = utcnow()
        with transaction(self.factory) as session:
            _count(session, address_key(ip), now, WINDOW)
            account = _count(session, account_key(name, ip), now, LOCKOUT)
            if account.failures >= MAX_FAILED_LOGINS:
                account.locked_until = now + LOCKOUT
                account.failures = 0
                account.window_started_at = now
            session.execute(
                delete(SignInFailures).where(
                    SignInFailures.window_started_at < now - LOCKOUT,
                    or_(SignInFailures.locked_until.is_(None), SignInFailures.locked_until < now),
                )
            )

    def succeeded(self, name: str, ip: str | None) -> None:
        """A right password from this address clears the count for this name (not the lock)."""
        with transaction(self.factory) as session:
            session.execute(
                delete(SignInFailures).where(
                    SignInFailures.key == account_key(name, ip),
                    SignInFailures.locked_until.is_(None),
                )
            )

    def clear(self) -> None:
        """Forget every count and lock (tests, and an operator's `stockade` reset)."""
        with transaction(self.factory) as session:
            session.execute(delete(SignInFailures))


def _count(session: Session, key: str, now: datetime, window: timedelta) -> SignInFailures:
    """The row for ``key``, created if missing and locked for update, with this failure counted;
    a window that has passed starts again."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(SignInFailures)
        .values(key=key, failures=0, window_started_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    row = session.get(SignInFailures, key, with_for_update=True, populate_existing=True)
    assert row is not None
    if row.window_started_at <= now - window:
        row.failures = 0
        row.window_started_at = now
    row.failures += 1
    session.flush()
    return row
