"""One audit event as a line of an exported file (JSON lines or CSV), and back, and the check of
exported files' hash chain (``stockade audit verify-export``).

Every field the chain hashes is written (``service.HASHED_FIELDS``) with ``prev_hash`` and
``hash``, in the form the digest was made from, so an exported file is checked with no database:
each event's digest is computed again and each ``prev_hash`` must be the hash before it. CSV
cells that a spreadsheet would run as a formula (= + - @, tab, CR) are quoted with ``'``, and a
cell starting with ``'`` gets one more, so the quoting is undone exactly when read back; an empty
CSV cell is a null (a CSV file cannot tell an empty text from none: the log stores none).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from stockade.audit.errors import AuditChainBrokenError
from stockade.audit.models import AuditEvent
from stockade.audit.service import GENESIS, HASHED_FIELDS, event_digest

__all__ = [
    "COLUMNS",
    "ExportFormat",
    "FileCheck",
    "decode_file",
    "encode_events",
    "event_record",
    "verify_records",
]

ExportFormat = Literal["jsonl", "csv"]
COLUMNS = (*HASHED_FIELDS, "prev_hash", "hash")
INT_FIELDS = frozenset({"seq", "actor_id", "token_id"})
JSON_FIELDS = frozenset({"before", "after", "details"})
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def event_record(event: AuditEvent) -> dict[str, Any]:
    """The event as written: its hashed fields (the time as the digest spells it) and hashes."""
    record: dict[str, Any] = {name: getattr(event, name) for name in COLUMNS}
    record["occurred_at"] = event.occurred_at.isoformat(timespec="microseconds")
    return record


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _uncell(name: str, text: str) -> Any:
    if text == "":
        return None
    text = text[1:] if text.startswith("'") else text
    if name in INT_FIELDS:
        return int(text)
    if name in JSON_FIELDS:
        return orjson.loads(text)
    return text


def encode_events(
    records: Iterable[dict[str, Any]], fmt: ExportFormat, *, header: bool = True
) -> bytes:
    """Records as JSON lines, or CSV rows (after the header row, unless ``header`` is false)."""
    if fmt == "jsonl":
        return b"".join(orjson.dumps(r) + b"\n" for r in records)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(COLUMNS)
    for record in records:
        writer.writerow([_cell(record[name]) for name in COLUMNS])
    return out.getvalue().encode()


def decode_file(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an exported file (its format by its suffix), in file order."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return
            if tuple(header) != COLUMNS:
                raise AuditChainBrokenError(f"{path.name}: not an audit export (its header)")
            for row in reader:
                yield {name: _uncell(name, cell) for name, cell in zip(COLUMNS, row, strict=True)}
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise AuditChainBrokenError(f"{path.name}:{number}: not a JSON line") from None
            if not isinstance(record, dict) or set(record) != set(COLUMNS):
                raise AuditChainBrokenError(f"{path.name}:{number}: not an audit event")
            yield record


@dataclass
class FileCheck:
    """Where a check of exported events stands: events checked, and the last seq and hash."""

    checked: int = 0
    last_seq: int | None = None
    last_hash: str | None = None


def verify_records(records: Iterable[dict[str, Any]], state: FileCheck, where: str) -> FileCheck:
    """Check each record's digest and its link to the one before (across files: ``state``).
    The first record starts the check: its ``prev_hash`` is taken as given (GENESIS at seq 1)."""
    for record in records:
        seq = record["seq"]
        if not isinstance(seq, int):
            raise AuditChainBrokenError(f"{where}: an event without a seq")
        if state.last_seq is None:
            if seq == 1 and record["prev_hash"] != GENESIS:
                raise AuditChainBrokenError(f"{where}: event 1 does not start the chain")
        elif seq != state.last_seq + 1:
            raise AuditChainBrokenError(f"{where}: event {state.last_seq + 1} is missing")
        elif record["prev_hash"] != state.last_hash:
            raise AuditChainBrokenError(f"{where}: event {seq}: previous hash does not match")
        fields = {name: record[name] for name in HASHED_FIELDS}
        if event_digest(str(record["prev_hash"]), fields) != record["hash"]:
            raise AuditChainBrokenError(f"{where}: event {seq}: its content was changed")
        state.checked += 1
        state.last_seq, state.last_hash = seq, str(record["hash"])
    return state
