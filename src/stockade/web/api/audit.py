"""The audit log over the API: query with filters and a cursor, export, verify the chain."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Literal

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from stockade.audit.models import AuditEvent
from stockade.audit.service import AuditFilter, AuditLog
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.web.api import API
from stockade.web.api.identity_schemas import AuditEventPublic, AuditPage, AuditVerification
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(prefix=API, tags=["audit"])
MAX_EXPORT = 100_000


def event_public(event: AuditEvent) -> AuditEventPublic:
    return AuditEventPublic(
        seq=event.seq,
        occurred_at=event.occurred_at,
        event_type=event.event_type,
        outcome=event.outcome,
        actor=event.actor_name,
        actor_kind=event.actor_kind,
        token_id=event.token_id,
        via=event.via,
        ip=event.ip,
        user_agent=event.user_agent,
        request_id=event.request_id,
        target_type=event.target_type,
        target_id=event.target_id,
        target_name=event.target_name,
        before=event.before,
        after=event.after,
        details=event.details,
        hash=event.hash,
    )


def audit_filter(
    actor: str | None = Query(default=None, max_length=256),
    type: str | None = Query(
        default=None, max_length=64, description="exact, or a prefix ending in '.'"
    ),
    target_type: str | None = Query(default=None, max_length=32),
    target: str | None = Query(default=None, max_length=512),
    outcome: Literal["success", "failure", "denied"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = Query(default=None, ge=1),
) -> AuditFilter:
    return AuditFilter(
        actor=actor,
        event_type=type,
        target_type=target_type,
        target=target,
        outcome=outcome,
        since=since,
        until=until,
        before_seq=cursor,
    )


@router.get("/audit", response_model=AuditPage)
def query_audit(
    principal: SignedIn,
    container: ContainerDep,
    actor: str | None = Query(default=None, max_length=256),
    type: str | None = Query(
        default=None, max_length=64, description="exact, or a prefix ending in '.' (auth.)"
    ),
    target_type: str | None = Query(default=None, max_length=32),
    target: str | None = Query(default=None, max_length=512),
    outcome: Literal["success", "failure", "denied"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = Query(default=None, ge=1, description="next_cursor of the previous page"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> AuditPage:
    """Newest first."""
    filters = audit_filter(actor, type, target_type, target, outcome, since, until, cursor)
    with container.read_factory() as session:
        AccessService(session).require(principal, Permission.AUDIT_READ)
        events = AuditLog(session).query(filters, limit=limit + 1)
        more = len(events) > limit
        events = events[:limit]
        return AuditPage(
            events=[event_public(e) for e in events],
            next_cursor=events[-1].seq if more and events else None,
        )


@router.get(
    "/audit/export",
    response_class=Response,
    responses={
        200: {
            "description": "JSON lines (format=json) or CSV (format=csv)",
            "content": {"application/x-ndjson": {}, "text/csv": {}},
        }
    },
)
def export_audit(
    principal: SignedIn,
    container: ContainerDep,
    format: Literal["json", "csv"] = "json",
    actor: str | None = Query(default=None, max_length=256),
    type: str | None = Query(default=None, max_length=64),
    since: datetime | None = None,
    until: datetime | None = None,
) -> Response:
    """Every matching event (up to 100,000), oldest first, as JSON lines or CSV."""
    filters = audit_filter(actor, type, None, None, None, since, until, None)
    with container.read_factory() as session:
        AccessService(session).require(principal, Permission.AUDIT_READ)
        events = [
            event_public(e) for e in reversed(AuditLog(session).query(filters, limit=MAX_EXPORT))
        ]
    if format == "json":
        body = b"".join(orjson.dumps(e.model_dump(mode="json")) + b"\n" for e in events)
        return Response(body, media_type="application/x-ndjson")
    out = io.StringIO()
    fields = list(AuditEventPublic.model_fields)
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for event in events:
        row = event.model_dump(mode="json")
        for key in ("before", "after", "details"):
            row[key] = orjson.dumps(row[key]).decode() if row[key] is not None else ""
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="stockade-audit.csv"'},
    )


def _cell(value: object) -> object:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.get("/audit/verify", response_model=AuditVerification)
def verify_audit(principal: SignedIn, container: ContainerDep) -> AuditVerification:
    """Walk the hash chain; `ok` is false with the first broken event otherwise."""
    with container.read_factory() as session:
        AccessService(session).require(principal, Permission.AUDIT_READ)
        report = AuditLog(session).verify()
    return AuditVerification(
        ok=report.ok,
        checked=report.checked,
        broken_at=report.broken_at,
        problem=report.problem,
        head=report.head,
        first_seq=report.first_seq,
    )
