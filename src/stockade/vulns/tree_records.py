"""The records a dependency tree is solved from: read from ``artifacts`` as publication serves
them (stored patches applied, where they still validate and keep the record valid), each checked
with the record schema (:mod:`stockade.conda.records`). A record stored before that schema was
complete is left out and said once in the tree's notes: one bad record never fails a tree."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from stockade.channels.models import RepodataPatch
from stockade.channels.patching import instructions_for
from stockade.conda.patches import PatchInstructions, apply_patches
from stockade.conda.records import RecordChecker, RecordProblem, record_problem, without_nulls
from stockade.conda.repodata import build_repodata_json, decode_record, encode_record
from stockade.core.errors import InvalidInputError, StockadeError

__all__ = ["Row", "SkippedRecords", "patched", "repodata"]


@dataclass
class Row:
    artifact_id: int
    channel_id: int
    subdir: str
    filename: str
    name: str
    sha256: str
    md5: str
    record: dict[str, Any]
    raw: bytes = b""  # the stored record, until decoded


class SkippedRecords:
    """Stored records a tree left out because they are invalid, said once each in its notes."""

    def __init__(self) -> None:
        self._seen: dict[int, str] = {}
        self._notes: set[str] = set()

    def add(self, row: Row, problem: RecordProblem) -> None:
        self._seen.setdefault(
            row.artifact_id,
            f"{row.subdir}/{row.filename} was left out: its record is invalid ({problem})",
        )

    def note(self, text: str) -> None:
        self._notes.add(text)

    def notes(self) -> list[str]:
        return sorted({*self._seen.values(), *self._notes})

    def decoded(self, rows: list[Row]) -> list[Row]:
        """Rows whose stored bytes are a JSON object (the others noted and left out)."""
        out: list[Row] = []
        for row in rows:
            try:
                row.record, row.raw = decode_record(row.raw), b""
            except (ValueError, InvalidInputError):  # orjson.JSONDecodeError is a ValueError
                self.add(row, RecordProblem("record", "is not a JSON object"))
                continue
            out.append(row)
        return out

    def valid(self, rows: list[Row]) -> list[Row]:
        """Rows whose (patched) record conda and rattler can read (the others noted)."""
        out: list[Row] = []
        for row in rows:
            problem = record_problem(row.record)
            if problem is not None:
                self.add(row, problem)
                continue
            row.record = without_nulls(row.record)
            out.append(row)
        return out


def patched(
    rows: list[Row],
    patches: dict[tuple[int, str], list[RepodataPatch]],
    skipped: SkippedRecords,
) -> list[Row]:
    """``rows`` with their channel subdir's patches applied, as publication applies them (a
    stored patch that no longer validates, or that would make a record invalid, is not
    applied and is noted); removed records left out."""
    by_key: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_key[(row.channel_id, row.subdir)].append(row)
    out: list[Row] = []
    for key, group in by_key.items():
        wanted = patches.get(key)
        if not wanted:
            out += group
            continue
        encoded = {r.filename: encode_record(r.record) for r in group}
        tar_bz2 = {fn: rec for fn, rec in encoded.items() if fn.endswith(".tar.bz2")}
        conda = {fn: rec for fn, rec in encoded.items() if fn.endswith(".conda")}
        patched_tar_bz2, patched_conda, removed = apply_patches(
            tar_bz2, conda, _instructions(wanted, skipped)
        )
        checker = RecordChecker()
        for note in checker.revert_invalid(tar_bz2, patched_tar_bz2) + checker.revert_invalid(
            conda, patched_conda
        ):
            skipped.note(note)
        records = {**patched_tar_bz2, **patched_conda}
        for row in group:
            if row.filename in removed or row.filename not in records:
                continue
            row.record = decode_record(records[row.filename])
            out.append(row)
    return out


def _instructions(patches: list[RepodataPatch], skipped: SkippedRecords) -> PatchInstructions:
    """The patches' instructions, leaving out (and noting) stored ones that no longer validate."""
    try:
        return instructions_for(patches)
    except StockadeError:
        pass
    good: list[RepodataPatch] = []
    for patch in patches:
        try:
            instructions_for([patch])
        except StockadeError as exc:
            skipped.note(f"patch of {patch.subdir}/{patch.filename} not applied: {exc.detail}")
            continue
        good.append(patch)
    return instructions_for(good)


def repodata(subdir: str, group: dict[str, Row]) -> bytes:
    tar_bz2 = [(fn, encode_record(r.record)) for fn, r in group.items() if fn.endswith(".tar.bz2")]
    conda = [(fn, encode_record(r.record)) for fn, r in group.items() if fn.endswith(".conda")]
    return build_repodata_json(subdir, tar_bz2, conda, [])
