"""Downloads over the API (SPEC §10): raw rows with a cursor, and reports as JSON or CSV.

Admins (``audit:read``) see every channel's downloads; channel owners and managers their own
channels' (``channels/downloads_access.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from stockade.audit.downloads_reports import (
    DownloadQuery,
    ReportBy,
    event_dict,
    list_events,
    per_day,
    report,
    to_csv,
)
from stockade.channels.downloads_access import DownloadScope, download_scope
from stockade.web.api import API
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(prefix=API, tags=["downloads"])


class DownloadPublic(BaseModel):
    id: int
    occurred_at: datetime
    principal: str
    user_id: int | None
    token_id: int | None
    ip: str | None
    user_agent: str | None
    channel: str
    subdir: str
    filename: str
    name: str
    version: str
    sha256: str | None
    bytes: int
    status: int
    request_id: str | None


class DownloadPage(BaseModel):
    downloads: list[DownloadPublic]
    next_cursor: int | None


class DownloadTotal(BaseModel):
    key: str  # the package name, channel name or principal name
    channel: str | None  # by package: its channel
    downloads: int  # full downloads (status 200)
    bytes: int  # bytes sent (200 and 206)


class DownloadDay(BaseModel):
    day: str
    downloads: int
    bytes: int


class DownloadReport(BaseModel):
    by: ReportBy
    since: datetime | None
    until: datetime | None
    totals: list[DownloadTotal]
    per_day: list[DownloadDay]


Channel = Query(default=None, max_length=512, description="one channel (that you manage)")
Package = Query(default=None, max_length=256, description="a package name")
User = Query(default=None, max_length=256, description="a principal (user or service) name")
Subdir = Query(default=None, max_length=64)
Since = Query(default=None, description="from this time (inclusive, ISO 8601; UTC if no zone)")
Until = Query(default=None, description="up to this time (exclusive)")


def _query(
    scope: DownloadScope,
    package: str | None,
    user: str | None,
    subdir: str | None,
    since: datetime | None,
    until: datetime | None,
) -> DownloadQuery:
    return DownloadQuery(scope.channel_ids, package, user, subdir, since, until)


@router.get("/downloads", response_model=DownloadPage)
def list_downloads(
    principal: SignedIn,
    container: ContainerDep,
    channel: str | None = Channel,
    package: str | None = Package,
    user: str | None = User,
    subdir: str | None = Subdir,
    since: datetime | None = Since,
    until: datetime | None = Until,
    cursor: int | None = Query(
        default=None, ge=1, le=2**63 - 1, description="next_cursor of the previous page"
    ),
    limit: int = Query(default=100, ge=1, le=1000),
) -> DownloadPage:
    """Every recorded download (kept per `[downloads] retention_days`), newest first."""
    with container.read_factory() as session:
        scope = download_scope(session, principal, channel)
        query = _query(scope, package, user, subdir, since, until)
        rows = list_events(session, query, before_id=cursor, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return DownloadPage(
            downloads=[DownloadPublic.model_validate(event_dict(r)) for r in rows],
            next_cursor=rows[-1].id if more and rows else None,
        )


@router.get(
    "/downloads/report",
    response_model=DownloadReport,
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def download_report(
    principal: SignedIn,
    container: ContainerDep,
    by: ReportBy = ReportBy.PACKAGE,
    channel: str | None = Channel,
    package: str | None = Package,
    user: str | None = User,
    subdir: str | None = Subdir,
    since: datetime | None = Since,
    until: datetime | None = Until,
    format: Literal["json", "csv"] = "json",
    limit: int = Query(default=1000, ge=1, le=10_000),
) -> DownloadReport | Response:
    """Downloads and bytes by package, channel or user, most downloaded first, with the
    downloads per UTC day (JSON). Package and channel totals come from the daily counts (kept
    for good); user totals from the raw rows (kept per retention)."""
    with container.read_factory() as session:
        scope = download_scope(session, principal, channel)
        query = _query(scope, package, user, subdir, since, until)
        totals = [
            DownloadTotal(
                key=scope.name(r.channel_id) if by == ReportBy.CHANNEL and r.channel_id else r.key,
                channel=scope.name(r.channel_id)
                if by == ReportBy.PACKAGE and r.channel_id
                else None,
                downloads=r.downloads,
                bytes=r.bytes,
            )
            for r in report(session, by, query, limit=limit)
        ]
        days = per_day(session, query) if format == "json" else []
    if format == "csv":
        return Response(
            _csv(by, totals),
            media_type="text/csv",
            headers={
                "content-disposition": f'attachment; filename="stockade-downloads-by-{by}.csv"'
            },
        )
    return DownloadReport(
        by=by,
        since=query.since,
        until=query.until,
        totals=totals,
        per_day=[DownloadDay(day=d.isoformat(), downloads=n, bytes=b) for d, n, b in days],
    )


def _csv(by: ReportBy, totals: list[DownloadTotal]) -> str:
    if by == ReportBy.PACKAGE:
        return to_csv(
            ["package", "channel", "downloads", "bytes"],
            ([t.key, t.channel, t.downloads, t.bytes] for t in totals),
        )
    return to_csv([by.value, "downloads", "bytes"], ([t.key, t.downloads, t.bytes] for t in totals))
