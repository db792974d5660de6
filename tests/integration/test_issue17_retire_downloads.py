"""A deleted channel's downloads move to an id no channel has, each deletion its own, so a channel
that gets the same id later (SQLite reuses the highest id) never counts them (issue 17 attacks)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from stockade.audit.downloads import retire_channel
from stockade.audit.downloads_models import DownloadDaily, DownloadEvent
from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.container import Container
from stockade.db.engine import transaction
from tests.integration.conftest import make_channel
from tests.integration.test_downloads_store import DAY1, dl, write

pytestmark = pytest.mark.xdist_group("issue17-attacks")


def test_each_deletion_of_an_id_retires_its_rows_apart(container: Container) -> None:
    write(container, [dl("first", channel_id=7), dl("other", channel_id=8)])
    with transaction(container.factory) as session:
        retire_channel(session, 7)
    write(container, [dl("second", channel_id=7)])  # the id given to a new channel
    with transaction(container.factory) as session:
        retire_channel(session, 7)
    with container.read_factory() as session:
        for table in (DownloadEvent, DownloadDaily):
            ids = dict(session.execute(select(table.name, table.channel_id)).all())
            assert ids["other"] == 8
            assert ids["first"] < 0 and ids["second"] < 0 and ids["first"] != ids["second"]


def _ids(container: Container, name: str) -> set[int]:
    with container.read_factory() as session:
        return set(
            session.scalars(select(DownloadEvent.channel_id).where(DownloadEvent.name == name))
        )


def test_rows_of_an_earlier_channel_never_count_for_a_new_one(
    container: Container, admin: Principal
) -> None:
    """Written before the new channel came (retired when it is created), or after (the flusher
    sees the download is older than the channel): neither lands on the new channel's id."""
    make_channel(container, admin, "first")
    with container.read_factory() as session:
        first = session.scalar(select(Channel.id).where(Channel.name == "first"))
    assert first is not None
    write(container, [dl("early", channel_id=first + 1)])  # a deleted channel's, buffered
    make_channel(container, admin, "second")
    with container.read_factory() as session:
        second = session.scalar(select(Channel.id).where(Channel.name == "second"))
    assert second is not None
    write(container, [dl("late", channel_id=second, at=DAY1)])  # older than the channel
    write(container, [dl("mine", channel_id=second, at=datetime.now(UTC))])
    assert second not in _ids(container, "late") and _ids(container, "mine") == {second}
    if second == first + 1:  # SQLite, and PostgreSQL's next value of the sequence
        assert second not in _ids(container, "early")
