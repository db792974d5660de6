"""The scheduled export of the audit log to a folder (SPEC §10): new events only, each run.

Each run writes the events after the last one exported, in seq order, as files named by their seq
range and the day of the export (``audit-000000000001-000000000250-20261207.jsonl``), at most
``max_events`` per file. A file is streamed (read in batches, never whole in memory) to a hidden
temporary name in the folder, flushed to disk, then renamed into place; the state file
(``.audit-export-state.json``: the last seq and hash exported) is replaced the same way after it.
A crash therefore leaves the folder as it was or with the new file; a new file whose state update
was lost is found by its name, so the next run goes on after it and never writes an event twice.
Leftover temporary files are removed.

The chain is checked while exporting: each event must continue the one before (the last one
exported, across runs), else the run stops with ``audit:chain-broken`` and nothing past the break
is written. Exported files carry every hashed field and both hashes, so they are checked with no
database (``export_format.verify_records``). Rows are never deleted here: the log is append-only
(retention is export, then archive the files; see the admin guide).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stockade.audit.errors import AuditExportFolderError
from stockade.audit.export_format import (
    ExportFormat,
    FileCheck,
    decode_file,
    encode_events,
    event_record,
    verify_records,
)
from stockade.audit.models import AuditEvent
from stockade.core.errors import ConflictError

__all__ = ["STATE_FILE", "AuditExporter", "ExportRun", "exported_files"]

STATE_FILE = ".audit-export-state.json"
TMP_PREFIX = ".audit-export-"
LOCK_FILE = ".audit-export.lock"
FILE_RE = re.compile(r"^audit-(\d{12})-(\d{12})-(\d{8})\.(jsonl|csv)$")
#: A temporary file is always a new one of ours: never a file (or link) someone put at its name.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


@dataclass
class ExportRun:
    """What one run wrote: the files (names) and events, and the last seq exported after it."""

    files: list[str] = field(default_factory=list)
    events: int = 0
    last_seq: int = 0

    def summary(self) -> str:
        if not self.files:
            return f"no new audit events (last exported: {self.last_seq})"
        return f"{self.events} audit events in {len(self.files)} files, up to {self.last_seq}"


def exported_files(folder: Path) -> list[tuple[int, int, Path]]:
    """(first seq, last seq, path) of the export files in a folder, in seq order."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        match = FILE_RE.match(path.name)
        if match and path.is_file():
            found.append((int(match[1]), int(match[2]), path))
    return sorted(found)


def _write_atomic(folder: Path, name: str, data: bytes) -> None:
    """``data`` as ``folder/name``: a temporary file, flushed, renamed over; then the folder."""
    tmp = folder / f"{TMP_PREFIX}{os.getpid()}-{name}.tmp"
    fd = os.open(tmp, _NEW_FILE, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(folder)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One export into a folder at a time (the scheduled job and a one-off ``audit export``)."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"another audit export into {folder} is running; try again when it is done",
                code="audit:export-running",
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditExporter:
    """Exports new audit events from ``session`` into ``folder`` (see the module's text)."""

    def __init__(
        self,
        session: Session,
        folder: Path,
        *,
        fmt: ExportFormat = "jsonl",
        max_events: int = 100_000,
        batch: int = 5_000,
    ) -> None:
        self.session = session
        self.folder = folder
        self.fmt = fmt
        self.max_events = max_events
        self.batch = min(batch, max_events)

    def run(self, now: datetime) -> ExportRun:
        self._prepare()
        with _folder_lock(self.folder):
            return self._export(now)

    def _export(self, now: datetime) -> ExportRun:
        for left in self.folder.glob(f"{TMP_PREFIX}*.tmp"):  # a crash before its rename
            left.unlink(missing_ok=True)
        check = self._resume()
        run = ExportRun(last_seq=check.last_seq or 0)
        while written := self._write_file(check, now):
            run.files.append(written[0])
            run.events += written[1]
            run.last_seq = check.last_seq or 0
            self._save_state(check)
        return run

    def _write_file(self, check: FileCheck, now: datetime) -> tuple[str, int] | None:
        """The next file (its name and event count), streamed to a temporary file, checked
        event by event, flushed and renamed; None when there is nothing new."""
        first = (check.last_seq or 0) + 1
        tmp = self.folder / f"{TMP_PREFIX}{os.getpid()}.tmp"
        fd = os.open(tmp, _NEW_FILE, 0o600)
        count = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for records in self._batches(first - 1):
                    verify_records(records, check, f"audit event {records[0]['seq']}")
                    handle.write(encode_events(records, self.fmt, header=count == 0))
                    count += len(records)
                handle.flush()
                os.fsync(handle.fileno())
            if count == 0:
                tmp.unlink()
                return None
            name = f"audit-{first:012d}-{check.last_seq:012d}-{now:%Y%m%d}.{self.fmt}"
            os.replace(tmp, self.folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _sync_dir(self.folder)
        return name, count

    def _batches(self, after: int) -> Iterator[list[dict[str, Any]]]:
        """The events after ``after`` in seq order, ``batch`` at a time, ``max_events`` in all."""
        left = self.max_events
        while left > 0:
            rows = self.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(min(self.batch, left))
            ).all()
            if not rows:
                return
            records = [event_record(e) for e in rows]
            self.session.expunge_all()
            yield records
            after, left = records[-1]["seq"], left - len(records)

    def _prepare(self) -> None:
        """The folder, created if missing; refused when it is a link or not a folder."""
        folder = self.folder
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise AuditExportFolderError(f"{folder} is not a folder (or is a link)")
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise AuditExportFolderError(f"{folder} cannot be created: {exc.strerror}") from None

    def _resume(self) -> FileCheck:
        """Where the last run stopped: the state file, or a newer file it did not record."""
        check = FileCheck()
        path = self.folder / STATE_FILE
        if path.is_file():
            try:
                state = orjson.loads(path.read_bytes())
                check.last_seq, check.last_hash = int(state["last_seq"]), str(state["last_hash"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise AuditExportFolderError(
                    f"{path} is not this exporter's state file; move it away to start again"
                ) from None
        files = exported_files(self.folder)
        if files and files[-1][1] > (check.last_seq or 0):  # written, its state update lost
            *_, last = decode_file(files[-1][2])
            check.last_seq, check.last_hash = int(last["seq"]), str(last["hash"])
        newest = self.session.scalar(select(func.max(AuditEvent.seq))) or 0
        if (check.last_seq or 0) > newest:
            raise AuditExportFolderError(
                f"{self.folder} holds events up to {check.last_seq} but the log ends at {newest}: "
                "the export folder of another server or of a restored backup? use a new folder"
            )
        return check

    def _save_state(self, check: FileCheck) -> None:
        state = {"last_seq": check.last_seq, "last_hash": check.last_hash}
        _write_atomic(self.folder, STATE_FILE, orjson.dumps(state))
