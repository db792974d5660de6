"""A deleted channel's downloads move to an id no channel has, each deletion its own, so a channel
that gets the same id later (SQLite reuses the highest id) never counts them (issue 17 attacks)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from stockade.audit.downloads import retire_channel
from stockade.audit.downloads_models import DownloadDaily, DownloadEvent
from stockade.container import Container
from stockade.db.engine import transaction
from tests.integration.test_downloads_store import dl, write

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
