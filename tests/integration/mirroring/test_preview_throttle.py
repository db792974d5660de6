"""Dry runs and explanations per caller and minute, counted in the database (issue 11, item 7):
every process and replica sees the same count."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from stockade.auth.models import SignInFailures
from stockade.auth.principal import ANONYMOUS, Principal
from stockade.container import Container
from stockade.mirroring.errors import PreviewBusyError
from stockade.mirroring.throttle import caller_key, take_preview_turn
from stockade.settings import MirrorSettings

LIMITS = MirrorSettings(previews_per_minute_anonymous=3, previews_per_minute_user=5)


def test_anonymous_counted_per_address_across_processes(container: Container) -> None:
    # A second engine on the same database stands for another worker process.
    other = sessionmaker(create_engine(str(container.settings.db_url)))
    for factory in (container.factory, other, container.factory):
        take_preview_turn(factory, ANONYMOUS, "192.0.2.7", LIMITS)
    with pytest.raises(PreviewBusyError) as refused:
        take_preview_turn(other, ANONYMOUS, "192.0.2.7", LIMITS)
    assert refused.value.extra["retry_after"] >= 1
    take_preview_turn(container.factory, ANONYMOUS, "192.0.2.8", LIMITS)  # another address
    with container.factory() as session:
        row = session.scalar(
            select(SignInFailures).where(SignInFailures.key == caller_key(ANONYMOUS, "192.0.2.7"))
        )
        assert row is not None and row.failures == 3
    other.kw["bind"].dispose()


def test_signed_in_counted_per_user(container: Container, admin: Principal) -> None:
    for _ in range(5):
        take_preview_turn(container.factory, admin, "192.0.2.9", LIMITS)
    with pytest.raises(PreviewBusyError):
        take_preview_turn(container.factory, admin, "198.51.100.1", LIMITS)  # same user
    take_preview_turn(container.factory, ANONYMOUS, "192.0.2.9", LIMITS)
