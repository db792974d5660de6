"""A feed whose host gives no answer (issue 12, item 7: default feeds on a site without internet):
``unreachable`` with the time since when, one warning, not an error logged at every retry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.db.migrate import upgrade
from stockade.settings import load_settings
from stockade.vulns.feed_state import unreachable_since
from stockade.vulns.feedsync import FeedService
from stockade.vulns.models import VulnFeed
from stockade.vulns.tasks import sync_feed, take_due_feeds
from tests.conftest import PG_URL, backends
from tests.support.server import free_port, fresh_database


@pytest.fixture(params=backends())
def loopback(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Container]:
    """A container whose outbound policy lets feeds try 127.0.0.1 (where nothing listens)."""
    with fresh_database(str(request.param), tmp_path, PG_URL) as url:
        upgrade(url)
        settings = load_settings(
            data_dir=tmp_path, database_url=url, outbound={"allow_loopback": True}
        )
        built = Container.build(settings)
        built.bootstrap()
        yield built
        built.close()


@pytest.fixture
def root(loopback: Container) -> Principal:
    with transaction(loopback.factory) as session:
        users = UserService(session)
        return users.principal_for(users.get_by_name("admin"), via="password")


def row(container: Container, feed_id: int) -> VulnFeed:
    with container.factory() as session:
        feed = session.get(VulnFeed, feed_id)
        assert feed is not None
        return feed


def since(container: Container, feed_id: int) -> object:
    feed = row(container, feed_id)
    return unreachable_since(feed.last_status, feed.last_error, feed.last_sync_at)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_unreachable_feed_warns_once_and_says_since_when(
    loopback: Container, root: Principal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"https://127.0.0.1:{free_port()}/kev.json"  # nothing listens: no answer
    with transaction(loopback.factory) as session:
        feed_id = FeedService(session).create(root, "cisa-kev", url, "kev").id

    assert sync_feed(loopback, feed_id) is None
    first = row(loopback, feed_id)
    assert first.last_status == "unreachable"
    assert first.last_error == f"fetching {url}: cannot be reached"
    assert since(loopback, feed_id) == first.last_sync_at is not None
    assert len(warnings_of(caplog)) == 1 and "cisa-kev" in warnings_of(caplog)[0]
    assert "Connect" in warnings_of(caplog)[0]  # the reason is in the log, not in the API

    # the scheduled retry: taken, still shown unreachable (not queued), silent, same since-time
    with transaction(loopback.factory) as session:
        session.execute(update(VulnFeed).values(next_run_at=utcnow() - timedelta(minutes=1)))
        assert take_due_feeds(session) == [feed_id]
    assert row(loopback, feed_id).last_status == "unreachable"
    caplog.clear()
    sync_feed(loopback, feed_id)
    assert warnings_of(caplog) == []
    assert since(loopback, feed_id) == first.last_sync_at

    # a sync asked for by hand is queued meanwhile, and the streak goes on
    with transaction(loopback.factory) as session:
        FeedService(session).request_sync(root, "cisa-kev")
    assert row(loopback, feed_id).last_status == "queued"
    assert since(loopback, feed_id) == first.last_sync_at
    sync_feed(loopback, feed_id)
    assert warnings_of(caplog) == []
    assert row(loopback, feed_id).last_status == "unreachable"
    assert since(loopback, feed_id) == first.last_sync_at

    # reachable again (here: pointed at a copy): ok, no since-time
    kev = tmp_path / "kev.json"
    kev.write_text('{"catalogVersion": "1", "count": 0, "vulnerabilities": []}')
    with transaction(loopback.factory) as session:
        FeedService(session).update(root, "cisa-kev", url=kev.as_uri())
    assert sync_feed(loopback, feed_id) is not None
    assert row(loopback, feed_id).last_status == "ok"
    assert since(loopback, feed_id) is None
    assert any("reached again" in r.getMessage() for r in caplog.records)


def test_a_refused_or_failing_feed_is_failed_not_unreachable(
    loopback: Container, root: Principal, tmp_path: Path
) -> None:
    """Only silence is ``unreachable``: a missing file (an answer that cannot be used) fails."""
    missing = (tmp_path / "gone.json").as_uri()
    with transaction(loopback.factory) as session:
        feed_id = FeedService(session).create(root, "gone", missing, "kev").id
    assert sync_feed(loopback, feed_id) is None
    assert row(loopback, feed_id).last_status == "failed"
    assert since(loopback, feed_id) is None
