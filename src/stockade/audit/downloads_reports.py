"""Download reports (SPEC §10): raw rows with a cursor, totals by package, channel or user,
downloads per day, and their CSV form.

Totals by package and channel, and the series per day, come from ``download_daily`` (kept for
good, resolved by UTC day); totals by user, and any report filtered by user, come from the raw
rows (kept per ``[downloads] retention_days``). A download counts when its status is 200; bytes
add every byte sent (200 and 206). Callers pass the channels the principal may see
(``channels/downloads_access.py``): None means every channel.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.orm import Session

from stockade.audit.downloads_models import DownloadDaily, DownloadEvent
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError

MAX_ROWS = 100_000  # the most rows one CSV/JSON export holds


class ReportBy(StrEnum):
    PACKAGE = "package"
    CHANNEL = "channel"
    USER = "user"


class BadDownloadQueryError(InvalidInputError):
    code = "downloads:bad-query"


@dataclass(frozen=True)
class DownloadQuery:
    channel_ids: Sequence[int] | None = None  # None: every channel
    package: str | None = None
    user: str | None = None  # principal name
    subdir: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def __post_init__(self) -> None:
        for field in ("since", "until"):  # a time without a zone is taken as UTC
            value = getattr(self, field)
            if value is None:
                continue
            try:
                utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
                _ = utc - timedelta(days=1)  # the day before must exist (last_day)
            except OverflowError:
                raise BadDownloadQueryError(f"'{field}' is out of range", field=field) from None
            object.__setattr__(self, field, utc)
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise BadDownloadQueryError("'since' must be before 'until'")

    @property
    def first_day(self) -> date | None:
        return self.since.date() if self.since is not None else None

    @property
    def last_day(self) -> date | None:
        """The last UTC day ``until`` still covers (``until`` itself is excluded)."""
        return (self.until - timedelta(microseconds=1)).date() if self.until is not None else None


@dataclass(frozen=True)
class ReportRow:
    key: str  # package name, channel id (as text) or principal name
    channel_id: int | None  # by package: the channel; by channel: itself; by user: None
    downloads: int
    bytes: int


def _event_filters(query: DownloadQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.channel_ids is not None:
        where.append(DownloadEvent.channel_id.in_(list(query.channel_ids)))
    if query.package:
        where.append(DownloadEvent.name == query.package.strip().lower())
    if query.user:
        where.append(DownloadEvent.principal_name == query.user)
    if query.subdir:
        where.append(DownloadEvent.subdir == query.subdir)
    if query.since is not None:
        where.append(DownloadEvent.occurred_at >= query.since)
    if query.until is not None:
        where.append(DownloadEvent.occurred_at < query.until)
    return where


def daily_filters(query: DownloadQuery) -> list[ColumnElement[bool]]:
    """The query's conditions on ``download_daily`` (which has no user: see :func:`uses_raw`)."""
    where: list[ColumnElement[bool]] = []
    if query.channel_ids is not None:
        where.append(DownloadDaily.channel_id.in_(list(query.channel_ids)))
    if query.package:
        where.append(DownloadDaily.name == query.package.strip().lower())
    if query.subdir:
        where.append(DownloadDaily.subdir == query.subdir)
    if query.first_day is not None:
        where.append(DownloadDaily.day >= query.first_day)
    if query.last_day is not None:
        where.append(DownloadDaily.day <= query.last_day)
    return where


def uses_raw(query: DownloadQuery, by: ReportBy | None = None) -> bool:
    return by == ReportBy.USER or bool(query.user)


def list_events(
    session: Session, query: DownloadQuery, *, before_id: int | None = None, limit: int = 100
) -> list[DownloadEvent]:
    """Raw rows, newest first; ``before_id``: the cursor (the last id of the previous page)."""
    stmt = select(DownloadEvent).where(*_event_filters(query))
    if before_id is not None:
        stmt = stmt.where(DownloadEvent.id < before_id)
    return list(session.scalars(stmt.order_by(DownloadEvent.id.desc()).limit(limit)))


def _counted() -> Any:
    return func.sum(case((DownloadEvent.status == 200, 1), else_=0))


def report(
    session: Session, by: ReportBy, query: DownloadQuery, *, limit: int = 1000
) -> list[ReportRow]:
    """Totals, most downloaded first (then by bytes, then by key)."""
    stmt: Select[Any]
    if uses_raw(query, by):
        key: Any = {
            ReportBy.PACKAGE: (DownloadEvent.name, DownloadEvent.channel_id),
            ReportBy.CHANNEL: (DownloadEvent.channel_id,),
            ReportBy.USER: (DownloadEvent.principal_name,),
        }[by]
        downloads, sent = _counted(), func.sum(DownloadEvent.bytes)
        stmt = select(*key, downloads, sent).where(*_event_filters(query))
    else:
        key = {
            ReportBy.PACKAGE: (DownloadDaily.name, DownloadDaily.channel_id),
            ReportBy.CHANNEL: (DownloadDaily.channel_id,),
        }[by]
        downloads, sent = func.sum(DownloadDaily.count), func.sum(DownloadDaily.bytes)
        stmt = select(*key, downloads, sent).where(*daily_filters(query))
    grouped = stmt.group_by(*key).order_by(downloads.desc(), sent.desc(), *key).limit(limit)
    rows: list[ReportRow] = []
    for row in session.execute(grouped):
        if by == ReportBy.PACKAGE:
            rows.append(ReportRow(row[0], row[1], int(row[2] or 0), int(row[3] or 0)))
        elif by == ReportBy.CHANNEL:
            rows.append(ReportRow(str(row[0]), row[0], int(row[1] or 0), int(row[2] or 0)))
        else:
            rows.append(ReportRow(row[0], None, int(row[1] or 0), int(row[2] or 0)))
    return rows


def per_day(session: Session, query: DownloadQuery) -> list[tuple[date, int, int]]:
    """(day, downloads, bytes) for each UTC day with downloads, oldest first."""
    if uses_raw(query):
        moment: Any = DownloadEvent.occurred_at
        if session.get_bind().dialect.name == "postgresql":  # the UTC day, whatever TimeZone
            moment = func.timezone("UTC", moment)
        day: Any = func.date(moment)
        stmt = select(day, _counted(), func.sum(DownloadEvent.bytes)).where(*_event_filters(query))
    else:
        day = DownloadDaily.day
        stmt = select(day, func.sum(DownloadDaily.count), func.sum(DownloadDaily.bytes)).where(
            *daily_filters(query)
        )
    rows = session.execute(stmt.group_by(day).order_by(day)).all()
    return [(_as_date(r[0]), int(r[1] or 0), int(r[2] or 0)) for r in rows]


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])  # SQLite's date() is text


def fill_days(
    series: Sequence[tuple[date, int, int]],
    first: date | None = None,
    last: date | None = None,
    *,
    most: int = 400,
) -> list[tuple[date, int, int]]:
    """Every day from ``first`` to ``last`` (default: the series' own), zeros where nothing was
    downloaded; over more than ``most`` days, only the days of the series."""
    if series:
        first = min(first or series[0][0], series[0][0])
        last = max(last or series[-1][0], series[-1][0])
    if first is None or last is None or last < first:
        return list(series)
    if (last - first).days >= most:
        return list(series)
    known = {d: (n, b) for d, n, b in series}
    days = (last - first).days
    filled = []
    for i in range(days + 1):
        day = first + timedelta(days=i)
        n, b = known.get(day, (0, 0))
        filled.append((day, n, b))
    return filled


def _cell(value: object) -> object:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


EVENT_FIELDS = (
    "id",
    "occurred_at",
    "principal",
    "user_id",
    "token_id",
    "ip",
    "user_agent",
    "channel",
    "subdir",
    "filename",
    "name",
    "version",
    "sha256",
    "bytes",
    "status",
    "request_id",
)


def event_dict(event: DownloadEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "principal": event.principal_name,
        "user_id": event.user_id,
        "token_id": event.token_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "channel": event.channel,
        "subdir": event.subdir,
        "filename": event.filename,
        "name": event.name,
        "version": event.version,
        "sha256": event.sha256,
        "bytes": event.bytes,
        "status": event.status,
        "request_id": event.request_id,
    }


def package_totals(session: Session, channel_id: int, name: str) -> tuple[int, int]:
    """(all-time downloads, downloads in the last 30 days) of a package in a channel."""
    where = (DownloadDaily.channel_id == channel_id, DownloadDaily.name == name)
    total = session.scalar(select(func.sum(DownloadDaily.count)).where(*where))
    since = utcnow().date() - timedelta(days=30)
    recent = session.scalar(
        select(func.sum(DownloadDaily.count)).where(*where, DownloadDaily.day > since)
    )
    return int(total or 0), int(recent or 0)


def file_totals(session: Session, channel_id: int, name: str) -> dict[tuple[str, str], int]:
    """(subdir, filename) -> all-time downloads, for a package page's file list."""
    rows = session.execute(
        select(DownloadDaily.subdir, DownloadDaily.filename, func.sum(DownloadDaily.count))
        .where(DownloadDaily.channel_id == channel_id, DownloadDaily.name == name)
        .group_by(DownloadDaily.subdir, DownloadDaily.filename)
    )
    return {(r[0], r[1]): int(r[2] or 0) for r in rows}
