"""``/readyz``: is this instance able to serve? Cheap enough for a load balancer to poll.

503 naming the part that failed when the database cannot be reached, the blob store cannot be
reached, the job broker (Redis, when the queue uses it) does not answer, or the database is not at
the migrations this version ships (``stockade db upgrade``). The answer never carries an address,
a URL or an error message (a broker URL can hold a password): only each part's state.

Failing publications do not make the instance unready (every replica would be drained for one bad
subdir): those of the channels the caller may read are counted and listed with their reason
(anonymous callers: public channels). Nothing about a channel the caller cannot read shows, not
even in the count or the status.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from stockade.auth.access import AccessService
from stockade.auth.permissions import Level
from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.channels.privacy import refs_for
from stockade.channels.publication_state import FailingPublication, failing_publications
from stockade.db.migrate import head_revisions
from stockade.storage.interfaces import BlobStore
from stockade.web.deps import ContainerDep, CurrentPrincipal

log = logging.getLogger("stockade.health")
router = APIRouter()
PROBE_BLOB = "0" * 64  # a name no blob has: asking for it reaches the store and finds nothing
BROKER_TIMEOUT_S = 1.0
BLOB_TIMEOUT_S = 2.0
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/readyz", include_in_schema=False)
def readyz(principal: CurrentPrincipal, container: ContainerDep) -> JSONResponse:
    parts: dict[str, Any] = {
        "blob_store": blob_store_state(container.blobs),
        "broker": broker_state(container.settings.jobs.redis_url),
    }
    try:
        with container.read_factory() as session:
            parts["migrations"] = migrations_state(session)
            shown = _readable_failing(session, principal)
    except SQLAlchemyError as exc:
        log.warning("readyz: database unreachable (%s)", exc.__class__.__name__)
        body = {"status": "unavailable", "database": "unreachable", **parts}
        return JSONResponse(body, status_code=503, headers=NO_STORE)
    parts = {"database": "ok", **parts}
    failed = sorted(k for k, v in parts.items() if v not in ("ok", "local"))
    if failed:
        body = {"status": "unavailable", "failed": failed, **parts}
        return JSONResponse(body, status_code=503, headers=NO_STORE)
    body = {
        "status": "degraded" if shown else "ok",
        **parts,
        "failing_publications": len(shown),
        "publications": [_shown(f) for f in shown],
    }
    return JSONResponse(body, headers=NO_STORE)


def _readable_failing(session: Session, principal: Principal) -> list[FailingPublication]:
    """The failing publications of the channels the caller may read."""
    failing = failing_publications(session)
    ids = sorted({f.channel_id for f in failing})
    if not ids:
        return []
    channels = list(session.scalars(select(Channel).where(Channel.id.in_(ids))).all())
    refs = refs_for(session, channels)
    access = AccessService()
    readable = {i for i, ref in refs.items() if access.channel_level(principal, ref) >= Level.READ}
    return [f for f in failing if f.channel_id in readable]


def _shown(f: FailingPublication) -> dict[str, Any]:
    return {
        "channel": f.channel,
        "subdir": f.subdir,
        "reason": f.reason,
        "failures": f.failures,
        "since": f.since.isoformat() if f.since else None,
        "retry_at": f.retry_at.isoformat() if f.retry_at else None,
    }


def blob_store_state(blobs: BlobStore) -> str:
    """``ok`` when the store answers within ``BLOB_TIMEOUT_S``: it is usable
    (``check_reachable``: an S3 bucket that exists and these credentials may use, a filesystem
    store whose folders are there) and answers for a blob no one has.

    The question is asked in a thread of its own small pool: a store that hangs (an S3 endpoint
    that never answers) holds those two threads, not the server's, and ``/readyz`` still answers.
    """
    future = _probe_pool().submit(_probe_blobs, blobs)
    try:
        return future.result(timeout=BLOB_TIMEOUT_S)
    except TimeoutError:
        log.warning("readyz: blob store unreachable (no answer within %s s)", BLOB_TIMEOUT_S)
        return "unreachable"


def _probe_blobs(blobs: BlobStore) -> str:
    try:
        blobs.check_reachable()
        blobs.exists(PROBE_BLOB)
    except Exception as exc:  # noqa: BLE001 - any backend's failure means the same here
        log.warning("readyz: blob store unreachable (%s)", exc.__class__.__name__)
        return "unreachable"
    return "ok"


@cache
def _probe_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(2, thread_name_prefix="stockade-readyz")


def broker_state(redis_url: str | None) -> str:
    """``ok`` when Redis answers a ping within a second; ``local`` for the SQLite queue (a file
    in the data folder, nothing to reach)."""
    if redis_url is None:
        return "local"
    try:
        client = _redis_client(redis_url)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - refused, timed out, refused AUTH: not ready
        log.warning("readyz: job broker unreachable (%s)", exc.__class__.__name__)
        return "unreachable"
    return "ok"


@cache
def _redis_client(url: str) -> Any:
    """One client (and connection pool) per broker URL, with short timeouts."""
    import redis

    return redis.Redis.from_url(
        url, socket_connect_timeout=BROKER_TIMEOUT_S, socket_timeout=BROKER_TIMEOUT_S
    )


@cache
def shipped_heads() -> frozenset[str] | None:
    """The newest migration revisions of this version (read once from the migration files)."""
    return head_revisions()


def migrations_state(session: Session) -> str:
    """``ok`` when the database is at this version's newest migrations, else ``outdated``."""
    rows = session.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    heads = shipped_heads()
    return "ok" if heads is not None and frozenset(rows) == heads else "outdated"
