"""A run's new rows, written in short transactions before the run switches (issue 18).

SQLite has one writer: a first run that wrote 543,000 rows in its switching transaction held the
write lock for ~45 s, and the run's heartbeat, the publications and the API waited, then failed.
A run now stages its new rows in batches of ``[mirror] stage_batch``, each batch in its own
transaction, as ``staged`` rows: servable nowhere and listed nowhere (``channels.scanstate``).
Its last transaction admits them all in one statement (``channels.intake.admit_staged``), with
the removals, the changes and the upstream state, so the channel still shows all of the run's
result or none of it.

A run killed between two batches resumes as a later attempt: the rows staged before are found
(:func:`stored_rows`) and kept when they are what the run would write (the same record bytes), so
nothing is written twice; staged rows the plan no longer adds are deleted. A run that stops or
fails discards what it staged (:func:`discard`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Select, Text, cast, delete, select
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.intake import stage_rows
from stockade.channels.models import Artifact
from stockade.channels.scanstate import ArtifactSource, ScanStatus
from stockade.conda.repodata import encode_record
from stockade.core.clock import now_ms, utcnow
from stockade.core.faults import crash_point
from stockade.db.engine import transaction

if TYPE_CHECKING:
    from stockade.mirroring.job import MirrorJob
    from stockade.mirroring.plan import Plan
    from stockade.mirroring.summaries import About
    from stockade.mirroring.upstream import UpstreamSnapshot

Key = tuple[str, str]  # (subdir, filename)
Signature = tuple[Any, str | None, str | None]  # entry, status, detail

#: Columns of a mirrored row that record what its upstream signature proves (``signing.upstream``).
NO_SIGNATURE: dict[str, Any] = {
    "signature": None,
    "signature_status": None,
    "signature_detail": None,
}


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A row of the mirror as a plan compares it: its record by digest, not its bytes (a
    600,000-record mirror would otherwise hold every record twice while it plans)."""

    id: int
    sha256: str
    digest: bytes
    indexed_timestamp: int
    signature: Signature


def record_digest(encoded: bytes) -> bytes:
    return hashlib.blake2b(encoded, digest_size=16).digest()


def _rows_query(
    job: MirrorJob, *, staged: bool
) -> Select[int, str, str, str, bytes, int, str, str | None, str | None]:
    status = (
        Artifact.scan_status == ScanStatus.STAGED
        if staged
        # Quarantined files stay in the queue (not served) until an admin decides; the policy
        # engine excludes them from what the run keeps, and removing them would bring them
        # back, and scan them again, on the next run.
        else Artifact.scan_status.not_in([ScanStatus.MALICIOUS, ScanStatus.STAGED])
    )
    return select(
        Artifact.id,
        Artifact.subdir,
        Artifact.filename,
        Artifact.sha256,
        Artifact.record_json,
        Artifact.indexed_timestamp,
        # As text, decoded below by orjson: SQLAlchemy's JSON type decodes with the standard
        # library's json, ~10 us a row (1 s of a change run over 92,000 signed rows).
        cast(Artifact.signature, Text),
        Artifact.signature_status,
        Artifact.signature_detail,
    ).where(Artifact.channel_id == job.channel_id, Artifact.mirror_id == job.mirror_id, status)


def stored_rows(session: Session, job: MirrorJob, *, staged: bool) -> dict[Key, StoredRow]:
    """The mirror's rows in the channel (``staged``: those an earlier attempt staged), read in a
    stream and kept as digests."""
    found: dict[Key, StoredRow] = {}
    query = _rows_query(job, staged=staged).execution_options(yield_per=5000)
    for aid, sd, fn, sha, rec, indexed, sig, status, detail in session.execute(query):
        entry = orjson.loads(sig) if sig is not None else None
        found[(sd, fn)] = StoredRow(aid, sha, record_digest(rec), indexed, (entry, status, detail))
    return found


def row_values(
    job: MirrorJob,
    key: Key,
    rec: dict[str, Any],
    encoded: bytes,
    about: About | None = None,
    columns: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The artifact row of one mirrored record."""
    subdir, filename = key
    ts = rec.get("timestamp")
    license_ = rec.get("license") or (about.license if about else None)
    return {
        "channel_id": job.channel_id,
        "subdir": subdir,
        "filename": filename,
        "name": str(rec.get("name", ""))[:256],
        "version": str(rec.get("version", ""))[:128],
        "build": str(rec.get("build", ""))[:256],
        "build_number": rec.get("build_number") if isinstance(rec.get("build_number"), int) else 0,
        "format": "conda" if filename.endswith(".conda") else "tar.bz2",
        "sha256": rec["sha256"],
        "md5": str(rec.get("md5", ""))[:32],
        "size": rec.get("size") if isinstance(rec.get("size"), int) else 0,
        "record_json": encoded,
        "timestamp_ms": int(ts if ts > 1e11 else ts * 1000)
        if isinstance(ts, int | float)
        else None,
        "indexed_timestamp": rec.get("indexed_timestamp") or now_ms(),
        "license": str(license_)[:256] if license_ else None,
        "summary": about.summary if about else None,  # mirroring.summaries
        "source": ArtifactSource.MIRROR,
        "mirror_id": job.mirror_id,
        "created_at": utcnow(),
        **NO_SIGNATURE,
        **(columns or {}),
    }


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _signature_of(columns: dict[str, Any]) -> Signature:
    return (columns["signature"], columns["signature_status"], columns["signature_detail"])


def _reusable(plan: Plan) -> tuple[set[Key], list[int]]:
    """Of the rows an earlier attempt staged: those to keep (what this run would write), and
    the ids of the others (deleted before the inserts)."""
    keep: set[Key] = set()
    stale: list[int] = []
    for key, row in plan.staged.items():
        if key in plan.add:
            encoded = encode_record(plan.record(key))
            same = row.digest == record_digest(encoded)
            if same and row.signature == _signature_of(plan.columns(key)):
                keep.add(key)
                continue
        stale.append(row.id)
    return keep, stale


def stage(
    factory: sessionmaker[Session],
    job: MirrorJob,
    plan: Plan,
    snapshot: UpstreamSnapshot,
    *,
    batch: int,
    between: Callable[[int], None],
) -> int:
    """Write the plan's new rows as ``staged``, ``batch`` rows per transaction, each row built
    just before its batch is written; ``between`` is called after each committed batch with the
    count written so far. Returns that count."""
    keep, stale = _reusable(plan)
    for ids in _batches(stale, batch):
        with transaction(factory) as session:
            session.execute(delete(Artifact).where(Artifact.id.in_(ids)))
    written = 0
    chunk: list[dict[str, Any]] = []
    for key in plan.add:
        if key in keep:
            continue
        rec = plan.record(key)
        chunk.append(
            row_values(
                job, key, rec, encode_record(rec), snapshot.about_for(rec), plan.columns(key)
            )
        )
        if len(chunk) >= batch:
            written += _write(factory, chunk, between, written)
            chunk = []
    if chunk:
        written += _write(factory, chunk, between, written)
    return written


def _write(
    factory: sessionmaker[Session],
    chunk: list[dict[str, Any]],
    between: Callable[[int], None],
    before: int,
) -> int:
    with transaction(factory) as session:
        stage_rows(session, chunk)
    crash_point("mirror:after-batch")
    between(before + len(chunk))
    return len(chunk)


def discard(factory: sessionmaker[Session], job: MirrorJob, batch: int) -> int:
    """Delete what the mirror's runs staged and never switched in (a stopped or failed run)."""
    with factory() as session:
        ids = list(
            session.scalars(
                select(Artifact.id).where(
                    Artifact.channel_id == job.channel_id,
                    Artifact.mirror_id == job.mirror_id,
                    Artifact.scan_status == ScanStatus.STAGED,
                )
            )
        )
    for part in _batches(ids, batch):
        with transaction(factory) as session:
            session.execute(delete(Artifact).where(Artifact.id.in_(part)))
    return len(ids)
