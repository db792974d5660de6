"""The audit log's folder export on SQLite and PostgreSQL: incremental, atomic, chain-checked."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, update

from stockade.audit import export as export_module
from stockade.audit.errors import AuditChainBrokenError, AuditExportFolderError
from stockade.audit.export import LOCK_FILE, STATE_FILE, AuditExporter, ExportRun, exported_files
from stockade.audit.export_format import FileCheck, decode_file, verify_records
from stockade.audit.models import AuditEvent
from stockade.audit.service import AuditLog, Target
from stockade.container import Container
from stockade.core.errors import ConflictError
from stockade.db import schedules
from stockade.db.engine import transaction
from stockade.jobs.registry import recurring_jobs
from stockade.jobs.scheduler import SchedulerThread
from stockade.settings import AuditSettings

NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def record(container: Container, count: int) -> None:
    with transaction(container.factory) as session:
        log = AuditLog(session)
        for n in range(count):
            log.record(
                "channel:update",
                None,
                Target("channel", f"ch-{n}", n),
                before={"privacy": "public", "ratio": 0.5},
                after={"privacy": "private", "note": "=cmd|' /C calc'!A0"},
            )


def newest(container: Container) -> int:
    with container.read_factory() as session:
        return session.scalar(select(func.max(AuditEvent.seq))) or 0


def export(container: Container, folder: Path, **options: object) -> ExportRun:
    with container.read_factory() as session:
        return AuditExporter(session, folder, **options).run(NOW)  # type: ignore[arg-type]


def check_folder(folder: Path) -> FileCheck:
    check = FileCheck()
    for _, _, path in exported_files(folder):
        verify_records(decode_file(path), check, path.name)
    return check


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LOCK_FILE}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_each_run_writes_only_the_new_events_and_the_files_verify(
    container: Container, tmp_path: Path, fmt: str
) -> None:
    folder = tmp_path / "audit-out"
    record(container, 3)
    first = export(container, folder, fmt=fmt)
    assert first.last_seq == newest(container) and len(first.files) == 1
    assert first.files[0] == f"audit-{1:012d}-{first.last_seq:012d}-20261207.{fmt}"
    assert export(container, folder, fmt=fmt).files == []  # nothing new: no empty file
    record(container, 2)
    second = export(container, folder, fmt=fmt)
    assert second.events == 2 and second.files[0].startswith(f"audit-{first.last_seq + 1:012d}-")
    check = check_folder(folder)
    assert check.checked == newest(container) and check.last_seq == newest(container)
    state = orjson.loads((folder / STATE_FILE).read_bytes())
    assert state["last_seq"] == newest(container) and state["last_hash"] == check.last_hash
    records = list(decode_file(folder / second.files[0]))
    assert records[-1]["after"]["note"] == "=cmd|' /C calc'!A0"  # CSV quoting undone exactly


def test_max_events_splits_files_and_the_chain_runs_across_them(
    container: Container, tmp_path: Path
) -> None:
    record(container, 5)
    run = export(container, tmp_path / "out", max_events=2)
    assert len(run.files) == (newest(container) + 1) // 2
    assert check_folder(tmp_path / "out").checked == newest(container)
    for fmt in ("csv", "jsonl"):  # read in batches of 2, streamed into one file
        whole = export(container, tmp_path / fmt, fmt=fmt, batch=2)
        assert len(whole.files) == 1 and whole.events == newest(container)
        assert check_folder(tmp_path / fmt).checked == newest(container)


def test_a_crash_before_the_rename_leaves_the_old_state(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "out"
    record(container, 2)
    export(container, folder)
    before = snapshot(folder)
    record(container, 2)

    def crash(src: object, dst: object) -> None:
        raise OSError("disk pulled")

    monkeypatch.setattr(export_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk pulled"):
        export(container, folder)
    assert snapshot(folder) == before  # no new file, same state, no temporary left
    monkeypatch.undo()
    (folder / ".audit-export-999-x.tmp").write_bytes(b"half")  # a killed run's leftover
    run = export(container, folder)
    assert run.events == 2 and not list(folder.glob("*.tmp"))
    assert check_folder(folder).checked == newest(container)


def test_a_crash_between_the_file_and_the_state_exports_nothing_twice(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "out"
    record(container, 2)
    export(container, folder)
    record(container, 3)

    def crash(self: AuditExporter, check: FileCheck) -> None:
        raise OSError("killed")

    monkeypatch.setattr(AuditExporter, "_save_state", crash)
    with pytest.raises(OSError, match="killed"):
        export(container, folder)
    monkeypatch.undo()
    assert len(exported_files(folder)) == 2  # the new file is there, its state update is not
    record(container, 1)
    run = export(container, folder)
    assert run.events == 1  # goes on after the file, not after the stale state
    assert check_folder(folder).checked == newest(container)


def test_a_break_in_the_chain_stops_the_export(container: Container, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    record(container, 2)
    export(container, folder)
    state = orjson.loads((folder / STATE_FILE).read_bytes())
    state["last_hash"] = "f" * 64  # as if the event exported last had been rewritten since
    (folder / STATE_FILE).write_bytes(orjson.dumps(state))
    record(container, 1)
    with pytest.raises(AuditChainBrokenError, match="previous hash"):
        export(container, folder)
    assert len(exported_files(folder)) == 1


def test_folder_problems_are_refused(container: Container, tmp_path: Path) -> None:
    record(container, 1)
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(AuditExportFolderError, match="link"):
        export(container, tmp_path / "link")
    ahead = tmp_path / "ahead"
    ahead.mkdir()
    (ahead / STATE_FILE).write_bytes(orjson.dumps({"last_seq": 10**9, "last_hash": "0" * 64}))
    with pytest.raises(AuditExportFolderError, match="another server"):
        export(container, ahead)
    (ahead / STATE_FILE).write_bytes(b"not json")
    with pytest.raises(AuditExportFolderError, match="state file"):
        export(container, ahead)


def test_one_export_into_a_folder_at_a_time(container: Container, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(ConflictError, match="another audit export"):
            export(container, folder)
    finally:
        os.close(fd)
    assert export(container, folder).last_seq == newest(container)


def test_the_scheduled_export_runs_once_across_replicas(
    container: Container, tmp_path: Path
) -> None:
    container.settings = container.settings.model_copy(
        update={"audit": AuditSettings(export_folder=Path("audit-out"), export_format="csv")}
    )
    jobs = [j for j in recurring_jobs(container) if j.name == "audit-export"]
    assert len(jobs) == 1
    first = SchedulerThread(container.factory, jobs, poll_s=3600)
    second = SchedulerThread(container.factory, jobs, poll_s=3600)
    second.owner = "other-replica:1"
    first.schedule()
    with transaction(container.factory) as session:
        session.execute(
            update(schedules.ScheduledJob)
            .where(schedules.ScheduledJob.name == "audit-export")
            .values(next_run_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    record(container, 2)
    assert first.run_if_due(jobs[0]) and not second.run_if_due(jobs[0])
    folder = container.settings.data_dir / "audit-out"  # relative: under the data folder
    assert [p.suffix for _, _, p in exported_files(folder)] == [".csv"]
    assert check_folder(folder).checked == newest(container)
    with transaction(container.factory) as session:
        row = schedules.get(session, "audit-export")
        assert row is not None and row.last_status == "ok"
        assert row.last_message is not None and "audit events in 1 files" in row.last_message


def test_no_export_folder_no_job(container: Container) -> None:
    assert "audit-export" not in [j.name for j in recurring_jobs(container)]
