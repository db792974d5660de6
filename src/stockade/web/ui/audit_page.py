"""The audit log page: ``/admin/audit``, newest first, filters, older pages, chain verification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from stockade.audit.models import AuditEvent
from stockade.audit.service import AuditFilter, AuditLog, ChainReport
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import admin_context, require
from stockade.web.ui.forms import FormError, FormText, checked_post, clean
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
AUDIT = "/admin/audit"
PAGE_SIZE = 50
OUTCOMES = ("success", "failure", "denied")
MAX_VALUE = 80


@dataclass(frozen=True)
class Filters:
    """The filter form as typed (shown again) and as the query it means."""

    actor: str = ""
    type: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    def as_query(self, before: int | None) -> AuditFilter:
        event_type = self.type.removesuffix("*")
        return AuditFilter(
            actor=self.actor or None,
            event_type=event_type or None,
            outcome=self.outcome or None,
            since=parse_when(self.since, "since"),
            until=parse_when(self.until, "until", end_of_day=True),
            before_seq=before,
        )

    def link(self, before: int | None = None) -> str:
        params = {k: v for k, v in vars(self).items() if v}
        if before is not None:
            params["before"] = str(before)
        return f"{AUDIT}?{urlencode(params)}" if params else AUDIT


@dataclass(frozen=True)
class Change:
    key: str
    before: str | None
    after: str | None


def parse_when(value: str, field: str, *, end_of_day: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (a whole day, in UTC) or an ISO date and time."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{field}: write a date as YYYY-MM-DD", field=field) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def changes_of(event: AuditEvent) -> list[Change]:
    """Only what differs between before and after, each value cut short."""
    before, after = event.before or {}, event.after or {}
    if not before or not after:  # a creation or a deletion: its non-empty fields are enough
        before = {k: v for k, v in before.items() if v not in (None, "", [], {})}
        after = {k: v for k, v in after.items() if v not in (None, "", [], {})}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if key in before and key in after and old == new:
            continue
        changes.append(
            Change(
                key,
                short(old) if key in before else None,
                short(new) if key in after else None,
            )
        )
    return changes


def details_of(event: AuditEvent) -> list[tuple[str, str]]:
    return [(k, short(v)) for k, v in sorted((event.details or {}).items())]


def audit_page(
    request: Request,
    container: Container,
    principal: Principal,
    filters: Filters,
    before: int | None,
    *,
    report: ChainReport | None = None,
) -> Response:
    require(principal, Permission.AUDIT_READ)
    error: FormError | None = None
    try:
        query = filters.as_query(before)
    except InvalidInputError as exc:
        error, query = FormError(exc.detail.capitalize() + ".", 400), AuditFilter(before_seq=before)
    with container.read_factory() as session:
        events = AuditLog(session).query(query, limit=PAGE_SIZE + 1)
        more = len(events) > PAGE_SIZE
        events = events[:PAGE_SIZE]
        context = {
            "title": "Audit log",
            "events": [(e, changes_of(e), details_of(e)) for e in events],
            "filters": filters,
            "outcomes": OUTCOMES,
            "older": filters.link(events[-1].seq) if more and events else None,
            "newest": filters.link() if before is not None else None,
            "report": report,
            "error": error,
            "notice": None,
            **admin_context(principal, "audit"),
        }
        return render(request, "audit.html", context, status=error.status if error else 200)


def _cursor(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and 0 < len(value) <= 18 else None


@router.get(AUDIT)
def show_audit(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    actor: str = "",
    type: str = "",
    outcome: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
) -> Response:
    filters = Filters(
        actor=clean(actor, 256),
        type=clean(type, 64),
        outcome=outcome if outcome in OUTCOMES else "",
        since=clean(since, 32),
        until=clean(until, 32),
    )
    return guarded(
        request,
        principal,
        lambda: audit_page(request, container, principal, filters, _cursor(before)),
    )


@router.post(AUDIT + "/verify")
def verify_chain(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
) -> Response:
    """Walk the whole hash chain (it reads every event, so it is a button, not a link)."""

    def run() -> Response:
        require(principal, Permission.AUDIT_READ)
        with container.read_factory() as session:
            report = AuditLog(session).verify()
        return audit_page(request, container, principal, Filters(), None, report=report)

    return checked_post(request, principal, csrf_token, run, back=AUDIT)
