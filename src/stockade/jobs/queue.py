"""The job queue: Huey, with SQLite storage under the data folder (embedded default) or Redis.

Jobs carry ids only; their state lives in our database (a mirror run's row). The tasks are the
domains' (``jobs/registry.py``). The background runtime (``jobs/runtime.py``) consumes the queue:
inside ``stockade serve`` unless ``embedded_worker`` is off, and in ``stockade worker`` processes
(as many as wanted, on any machine that reaches the same Redis).
"""

from __future__ import annotations

import functools
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer

from stockade.container import Container
from stockade.jobs.apart import build_channeldata_apart, run_apart
from stockade.jobs.registry import Registry, gather

MATCH_BATCH = 5000


def build_huey(container: Container) -> Huey:
    jobs = container.settings.jobs
    if jobs.redis_url:
        return RedisHuey("stockade", url=jobs.redis_url, results=False)
    path = container.settings.data_dir / "jobs.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("stockade", filename=str(path.resolve()), results=False)


class EmbeddedConsumer(Consumer):  # type: ignore[misc]  # huey ships no type hints
    """A consumer inside another program (the web server): its signals stay that program's, and
    its threads are named ``stockade-jobs-…`` (``Worker-1``, ``Scheduler`` otherwise)."""

    def _set_signal_handlers(self) -> None:
        return None

    def _create_process(self, process: Any, name: str) -> Any:
        return super()._create_process(process, f"stockade-jobs-{name}")


class JobQueue:
    """The domains' queued tasks (``jobs/registry.py``) registered on a Huey instance;
    ``enqueue_*`` put ids on the queue. Every serving process has one (a request may enqueue);
    only a runtime consumes it."""

    def __init__(
        self, container: Container, huey: Huey | None = None, registry: Registry | None = None
    ) -> None:
        self.container = container
        self.huey = huey or build_huey(container)
        self.registry = registry or gather(container)
        self._tasks: dict[str, Any] = {
            task.name: self.huey.task(name=task.name)(task.run) for task in self.registry.tasks
        }

    def enqueue(self, name: str, *args: object) -> None:
        self._tasks[name](*args)

    def enqueue_mirror_run(self, run_id: int) -> None:
        self.enqueue("run_mirror", run_id)

    def enqueue_feed_sync(self, feed_id: int) -> None:
        self.enqueue("sync_feed", feed_id)

    def enqueue_match(self, artifact_ids: list[int]) -> None:
        """Match new artifacts, in parts so that one job stays short."""
        for start in range(0, len(artifact_ids), MATCH_BATCH):
            self.enqueue("match_artifacts", list(artifact_ids[start : start + MATCH_BATCH]))

    def enqueue_webhooks(self, delivery_ids: list[int]) -> None:
        """One job per delivery: a slow endpoint holds up only its own calls."""
        for delivery_id in delivery_ids:
            self.enqueue("deliver_webhook", delivery_id)

    def install(self) -> None:
        """Make the container's services enqueue through this queue."""
        self.container.dispatch_run = self.enqueue_mirror_run
        self.container.dispatch_feed_sync = self.enqueue_feed_sync
        self.container.dispatch_match = self.enqueue_match
        self.container.dispatch_webhooks = self.enqueue_webhooks
        settings = self.container.settings
        self.container.run_mirror_apart = functools.partial(run_apart, settings)
        self.container.publisher.channeldata_apart = functools.partial(
            build_channeldata_apart, settings
        )

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
