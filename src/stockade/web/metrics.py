"""``GET /metrics``: Prometheus metrics, to admins and ``system:read`` tokens unless public.

What the processes count is in ``core/metrics.py``. The job queues are read from the database at
scrape time by :class:`QueueCollector` (a few indexed counts, cheap enough for every scrape): the
same figures from whichever replica is scraped, never added up across worker processes.

Queues are intent rows: publications asked for and not yet published (``subdir_indexes``), scans
asked for (``scan_requests``), mirror runs waiting for a worker (``mirror_runs`` pending),
mirrors whose schedule is past due and not yet taken by a scheduler (``mirror_schedules``),
webhook deliveries not yet sent (``webhook_deliveries`` pending), and channeldata.json rebuilds
asked for (``channeldata``). A publication's age is that of its first request not yet published
(``subdir_indexes.requested_at``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from fastapi import APIRouter, Request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.channels.models import Channel, ScanRequest, SubdirIndex
from stockade.core.clock import utcnow
from stockade.core.metrics import scrape
from stockade.mirroring.models import Mirror, MirrorRun, RunState
from stockade.vulns.models import DeliveryState, WebhookDelivery
from stockade.web.deps import ContainerDep, CurrentPrincipal

log = logging.getLogger("stockade.metrics")
router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    if not container.settings.metrics.public:
        AccessService().require(principal, Permission.SYSTEM_READ)  # 401 / 403 problems
    body, content_type = scrape(
        (QueueCollector(container.read_factory),), request.headers.get("accept")
    )
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


Queue = tuple[str, int, datetime | None]  # (name, depth, oldest request)


class QueueCollector(Collector):
    """Job queue depth and oldest age, read from the database when scraped."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "stockade_database_up", "Whether the database answered this scrape's queue queries"
        )
        try:
            with self.factory() as session:
                queues = read_queues(session)
        except SQLAlchemyError as exc:
            log.warning("metrics: the job queues could not be read: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "stockade_job_queue_depth", "Work waiting in each job queue", labels=("queue",)
        )
        age = GaugeMetricFamily(
            "stockade_job_queue_oldest_age_seconds",
            "Age of the oldest waiting item of each queue (0 when empty)",
            labels=("queue",),
        )
        now = utcnow()
        for name, count, oldest in queues:
            depth.add_metric([name], count)
            seconds = (now - oldest).total_seconds() if oldest is not None else 0.0
            age.add_metric([name], max(seconds, 0.0))
        yield depth
        yield age


def read_queues(session: Session) -> list[Queue]:
    publications = session.execute(
        select(func.count(), func.min(SubdirIndex.requested_at)).where(
            SubdirIndex.requested_rev > SubdirIndex.published_rev
        )
    ).one()
    channeldata = session.execute(
        select(func.count(), func.min(Channel.channeldata_requested_at)).where(
            Channel.channeldata_requested_at.is_not(None)
        )
    ).one()
    scans = session.execute(
        select(func.count(), func.min(ScanRequest.requested_at)).select_from(ScanRequest)
    ).one()
    runs = session.execute(
        select(func.count(), func.min(MirrorRun.created_at)).where(
            MirrorRun.state == RunState.PENDING.value
        )
    ).one()
    now = utcnow()
    schedules = session.execute(
        select(func.count(), func.min(Mirror.next_run_at)).where(
            Mirror.enabled.is_(True),
            Mirror.schedule.is_not(None),
            Mirror.next_run_at <= now,
        )
    ).one()
    deliveries = session.execute(
        select(func.count(), func.min(WebhookDelivery.created_at)).where(
            WebhookDelivery.state == DeliveryState.PENDING.value
        )
    ).one()
    return [
        ("publications", int(publications[0]), publications[1]),
        ("channeldata", int(channeldata[0]), channeldata[1]),
        ("scans", int(scans[0]), scans[1]),
        ("mirror_runs", int(runs[0]), runs[1]),
        ("mirror_schedules", int(schedules[0]), schedules[1]),
        ("webhook_deliveries", int(deliveries[0]), deliveries[1]),
    ]
