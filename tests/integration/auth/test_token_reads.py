"""A token check reads only: it never queues behind a writer (on SQLite, a long publication
holds the one write lock; a token check used to open a write transaction and wait for it).

The token's last use is still recorded, in a short write of its own beside the request, at most
once a minute.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import select, update

from stockade.auth.authenticator import Credentials
from stockade.auth.models import ApiToken
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from tests.integration.auth.test_credential_refresh import issue


@contextmanager
def writer_holding_locks(container: Container, token_id: int) -> Iterator[None]:
    """Another writer in the middle of a transaction: the write lock on SQLite, the token's
    row on PostgreSQL. It commits when the block ends."""
    started, finish = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with transaction(container.factory) as session:
                session.execute(update(ApiToken).where(ApiToken.id == token_id).values(name="held"))
                started.set()
                finish.wait()
        except BaseException as exc:  # reported below, not lost in the thread
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=write)
    thread.start()
    started.wait()
    try:
        yield
    finally:
        finish.set()
        thread.join()
    assert not failure, failure


def last_used(container: Container, token_id: int) -> object:
    with container.read_factory() as session:
        return session.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token_id))


def test_a_recently_used_token_is_checked_while_a_writer_holds_the_lock(
    container: Container, other: Container
) -> None:
    secret, token_id = issue(container, "reader")
    container.authenticator.authenticate(Credentials(token=secret))  # first use: recorded
    container.authenticator.touches.settle()  # written beside the request (auth/token_touch.py)
    first = last_used(container, token_id)
    assert first is not None
    with writer_holding_locks(container, token_id):
        # ``other`` has nothing cached: this goes to the database while the writer is open
        principal = other.authenticator.authenticate(Credentials(token=secret))
    assert principal.username == "reader" and principal.token_id == token_id
    other.authenticator.touches.settle()
    assert last_used(container, token_id) == first  # used again within the minute: no write


def test_a_use_after_a_minute_is_recorded_once(container: Container, other: Container) -> None:
    secret, token_id = issue(container, "toucher")
    an_hour_ago = utcnow() - timedelta(hours=1)
    with transaction(container.factory) as session:
        session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=an_hour_ago)
        )
    other.authenticator.authenticate(Credentials(token=secret, ip="192.0.2.7"))
    other.authenticator.touches.settle()
    with container.read_factory() as session:
        record = session.get(ApiToken, token_id)
        assert record is not None and record.last_used_at is not None
        assert record.last_used_at > an_hour_ago and record.last_used_ip == "192.0.2.7"


def test_a_use_after_a_minute_does_not_wait_for_a_writer(
    container: Container, other: Container
) -> None:
    """The last use is written beside the request (``auth/token_touch.py``): a check that had to
    write it waited for the writer (on SQLite its whole transaction; here the writer only
    commits after the check returned, so a waiting check failed after the busy timeout)."""
    secret, token_id = issue(container, "busy-toucher")
    an_hour_ago = utcnow() - timedelta(hours=1)
    with transaction(container.factory) as session:
        session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=an_hour_ago)
        )
    with writer_holding_locks(container, token_id):
        principal = other.authenticator.authenticate(Credentials(token=secret, ip="192.0.2.8"))
        assert principal.token_id == token_id
    other.authenticator.touches.settle()  # written once the writer is done
    with container.read_factory() as session:
        record = session.get(ApiToken, token_id)
        assert record is not None and record.last_used_at is not None
        assert record.last_used_at > an_hour_ago and record.last_used_ip == "192.0.2.8"
