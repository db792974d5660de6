"""The downloads report page: ``/admin/downloads`` (SPEC §10).

Filters (channel, package, user, date range; the last 30 days by default), three charts drawn on
the server (downloads per day, top packages, CVE severity of what was downloaded), the same
figures as tables, the newest raw rows, and links to the CSV and JSON reports of the API. Admins
see every channel; channel owners and managers their channels (``channels/downloads_access.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.audit.downloads_reports import (
    DownloadQuery,
    ReportBy,
    fill_days,
    list_events,
    per_day,
    report,
)
from stockade.auth.principal import Principal
from stockade.channels.downloads_access import DownloadScope, download_scope
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError
from stockade.vulns.download_exposure import exposure_per_day
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui import charts
from stockade.web.ui.admin_common import admin_context
from stockade.web.ui.audit_page import parse_when
from stockade.web.ui.forms import FormError, clean
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
DOWNLOADS = "/admin/downloads"
DEFAULT_DAYS = 30
TOP = 10
RECENT = 50


@dataclass(frozen=True)
class Filters:
    channel: str = ""
    package: str = ""
    user: str = ""
    since: str = ""
    until: str = ""

    def query(self, scope: DownloadScope) -> DownloadQuery:
        try:
            since = parse_when(self.since, "since")
            until = parse_when(self.until, "until", end_of_day=True)
            if since is None:
                start = (until or utcnow()) - timedelta(days=DEFAULT_DAYS - 1)
                since = datetime(start.year, start.month, start.day, tzinfo=UTC)
        except OverflowError:
            raise InvalidInputError("dates must be between years 1 and 9999") from None
        return DownloadQuery(
            scope.channel_ids, self.package or None, self.user or None, None, since, until
        )

    def api_link(self, path: str, **extra: str) -> str:
        params = {k: v for k, v in vars(self).items() if v}
        return f"/api/v1/downloads{path}?{urlencode({**params, **extra})}"


def _tables(session: Session, scope: DownloadScope, query: DownloadQuery) -> dict[str, object]:
    packages = report(session, ReportBy.PACKAGE, query, limit=TOP)
    channels = report(session, ReportBy.CHANNEL, query, limit=TOP)
    users = report(session, ReportBy.USER, query, limit=TOP)
    last = query.last_day or utcnow().date()
    days = fill_days(per_day(session, query), query.first_day, last)
    exposure = exposure_per_day(session, query)
    return {
        "packages": [
            (r.key, scope.name(r.channel_id or 0), r.downloads, r.bytes) for r in packages
        ],
        "channels": [(scope.name(r.channel_id or 0), r.downloads, r.bytes) for r in channels],
        "users": [(r.key, r.downloads, r.bytes) for r in users],
        "days": days,
        "exposure": exposure,
        "bands": list(charts.SEVERITY_FILL),
        "chart_days": charts.downloads_over_time([(d, n) for d, n, _ in days]),
        "chart_top": charts.top_items([(r.key, r.downloads) for r in packages]),
        "chart_severity": charts.severity_over_time([(e.day, e.downloads) for e in exposure]),
        "recent": list_events(session, query, limit=RECENT),
    }


def downloads_page(
    request: Request, container: Container, principal: Principal, filters: Filters
) -> Response:
    error: FormError | None = None
    with container.read_factory() as session:
        scope = download_scope(session, principal, filters.channel or None)
        try:
            query = filters.query(scope)
        except InvalidInputError as exc:
            error = FormError(exc.detail[:1].upper() + exc.detail[1:] + ".", 400)
            filters = Filters(channel=filters.channel)
            query = filters.query(scope)
        context: dict[str, object] = {
            "title": "Downloads",
            "filters": filters,
            "range": (query.since, query.until),
            "day": timedelta(days=1),
            "everything": scope.everything,
            "channel_names": sorted(scope.names.values()),
            "csv": {
                by.value: filters.api_link("/report", by=by.value, format="csv") for by in ReportBy
            },
            "json": filters.api_link("/report", by="package"),
            "raw": filters.api_link(""),
            "error": error,
            "notice": None,
            **_tables(session, scope, query),
            **admin_context(principal, "downloads"),
        }
    status = error.status if error else 200
    return render(request, "downloads.html", context, status=status)


@router.get(DOWNLOADS)
def show_downloads(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    channel: str = "",
    package: str = "",
    user: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    filters = Filters(
        channel=clean(channel, 512),
        package=clean(package, 256),
        user=clean(user, 256),
        since=clean(since, 32),
        until=clean(until, 32),
    )
    return guarded(
        request, principal, lambda: downloads_page(request, container, principal, filters)
    )
