"""Download recording off the hot path (SPEC §10): an in-memory buffer, written in batches.

The conda endpoint calls :meth:`DownloadRecorder.record` for every package file it answers (a
``deque.append`` on the event loop: no I/O, no lock). A background flusher
(``jobs/downloads.py``) calls :meth:`DownloadRecorder.flush` every ``flush_interval_s``: it takes
up to ``batch_size`` rows and writes them with :func:`write_batch`, raw rows and additive daily
counts in one transaction. So:

- a crash loses at most what was buffered since the last flush (one flush interval);
- the buffer is bounded: when full, the oldest rows are dropped and counted (logged at the next
  flush), and serving never waits for the database;
- a flush that fails keeps its batch and tries it again next time (the batch stays bounded: new
  rows wait in the buffer, which drops its oldest when full);
- any number of processes may record: each flushes its own buffer and the daily counts are
  ``INSERT … ON CONFLICT DO UPDATE count = count + excluded.count``.

Index files (repodata, shards, channeldata) are not downloads: only package files are recorded.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple, cast

from sqlalchemy import Table, column, delete, func, select, table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from stockade.audit.downloads_models import DownloadDaily, DownloadEvent
from stockade.db.base import UTCDateTime

log = logging.getLogger("stockade.downloads")

_EVENTS = cast(Table, DownloadEvent.__table__)
#: Statuses that count as one download in ``download_daily.count``.
COUNTED = frozenset({200})


class Download(NamedTuple):
    """One answered package file request, as the conda endpoint saw it (a tuple: cheap to make
    on the event loop, about 1 µs). Its field names are ``download_events``' column names."""

    occurred_at: float  # time.time()
    principal_name: str
    user_id: int | None
    token_id: int | None
    ip: str | None
    user_agent: str | None
    channel_id: int
    channel: str
    subdir: str
    filename: str
    name: str
    version: str
    sha256: str | None
    bytes: int
    status: int
    request_id: str | None

    def row(self) -> dict[str, object]:
        """The row as the table holds it (what readers and tests compare with)."""
        return dict(zip(self._fields, stored_values(self, _aware_time), strict=True))


class DownloadRecorder:
    """The per-process buffer. ``record`` never blocks; ``flush`` runs in a background thread."""

    def __init__(
        self, *, enabled: bool = True, buffer_size: int = 100_000, batch_size: int = 5_000
    ) -> None:
        self.enabled = enabled
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self._buffer: deque[Download] = deque(maxlen=buffer_size)
        self._retry: list[Download] = []  # a batch whose write failed, tried first next time
        self._flush_lock = threading.Lock()
        self.dropped = 0  # rows dropped because the buffer was full (since start)
        self._dropped_logged = 0
        self.written = 0
        self.failures = 0

    def record(self, download: Download) -> None:
        if len(self._buffer) >= self.buffer_size:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self._buffer.append(download)

    def pending(self) -> int:
        return len(self._buffer) + len(self._retry)

    def _take(self) -> list[Download]:
        if self._retry:
            retry, self._retry = self._retry, []
            return retry
        batch: list[Download] = []
        pop = self._buffer.popleft
        try:
            while len(batch) < self.batch_size:
                batch.append(pop())
        except IndexError:
            pass
        return batch

    def flush(self, write: Callable[[list[Download]], None], *, drain: bool = False) -> int:
        """Write one batch (every batch with ``drain``); returns rows written. A failed write
        keeps its batch for the next call and raises."""
        total = 0
        with self._flush_lock:
            self._log_dropped()
            while True:
                batch = self._take()
                if not batch:
                    return total
                try:
                    write(batch)
                except Exception:
                    self._retry = batch
                    self.failures += 1
                    raise
                total += len(batch)
                self.written += len(batch)
                if not drain:
                    return total

    def _log_dropped(self) -> None:
        dropped = self.dropped
        if dropped != self._dropped_logged:
            log.warning(
                "download buffer full: %d download records dropped (%d since start); "
                "raise [downloads] buffer_size or lower flush_interval_s",
                dropped - self._dropped_logged,
                dropped,
            )
            self._dropped_logged = dropped


def name_version(filename: str) -> tuple[str, str]:
    """``name-version-build.conda`` -> (name, version); conda versions and builds hold no "-"."""
    parts = filename.rsplit("-", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else (filename, "")


_EPOCH_DAY = date(1970, 1, 1)


def daily_totals(batch: Iterable[Download]) -> list[dict[str, object]]:
    """The batch summed per (day, channel, subdir, filename, name)."""
    totals: dict[tuple[date, int, str, str, str], list[int]] = {}
    days: dict[int, date] = {}  # UTC days by their number since the epoch: a batch spans one
    for d in batch:
        number, second = divmod(d.occurred_at, 86_400)
        if second >= 86_399:  # the last second: rounded to microseconds it may be tomorrow
            day = datetime.fromtimestamp(d.occurred_at, UTC).date()
        else:
            day = days.get(int(number)) or days.setdefault(
                int(number), _EPOCH_DAY + timedelta(days=int(number))
            )
        key = (day, d.channel_id, d.subdir, d.filename, d.name)
        entry = totals.setdefault(key, [0, 0])
        entry[0] += 1 if d.status in COUNTED else 0
        entry[1] += d.bytes
    return [
        {
            "day": k[0],
            "channel_id": k[1],
            "subdir": k[2],
            "filename": k[3],
            "name": k[4],
            "count": v[0],
            "bytes": v[1],
        }
        for k, v in sorted(totals.items())  # one order in every process: no upsert deadlocks
    ]


#: The channels table as the flusher reads it (``audit`` sits below ``channels``: no model import).
_CHANNELS = table("channels", column("id"), column("created_at", UTCDateTime()))


def _of_live_channels(session: Session, batch: list[Download]) -> list[Download]:
    """Rows of a channel deleted before they were written, whose id a newer channel has (SQLite
    reuses ids), go under the retired id (see :func:`retire_channel`), never the newer one's."""
    ids = sorted({d.channel_id for d in batch})
    born = dict(
        session.execute(
            select(_CHANNELS.c.id, _CHANNELS.c.created_at).where(_CHANNELS.c.id.in_(ids))
        ).all()
    )
    later = {i: b.timestamp() for i, b in born.items() if b is not None}
    return [
        d._replace(channel_id=-d.channel_id) if d.occurred_at < later.get(d.channel_id, 0.0) else d
        for d in batch
    ]


def write_batch(session: Session, batch: list[Download]) -> None:
    """Raw rows and their daily counts, in the caller's transaction."""
    if not batch:
        return
    batch = _of_live_channels(session, batch)
    connection = session.connection()
    _insert_events(connection, batch)
    rows = daily_totals(batch)
    dialect = connection.dialect.name
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = upsert(DownloadDaily)
    stmt = stmt.on_conflict_do_update(
        index_elements=["day", "channel_id", "subdir", "filename", "name"],
        set_={
            "count": DownloadDaily.count + stmt.excluded.count,
            "bytes": DownloadDaily.bytes + stmt.excluded.bytes,
        },
    )
    session.execute(stmt, rows)


#: Rows per statement: 50 x 16 values stays under every SQLite build's limit of bound values.
_ROWS_PER_STATEMENT = 50


@functools.lru_cache(maxsize=8)
def _insert_sql(mark: str, rows: int) -> str:
    """``INSERT … VALUES (…), (…)`` for ``rows`` rows, with the driver's placeholder (sqlite3:
    ``?``; psycopg: ``%s``), from constants only."""
    group = f"({', '.join([mark] * len(Download._fields))})"
    return (
        f"INSERT INTO download_events ({', '.join(Download._fields)}) "  # noqa: S608
        f"VALUES {', '.join([group] * rows)}"
    )


def _insert_events(connection: Connection, batch: list[Download]) -> None:
    """The raw rows, as plain tuples through the driver, many rows per statement.

    Every package GET of a busy server becomes a row here, so the flusher's cost is per request,
    and it runs beside the event loop that serves: SQLAlchemy's per-row parameter handling (a
    dict per row, then type processors, then back to a tuple) was ~14 us of the ~19 us a row
    cost on SQLite; and sqlite3's ``executemany`` lets go of the GIL around each row's step, so
    a serving thread took it back 5,000 times per batch (on a busy server a row then cost ~25 us
    more of CPU than alone). The values are what the column types would bind: UTC times as
    SQLAlchemy's SQLite ``DATETIME`` text (``YYYY-MM-DD HH:MM:SS.ffffff``), aware datetimes for
    PostgreSQL; strings cut to their column's length (``Download.row`` is the same row as a
    dict, for readers: both from :func:`stored_values`)."""
    dialect = connection.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    when = _sqlite_time if dialect.name == "sqlite" else _aware_time
    rows = [stored_values(d, when) for d in batch]
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            cursor.execute(_insert_sql(mark, len(chunk)), tuple(itertools.chain(*chunk)))
    finally:
        cursor.close()


def stored_values(d: Download, when: Callable[[float], object]) -> tuple[object, ...]:
    """``d``'s values in ``Download``'s order (the table's column names), each string cut to its
    column, the time as ``when`` gives it to the driver."""
    return (
        when(d.occurred_at),
        d.principal_name[:256],
        d.user_id,
        d.token_id,
        d.ip[:64] if d.ip else None,
        d.user_agent[:512] if d.user_agent else None,
        d.channel_id,
        d.channel[:512],
        d.subdir[:64],
        d.filename[:512],
        d.name[:256],
        d.version[:128],
        d.sha256,
        d.bytes,
        d.status,
        d.request_id[:64] if d.request_id else None,
    )


def _sqlite_time(timestamp: float) -> str:
    # "2026-03-01 23:59:58.123456+00:00" without its offset (isoformat is C; strftime 3x slower)
    return datetime.fromtimestamp(timestamp, UTC).isoformat(" ", "microseconds")[:26]


def _aware_time(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def retire_channel(session: Session, channel_id: int) -> None:
    """A channel is deleted: its download rows move to an id no channel has (negative), so that
    they stay in the admins' history but never count for a channel that gets the same id later
    (SQLite gives a deleted row's id to the next channel). Called in the deleting transaction,
    and in the creating one (rows of the deleted channel buffered then written under its id)."""
    tables = (DownloadEvent, DownloadDaily)
    tomb = -channel_id
    if any(
        session.scalar(select(t.channel_id).where(t.channel_id == tomb).limit(1)) for t in tables
    ):
        # this id was a deleted channel's before: below every retired id
        tomb = min(0, *(session.scalar(select(func.min(t.channel_id))) or 0 for t in tables)) - 1
    for rows in tables:
        session.execute(
            update(rows)
            .where(rows.channel_id == channel_id)
            .values(channel_id=tomb)
            .execution_options(synchronize_session=False)
        )


def prune_events(session: Session, now: datetime, retention_days: int) -> int:
    """Delete raw rows older than the retention (0: keep all); daily counts stay."""
    if retention_days <= 0:
        return 0
    cutoff = now - timedelta(days=retention_days)
    result = session.execute(delete(DownloadEvent).where(DownloadEvent.occurred_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
