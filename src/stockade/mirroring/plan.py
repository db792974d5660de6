"""What a run will change in the channel (``Plan``), and the one transaction that makes the
change (``apply_plan``); what it loads before (``MirrorJob``) is in ``mirroring/job.py``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.channels.intake import ScanReason, admit_rows, readmit
from stockade.channels.models import Artifact, Channel
from stockade.channels.publishing import request_publications
from stockade.channels.scanstate import ArtifactSource, ScanStatus
from stockade.conda.repodata import encode_record
from stockade.core.clock import now_ms, utcnow
from stockade.core.faults import crash_point
from stockade.db.upsert import insert_ignore
from stockade.mirroring.downloader import DownloadItem
from stockade.mirroring.inputs import (
    CONFLICT_POLICY,
    pack_exclusions,
)
from stockade.mirroring.job import MirrorJob
from stockade.mirroring.models import Mirror, MirrorMode, MirrorSubdirState
from stockade.mirroring.sources import open_source
from stockade.mirroring.summaries import backfill_summaries
from stockade.policies.engine import Reason
from stockade.signing.upstream import (
    SignatureCheck,
    SignatureStatus,
)
from stockade.storage.interfaces import BlobStore

if TYPE_CHECKING:
    from stockade.mirroring.summaries import About
    from stockade.mirroring.upstream import UpstreamSnapshot, Verdict

CHUNK = 2000


@dataclass
class Current:
    id: int
    sha256: str
    record_json: bytes
    indexed_timestamp: int
    signature: tuple[Any, str | None, str | None] = (None, None, None)  # entry, status, detail


#: Columns of a mirrored row that record what its upstream signature proves (``signing.upstream``).
NO_SIGNATURE: dict[str, Any] = {
    "signature": None,
    "signature_status": None,
    "signature_detail": None,
}


def signature_columns(check: SignatureCheck | None) -> dict[str, Any]:
    if check is None:
        return dict(NO_SIGNATURE)
    return {
        "signature": check.entry,
        "signature_status": check.status.value,
        "signature_detail": check.detail,
    }


def stored_record(
    upstream: dict[str, Any], check: SignatureCheck | None, indexed: int
) -> dict[str, Any]:
    """The record as the channel keeps it. CEP 47's ``indexed_timestamp`` is added, except to a
    record that carries an upstream signature and reached us unchanged: it is kept exactly as
    upstream signed it (a client checks the signature over the record it reads; the
    ``indexed_timestamp`` column is still set)."""
    if check is not None and check.status != SignatureStatus.DROPPED:
        return upstream
    return {**upstream, "indexed_timestamp": indexed}


@dataclass
class Plan:
    add: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (subdir, fn) -> record
    change: dict[tuple[str, str], tuple[int, bytes]] = field(default_factory=dict)  # -> (id, rec)
    remove: dict[tuple[str, str], int] = field(default_factory=dict)  # -> artifact id
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)  # -> other source
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # -> why
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: (subdir, fn) -> column values beside the record: indexed_timestamp and the signature state
    columns: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    unchanged: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.add),
            "removed": len(self.remove),
            "changed": len(self.change),
            "unchanged": self.unchanged,
            "conflicts": len(self.conflicts),
        }

    def downloads(self, job: MirrorJob) -> list[DownloadItem]:
        source = open_source(job.source)
        items: list[DownloadItem] = []
        wanted = list(self.add) + [k for k in self.change if k not in self.add]
        for key in wanted:
            rec = self.records[key]
            subdir, filename = key
            size = rec.get("size")
            items.append(
                DownloadItem(
                    subdir,
                    filename,
                    str(rec["sha256"]),
                    size if isinstance(size, int) else None,
                    source.file_url(subdir, filename, self.base_urls.get(subdir)),
                )
            )
        source.close()
        return items

    base_urls: dict[str, str | None] = field(default_factory=dict)

    def fail(self, subdir: str, filename: str, why: str) -> None:
        key = (subdir, filename)
        self.failed[key] = why
        self.add.pop(key, None)
        # A changed record whose new file failed keeps its old row (and file) in the channel.
        self.change.pop(key, None)


def build_plan(session: Session, job: MirrorJob, verdict: Verdict) -> Plan:
    plan = Plan(base_urls=dict(verdict.base_urls))
    mine: dict[tuple[str, str], Current] = {
        (sd, fn): Current(aid, sha, rec, indexed, (sig, status, detail))
        for aid, sd, fn, sha, rec, indexed, sig, status, detail in session.execute(
            select(
                Artifact.id,
                Artifact.subdir,
                Artifact.filename,
                Artifact.sha256,
                Artifact.record_json,
                Artifact.indexed_timestamp,
                Artifact.signature,
                Artifact.signature_status,
                Artifact.signature_detail,
            ).where(
                Artifact.channel_id == job.channel_id,
                Artifact.mirror_id == job.mirror_id,
                # Quarantined files stay in the queue (not served) until an admin decides; the
                # policy engine excludes them from what the run keeps, and removing them would
                # bring them back, and scan them again, on the next run.
                Artifact.scan_status != ScanStatus.MALICIOUS,
            )
        ).all()
    }
    others = {
        (sd, fn): source
        for sd, fn, source, mid in session.execute(
            select(Artifact.subdir, Artifact.filename, Artifact.source, Artifact.mirror_id).where(
                Artifact.channel_id == job.channel_id, Artifact.subdir.in_(job.subdirs)
            )
        ).all()
        if mid != job.mirror_id
    }
    for subdir, kept in verdict.kept_records.items():
        excluded = verdict.excluded.setdefault(subdir, {})
        checks = verdict.signatures.get(subdir, {})
        for filename, upstream in kept.items():
            key = (subdir, filename)
            if key in others:
                plan.conflicts[key] = others[key]
                excluded[filename] = [
                    Reason(CONFLICT_POLICY, "exists", f"already in the channel ({others[key]})")
                ]
                continue
            current = mine.pop(key, None)
            # CEP 47: set once, when the record first enters the channel, and kept across runs
            indexed = current.indexed_timestamp if current is not None else now_ms()
            check = checks.get(filename)
            rec = stored_record(upstream, check, indexed)
            encoded = encode_record(rec)
            plan.records[key] = rec
            columns = plan.columns[key] = {
                "indexed_timestamp": indexed,
                **signature_columns(check),
            }
            signature = (
                columns["signature"],
                columns["signature_status"],
                columns["signature_detail"],
            )
            if current is None:
                plan.add[key] = encoded
            elif current.record_json != encoded or current.signature != signature:
                plan.change[key] = (current.id, encoded)
                if current.sha256 == rec.get("sha256"):
                    plan.records[key] = rec  # same file: nothing to download
            else:
                plan.unchanged += 1
    for subdir in verdict.kept_records:
        for filename in verdict.excluded.get(subdir, {}):
            if (subdir, filename) in plan.conflicts:
                verdict.kept_records[subdir].pop(filename, None)
    plan.remove = {key: cur.id for key, cur in mine.items()}
    return plan


def _row(
    job: MirrorJob,
    subdir: str,
    filename: str,
    rec: dict[str, Any],
    encoded: bytes,
    about: About | None = None,
    columns: dict[str, Any] | None = None,
) -> dict[str, Any]:
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


def apply_plan(
    session: Session,
    job: MirrorJob,
    plan: Plan,
    verdict: Verdict,
    snapshot: UpstreamSnapshot,
    blobs: BlobStore,
) -> None:
    """Switch the channel to the run's result in this one transaction."""
    exclusions = {sd: blobs.put_bytes(pack_exclusions(per)) for sd, per in verdict.excluded.items()}
    touched: set[str] = set()
    for chunk in _chunks(list(plan.remove.items())):
        session.execute(delete(Artifact).where(Artifact.id.in_([aid for _, aid in chunk])))
        touched.update(sd for (sd, _), _ in chunk)
    stored = job.mode == MirrorMode.ACTIVE
    for (subdir, filename), (aid, encoded) in plan.change.items():
        rec = plan.records[(subdir, filename)]
        values = _row(
            job,
            subdir,
            filename,
            rec,
            encoded,
            snapshot.about_for(rec),
            plan.columns.get((subdir, filename)),
        )
        if values["summary"] is None:  # not known this time: the one stored stays
            values.pop("summary")
        for key in ("channel_id", "subdir", "filename", "source", "mirror_id", "created_at"):
            values.pop(key)
        old_sha = session.scalar(select(Artifact.sha256).where(Artifact.id == aid))
        session.execute(update(Artifact).where(Artifact.id == aid).values(**values))
        if old_sha != values["sha256"]:  # new bytes: the old verdict says nothing about them
            readmit(session, aid, stored=stored, reason=ScanReason.MIRROR)
        touched.add(subdir)
    rows = [
        _row(
            job,
            sd,
            fn,
            plan.records[(sd, fn)],
            encoded,
            snapshot.about_for(plan.records[(sd, fn)]),
            plan.columns.get((sd, fn)),
        )
        for (sd, fn), encoded in plan.add.items()
    ]
    channel = session.get(Channel, job.channel_id)
    if rows and channel is not None:
        admit_rows(session, channel, rows, stored=stored, reason=ScanReason.MIRROR)
        touched.update(r["subdir"] for r in rows)
    backfill_summaries(session, job.mirror_id, snapshot)  # records mirrored without one
    crash_point("mirror:before-commit")
    session.execute(
        update(Mirror)
        .where(Mirror.id == job.mirror_id)
        .values(
            upstream_trust=job.trust.stored(
                job.trusted_root, job.signing_metadata_url or job.source.url
            )
            if job.trusted_root
            else None
        )
    )
    fingerprint = snapshot.fingerprint if not plan.failed else None
    _save_states(session, job, verdict, snapshot, exclusions, fingerprint)
    request_publications(session, [(job.channel_id, sd) for sd in touched])
    AuditLog(session).record(
        "mirror.sync",
        None,
        Target("mirror", job.name, job.mirror_id),
        details={"run": job.run_id, **plan.counts(), "failed": len(plan.failed)},
    )


def _save_states(
    session: Session,
    job: MirrorJob,
    verdict: Verdict,
    snapshot: UpstreamSnapshot,
    exclusions: dict[str, str],
    fingerprint: str | None,
) -> None:
    for subdir, fetched in snapshot.subdirs.items():
        insert_ignore(
            session,
            MirrorSubdirState,
            {"mirror_id": job.mirror_id, "subdir": subdir, "upstream_count": 0, "kept_count": 0},
            ["mirror_id", "subdir"],
        )
        parsed = snapshot.parsed.get(subdir)
        session.execute(
            update(MirrorSubdirState)
            .where(MirrorSubdirState.mirror_id == job.mirror_id, MirrorSubdirState.subdir == subdir)
            .values(
                etag=fetched.validators.etag,
                last_modified=fetched.validators.last_modified,
                variant=fetched.variant,
                raw_sha256=fetched.raw_sha256,
                base_url=verdict.base_urls.get(subdir),
                fetched_at=utcnow(),
                fingerprint=fingerprint,
                valid_until=verdict.valid_until,
                exclusions_sha256=exclusions.get(subdir),
                upstream_count=len(parsed.records) if parsed else 0,
                kept_count=len(verdict.kept_records.get(subdir, {})),
            )
        )
    session.execute(
        delete(MirrorSubdirState).where(
            MirrorSubdirState.mirror_id == job.mirror_id,
            MirrorSubdirState.subdir.not_in(list(snapshot.subdirs)),
        )
    )


def _chunks(items: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
