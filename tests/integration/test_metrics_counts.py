"""Feed syncs are counted by outcome once their transaction commits, never for one rolled back
(``vulns/feed_state.py``; the same after-commit way as scan verdicts)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from stockade.container import Container
from stockade.core.metrics import metrics
from stockade.db.engine import transaction
from stockade.vulns.errors import FeedUnreachableError
from stockade.vulns.feed_state import record_unreachable, set_status
from stockade.vulns.models import VulnFeed

# The counting is the same on both backends (an after-commit hook of the session).
pytestmark = pytest.mark.one_backend


def synced(outcome: str) -> float:
    registry = CollectorRegistry()
    registry.register(metrics().feed_syncs)
    return registry.get_sample_value("stockade_feed_syncs_total", {"outcome": outcome}) or 0.0


class Rollback(Exception):
    pass


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
