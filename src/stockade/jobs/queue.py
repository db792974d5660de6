"""The job queue: Huey, with SQLite storage under the data folder (embedded default) or Redis.

Jobs carry ids only; their state lives in our database (a mirror run's row). ``stockade serve``
runs a consumer in its own process unless ``embedded_worker`` is off; ``stockade worker`` runs one
as a process of its own (as many as wanted, on any machine that reaches the same Redis).
"""

from __future__ import annotations

import logging
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer

from stockade.container import Container
from stockade.core.context import Origin, origin
from stockade.db.engine import transaction
from stockade.jobs import vulns, webhooks
from stockade.mirroring.models import RunState

log = logging.getLogger("stockade.jobs")
MATCH_BATCH = 5000


def build_huey(container: Container) -> Huey:
    jobs = container.settings.jobs
    if jobs.redis_url:
        return RedisHuey("stockade", url=jobs.redis_url, results=False)
    path = container.settings.data_dir / "jobs.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("stockade", filename=str(path.resolve()), results=False)


class EmbeddedConsumer(Consumer):  # type: ignore[misc]  # huey ships no type hints
    """A consumer inside another program (the web server): its signals stay that program's."""

    def _set_signal_handlers(self) -> None:
        return None


class JobQueue:
    """Our tasks, registered on a Huey instance; ``enqueue_*`` put an id on the queue."""

    def __init__(self, container: Container, huey: Huey | None = None) -> None:
        self.container = container
        self.huey = huey or build_huey(container)
        sync = self.sync = container.mirror_sync()

        def run_mirror(run_id: int) -> None:
            with origin(Origin(channel="job")):
                outcome = sync.execute(run_id)
            if outcome is not None:
                log.info("mirror run %s: %s (%s)", run_id, outcome.state, outcome.summary)
            if outcome is not None and outcome.state == RunState.COMPLETED:
                with transaction(container.factory) as session:
                    added = vulns.mirror_run_artifacts(session, run_id)
                if added:
                    self.enqueue_match(added)

        def sync_feed(feed_id: int) -> None:
            with origin(Origin(channel="job")):
                vulns.sync_feed(container, feed_id)

        def match_artifacts(artifact_ids: list[int]) -> None:
            with origin(Origin(channel="job")):
                vulns.match_artifacts(container, artifact_ids)

        self._run_mirror: Any = self.huey.task(name="run_mirror")(run_mirror)
        self._sync_feed: Any = self.huey.task(name="sync_feed")(sync_feed)

        def deliver_webhook(delivery_row_id: int) -> None:
            with origin(Origin(channel="job")):
                webhooks.deliver(container, delivery_row_id)

        self._match_artifacts: Any = self.huey.task(name="match_artifacts")(match_artifacts)
        self._deliver_webhook: Any = self.huey.task(name="deliver_webhook")(deliver_webhook)

    def enqueue_mirror_run(self, run_id: int) -> None:
        self._run_mirror(run_id)

    def enqueue_feed_sync(self, feed_id: int) -> None:
        self._sync_feed(feed_id)

    def enqueue_match(self, artifact_ids: list[int]) -> None:
        """Match new artifacts, in parts so that one job stays short."""
        for start in range(0, len(artifact_ids), MATCH_BATCH):
            self._match_artifacts(list(artifact_ids[start : start + MATCH_BATCH]))

    def enqueue_webhooks(self, delivery_ids: list[int]) -> None:
        """One job per delivery: a slow endpoint holds up only its own calls."""
        for delivery_id in delivery_ids:
            self._deliver_webhook(delivery_id)

    def close(self) -> None:
        """Running jobs let go at their next safe point (they resume in another worker)."""
        self.sync.close()

    def install(self) -> None:
        """Make the container's services enqueue through this queue."""
        self.container.dispatch_run = self.enqueue_mirror_run
        self.container.dispatch_feed_sync = self.enqueue_feed_sync
        self.container.dispatch_match = self.enqueue_match
        self.container.dispatch_webhooks = self.enqueue_webhooks

    def consumer(self, *, embedded: bool) -> Consumer:
        jobs = self.container.settings.jobs
        kind = EmbeddedConsumer if embedded else Consumer
        return kind(
            self.huey,
            workers=jobs.workers,
            worker_type="thread",
            periodic=False,
            initial_delay=min(0.1, jobs.poll_s),
            max_delay=jobs.poll_s,
            check_worker_health=True,
        )
