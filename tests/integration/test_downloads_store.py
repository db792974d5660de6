"""Download rows and daily counts on SQLite and PostgreSQL: additive upserts from several
processes, reports and their filters, retention, the flusher (flush on stop, a failed write kept),
and the CVE severity of what was downloaded."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from stockade.audit.downloads import Download, DownloadRecorder, prune_events, write_batch
from stockade.audit.downloads_models import DownloadDaily, DownloadEvent
from stockade.audit.downloads_reports import (
    BadDownloadQueryError,
    DownloadQuery,
    ReportBy,
    file_totals,
    list_events,
    package_totals,
    per_day,
    report,
)
from stockade.audit.models import AuditEvent
from stockade.audit.service import AuditLog
from stockade.audit.tasks import prune_downloads
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel
from stockade.container import Container
from stockade.core.context import Origin, set_origin
from stockade.db.engine import transaction
from stockade.jobs import downloads as flusher_module
from stockade.jobs.downloads import DownloadFlusher
from stockade.jobs.registry import recurring_jobs
from stockade.vulns.download_exposure import exposure_per_day
from stockade.vulns.models import ArtifactVulnSummary
from stockade.web.middleware import REQUEST_ID_RE
from tests.factories.packages import PackageSpec, build_conda
from tests.integration.conftest import add_package, make_channel

DAY1 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def dl(
    name: str,
    *,
    at: datetime = DAY1,
    channel_id: int = 1,
    who: str = "alice",
    status: int = 200,
    sent: int = 100,
) -> Download:
    return Download(
        at.timestamp(),
        who,
        None,
        None,
        "10.0.0.1",
        "ua",
        channel_id,
        f"ch{channel_id}",
        "noarch",
        f"{name}-1.0-0.conda",
        name,
        "1.0",
        None,
        sent,
        status,
        None,
    )


def write(container: Container, batch: list[Download]) -> None:
    with transaction(container.factory) as session:
        write_batch(session, batch)


def test_daily_counts_add_up_across_processes(container: Container) -> None:
    one, two = DownloadRecorder(), DownloadRecorder()  # two serving processes
    for recorder in (one, two):
        recorder.record(dl("numpy"))
        recorder.record(dl("numpy", status=206, sent=7))
        recorder.record(dl("numpy", at=DAY2))
        recorder.flush(lambda b: write(container, b), drain=True)
    with container.read_factory() as session:
        daily = {
            (r.day, r.name): (r.count, r.bytes) for r in session.scalars(select(DownloadDaily))
        }
        assert daily == {(DAY1.date(), "numpy"): (2, 214), (DAY2.date(), "numpy"): (2, 200)}
        assert session.scalar(select(func.count()).select_from(DownloadEvent)) == 6


def test_reports_filters_and_scope(container: Container) -> None:
    write(
        container,
        [
            dl("numpy"),
            dl("numpy", who="bob"),
            dl("scipy", at=DAY2),
            dl("numpy", channel_id=2, who="bob"),
            dl("numpy", status=304, sent=0),
        ],
    )
    with container.read_factory() as session:
        by_package = report(session, ReportBy.PACKAGE, DownloadQuery())
        assert [(r.key, r.channel_id, r.downloads) for r in by_package] == [
            ("numpy", 1, 2),
            ("numpy", 2, 1),
            ("scipy", 1, 1),
        ]
        scoped = DownloadQuery(channel_ids=[1])
        assert [r.key for r in report(session, ReportBy.CHANNEL, scoped)] == ["1"]
        users = report(session, ReportBy.USER, scoped)
        assert [(r.key, r.downloads) for r in users] == [("alice", 2), ("bob", 1)]
        day2 = DownloadQuery(since=DAY2.replace(hour=0), until=DAY2 + timedelta(days=1))
        assert [r.key for r in report(session, ReportBy.PACKAGE, day2)] == ["scipy"]
        by_bob = DownloadQuery(user="bob")  # from the raw rows
        assert [(r.key, r.downloads) for r in report(session, ReportBy.PACKAGE, by_bob)] == [
            ("numpy", 1),
            ("numpy", 1),
        ]
        assert per_day(session, DownloadQuery()) == [(DAY1.date(), 3, 300), (DAY2.date(), 1, 100)]
        assert per_day(session, by_bob) == [(DAY1.date(), 2, 200)]
        if session.get_bind().dialect.name == "postgresql":  # UTC days whatever the session's zone
            session.execute(
                text("SET TIME ZONE 'Pacific/Kiritimati'")
            )  # +14: 10:00 UTC is tomorrow
            assert per_day(session, by_bob) == [(DAY1.date(), 2, 200)]
        assert [e.status for e in list_events(session, DownloadQuery(package="NumPy"))] == [
            304,
            200,
            200,
            200,
        ]
        page = list_events(session, DownloadQuery(), limit=2)
        rest = list_events(session, DownloadQuery(), before_id=page[-1].id)
        assert len(page) == 2 and len(rest) == 3


def test_retention_prunes_raw_rows_and_keeps_daily_counts(container: Container) -> None:
    now = datetime.now(UTC)
    write(container, [dl("old", at=now - timedelta(days=40)), dl("new", at=now)])
    with transaction(container.factory) as session:
        assert prune_events(session, now, 0) == 0  # 0: kept for good
        assert prune_events(session, now, 30) == 1
    with container.read_factory() as session:
        assert [e.name for e in session.scalars(select(DownloadEvent))] == ["new"]
        assert session.scalar(select(func.count()).select_from(DownloadDaily)) == 2
    assert prune_downloads(container).startswith("0 download rows older than 365 days")
    assert "downloads-prune" in [job.name for job in recurring_jobs(container)]


def test_flusher_writes_what_is_left_on_stop(container: Container) -> None:
    flusher = DownloadFlusher(container)
    flusher.poll_s = 3600  # only the stop flushes
    flusher.start()
    container.downloads.record(dl("late"))
    flusher.stop()
    with container.read_factory() as session:
        assert session.scalar(select(DownloadEvent.name)) == "late"


def test_flusher_keeps_a_failed_batch(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    flusher = DownloadFlusher(container)
    container.downloads.record(dl("kept"))
    calls: list[int] = []

    def broken(_session: object, batch: list[Download]) -> None:
        calls.append(len(batch))
        raise OSError("disk full")

    monkeypatch.setattr(flusher_module, "write_batch", broken)
    assert flusher.tick() == 0
    assert container.downloads.pending() == 1
    monkeypatch.setattr(flusher_module, "write_batch", write_batch)
    assert flusher.tick() == 1
    assert calls == [1] and container.downloads.pending() == 0


def test_exposure_by_severity_and_package_totals(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, "exposed")
    add_package(container, admin, "exposed", build_conda(tmp_path, PackageSpec(name="vuln")))
    add_package(container, admin, "exposed", build_conda(tmp_path, PackageSpec(name="fine")))
    with transaction(container.factory) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == "exposed"))
        assert channel_id is not None
        artifact = session.scalar(select(Artifact.id).where(Artifact.name == "vuln"))
        assert artifact is not None
        session.add(
            ArtifactVulnSummary(
                artifact_id=artifact, max_score=8.1, severity="high", worst_status="active"
            )
        )
    today = datetime.now(UTC)
    write(
        container,
        [
            dl("vuln", at=today, channel_id=channel_id),
            dl("vuln", at=today, channel_id=channel_id),
            dl("fine", at=today, channel_id=channel_id),
            dl("gone", at=today, channel_id=channel_id),  # no longer in the channel
        ],
    )
    with container.read_factory() as session:
        (day,) = exposure_per_day(session, DownloadQuery(channel_ids=[channel_id]))
        assert day.day == today.date() and day.downloads == {"high": 2, "none": 2}
        assert package_totals(session, channel_id, "vuln") == (2, 2)
        assert file_totals(session, channel_id, "vuln") == {("noarch", "vuln-1.0-0.conda"): 2}
        assert package_totals(session, channel_id, "nothing") == (0, 0)
    with transaction(container.factory) as session:  # held since: no longer served
        session.execute(update(Artifact).where(Artifact.id == artifact).values(servable=False))
    with container.read_factory() as session:
        (day,) = exposure_per_day(session, DownloadQuery(channel_ids=[channel_id]))
        assert day.downloads == {"none": 4}


def test_bad_range_is_refused() -> None:
    with pytest.raises(BadDownloadQueryError, match="before"):
        DownloadQuery(since=DAY2, until=DAY1)
    naive = DownloadQuery(since=datetime(2026, 1, 1))
    assert naive.since is not None and naive.since.tzinfo is UTC
    assert naive.first_day == date(2026, 1, 1)


#: What the request middleware keeps of a load balancer's X-Request-ID: up to 64 safe characters.
LONGEST_REQUEST_ID = "lb-" + "0123456789abcdef" * 3 + "0123456789abc"


def test_rows_read_back_as_written(container: Container) -> None:
    """The flusher writes through the driver (plain tuples): each column reads back through the
    model as the recorder gave it, times to the microsecond, client fields cut to their column."""
    at = datetime(2026, 3, 1, 23, 59, 58, 123456, tzinfo=UTC)
    full = Download(
        at.timestamp(), "alice", 7, 9, "10.0.0.1", "conda/24.1 " + "u" * 600, 3, "ch/sub",
        "linux-64", "numpy-1.26.4-py311_0.conda", "numpy", "1.26.4", "ab" * 32, 123_456_789,
        206, LONGEST_REQUEST_ID,
    )  # fmt: skip
    bare = Download(
        at.timestamp(), "x" * 300, None, None, None, None, 3, "ch/sub", "noarch",
        "tiny-1.0-0.tar.bz2", "tiny", "1.0", None, 0, 304, None,
    )  # fmt: skip
    write(container, [full, bare])
    with container.read_factory() as session:
        rows = session.scalars(select(DownloadEvent).order_by(DownloadEvent.id)).all()
    got = [{c: getattr(r, c) for c in full.row()} for r in rows]
    assert got == [full.row(), bare.row()]
    assert got[0]["occurred_at"] == at and got[0]["request_id"] == LONGEST_REQUEST_ID
    assert len(str(got[0]["user_agent"])) == 512 and len(str(got[1]["principal_name"])) == 256


def test_an_audited_action_keeps_the_longest_request_id(container: Container) -> None:
    """A UUID or any other id the middleware keeps fits the audit log (PostgreSQL refused over
    32 characters: every audited action under such an id answered 500)."""
    set_origin(Origin(ip="10.0.0.1", user_agent="ua", request_id=LONGEST_REQUEST_ID))
    try:
        with transaction(container.factory) as session:
            AuditLog(session).record("test.request-id", None, None)
    finally:
        set_origin(Origin())
    with container.read_factory() as session:
        stored = session.scalar(
            select(AuditEvent.request_id).where(AuditEvent.event_type == "test.request-id")
        )
    assert stored == LONGEST_REQUEST_ID
    assert REQUEST_ID_RE.fullmatch(LONGEST_REQUEST_ID)
    assert not REQUEST_ID_RE.fullmatch(LONGEST_REQUEST_ID + "d")
