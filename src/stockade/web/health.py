"""``/readyz``: is this instance able to serve? Cheap enough for a load balancer to poll.

503 when the database cannot be reached. Failing publications do not make the instance unready
(every replica would be drained for one bad subdir): those of the channels the caller may read
are counted and listed with their reason (anonymous callers: public channels). Nothing about a
channel the caller cannot read shows, not even in the count or the status.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse

from stockade.auth.access import AccessService
from stockade.auth.permissions import Level
from stockade.channels.models import Channel
from stockade.channels.privacy import refs_for
from stockade.channels.publication_state import failing_publications
from stockade.web.deps import ContainerDep, CurrentPrincipal

router = APIRouter()


@router.get("/readyz", include_in_schema=False)
def readyz(principal: CurrentPrincipal, container: ContainerDep) -> JSONResponse:
    try:
        with container.read_factory() as session:
            failing = failing_publications(session)
            ids = sorted({f.channel_id for f in failing})
            channels = list(session.scalars(select(Channel).where(Channel.id.in_(ids))).all())
            refs = refs_for(session, channels)
    except SQLAlchemyError:
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable"},
            status_code=503,
            headers={"Cache-Control": "no-store"},
        )
    access = AccessService()
    readable = {i for i, ref in refs.items() if access.channel_level(principal, ref) >= Level.READ}
    shown = [
        {
            "channel": f.channel,
            "subdir": f.subdir,
            "reason": f.reason,
            "failures": f.failures,
            "since": f.since.isoformat() if f.since else None,
            "retry_at": f.retry_at.isoformat() if f.retry_at else None,
        }
        for f in failing
        if f.channel_id in readable
    ]
    body = {
        "status": "degraded" if shown else "ok",
        "database": "ok",
        "failing_publications": len(shown),
        "publications": shown,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
