"""Exported audit events: CSV cells read back exactly, and a changed file fails its chain check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stockade.audit.errors import AuditChainBrokenError
from stockade.audit.export_format import (
    COLUMNS,
    FileCheck,
    decode_file,
    encode_events,
    verify_records,
)
from stockade.audit.service import GENESIS, HASHED_FIELDS, event_digest


def chain(count: int, **fields: Any) -> list[dict[str, Any]]:
    records, prev = [], GENESIS
    for seq in range(1, count + 1):
        record: dict[str, Any] = dict.fromkeys(COLUMNS)
        record.update(
            seq=seq,
            occurred_at=f"2026-12-07T05:00:0{seq % 10}.000001+00:00",
            event_type="channel:update",
            outcome="success",
            actor_id=7,
            actor_name="ann",
            actor_kind="user",
            after={"privacy": "private", "list": [1, "2"]},
            **fields,
        )
        record["prev_hash"] = prev
        record["hash"] = prev = event_digest(prev, {k: record[k] for k in HASHED_FIELDS})
        records.append(record)
    return records


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize(
    "text", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "'quoted", "''two", "plain", 'a,b\n"c"']
)
def test_cells_read_back_exactly(tmp_path: Path, fmt: str, text: str) -> None:
    records = chain(2, target_name=text, user_agent=text)
    path = tmp_path / f"audit.{fmt}"
    path.write_bytes(encode_events(records, fmt))  # type: ignore[arg-type]
    assert list(decode_file(path)) == records
    assert verify_records(decode_file(path), FileCheck(), path.name).checked == 2


def test_formula_cells_are_quoted_in_csv() -> None:
    body = encode_events(chain(1, target_name="=HYPERLINK(1)"), "csv").decode()
    assert "'=HYPERLINK(1)" in body and ",=HYPERLINK" not in body


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda rs: rs[1].update(actor_name="eve"), "content was changed"),
        (lambda rs: rs.pop(1), "event 2 is missing"),
        (lambda rs: rs[2].update(prev_hash="0" * 64), "previous hash"),
        (lambda rs: rs[0].update(prev_hash="1" * 64), "does not start the chain"),
    ],
)
def test_a_changed_export_fails_its_check(change: Any, problem: str) -> None:
    records = chain(3)
    change(records)
    with pytest.raises(AuditChainBrokenError, match=problem):
        verify_records(records, FileCheck(), "f")


def test_files_that_are_not_exports_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("seq,hash\n1,x\n")
    (tmp_path / "b.jsonl").write_text('{"seq": 1}\n')
    (tmp_path / "c.jsonl").write_text("{nope\n")
    for name, problem in [
        ("a.csv", "header"),
        ("b.jsonl", "not an audit event"),
        ("c.jsonl", "JSON"),
    ]:
        with pytest.raises(AuditChainBrokenError, match=problem):
            list(decode_file(tmp_path / name))
