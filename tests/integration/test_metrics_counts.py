"""Feed syncs are counted by outcome once their transaction commits, never for one rolled back
(``vulns/feed_state.py``; the same after-commit way as scan verdicts); the job queues' depth and
oldest age are read from the database at scrape time (``web/metrics.py``), on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.channels.publishing import request_publication
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.metrics import metrics
from stockade.db.engine import transaction
from stockade.mirroring.models import Mirror, MirrorRun
from stockade.vulns.errors import FeedUnreachableError
from stockade.vulns.feed_state import record_unreachable, set_status
from stockade.vulns.models import VulnFeed
from stockade.web.metrics import QueueCollector
from tests.integration.conftest import make_channel


def synced(outcome: str) -> float:
    registry = CollectorRegistry()
    registry.register(metrics().feed_syncs)
    return registry.get_sample_value("stockade_feed_syncs_total", {"outcome": outcome}) or 0.0


class Rollback(Exception):
    pass


@pytest.mark.one_backend  # the counting is the same on both (an after-commit hook of the session)
def test_feed_syncs_are_counted_once_committed(container: Container) -> None:
    with transaction(container.factory) as session:
        feed = VulnFeed(name="metrics-feed", url="https://feeds.invalid/x.json", format="osv")
        session.add(feed)
    feed_id = feed.id
    ok, unreachable = synced("ok"), synced("unreachable")

    with transaction(container.factory) as session:
        set_status(session.get_one(VulnFeed, feed_id), "ok", None)
    assert synced("ok") == ok + 1

    with pytest.raises(Rollback):
        _set_then_fail(container, feed_id)
    assert synced("ok") == ok + 1  # rolled back: not a sync that ended

    error = FeedUnreachableError("https://feeds.invalid/x.json: cannot be reached")
    record_unreachable(container.factory, feed_id, error)
    assert synced("unreachable") == unreachable + 1


def _set_then_fail(container: Container, feed_id: int) -> None:
    with transaction(container.factory) as session:
        set_status(session.get_one(VulnFeed, feed_id), "ok", None)
        raise Rollback


def test_job_queues_are_read_from_the_database(container: Container, admin: Principal) -> None:
    make_channel(container, admin, "queued")
    now = utcnow()
    with transaction(container.factory) as session:
        channel = session.query(Channel).filter_by(name="queued").one()
        request_publication(session, channel.id, "noarch")
        mirror = Mirror(
            name="queued-mirror",
            channel_id=channel.id,
            source_url="https://upstream.invalid/x",
            schedule="0 * * * *",
            next_run_at=now - timedelta(hours=1),  # past due: no scheduler took it
        )
        session.add(mirror)
        session.flush()
        session.add(MirrorRun(mirror_id=mirror.id, created_at=now - timedelta(hours=2)))
    families = {f.name: f for f in QueueCollector(container.read_factory).collect()}
    assert families["stockade_database_up"].samples[0].value == 1
    depth = {s.labels["queue"]: s.value for s in families["stockade_job_queue_depth"].samples}
    age = {
        s.labels["queue"]: s.value
        for s in families["stockade_job_queue_oldest_age_seconds"].samples
    }
    assert depth["publications"] >= 1
    assert (depth["mirror_runs"], depth["mirror_schedules"]) == (1, 1)
    assert 7200 <= age["mirror_runs"] < 7200 + 120
    assert 3600 <= age["mirror_schedules"] < 3600 + 120
    assert (depth["scans"], age["scans"]) == (0, 0)
