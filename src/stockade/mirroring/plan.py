"""What a run will change in the channel (``Plan``), and the one transaction that makes the
change (``apply_plan``); what it loads before (``MirrorJob``) is in ``mirroring/job.py``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.channels.intake import ScanReason, admit_staged, readmit
from stockade.channels.lockorder import lock_subdirs
from stockade.channels.models import Artifact, Channel
from stockade.channels.publishing import request_publications
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
from stockade.mirroring.staging import (
    NO_SIGNATURE,
    Key,
    StoredRow,
    record_digest,
    row_values,
    stored_rows,
)
from stockade.mirroring.summaries import backfill_summaries
from stockade.policies.engine import Reason
from stockade.signing.upstream import (
    SignatureCheck,
    SignatureStatus,
)
from stockade.storage.interfaces import BlobStore

if TYPE_CHECKING:
    from stockade.mirroring.upstream import UpstreamSnapshot, Verdict

CHUNK = 2000


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
    """What a run changes, by key: the records themselves stay in the verdict and are built
    (:meth:`record`) when a row is written, so a plan of 600,000 additions stays small."""

    add: dict[Key, int] = field(default_factory=dict)  # (subdir, fn) -> indexed_timestamp
    change: dict[Key, tuple[int, int]] = field(default_factory=dict)  # -> (id, indexed)
    remove: dict[Key, int] = field(default_factory=dict)  # -> artifact id
    conflicts: dict[Key, str] = field(default_factory=dict)  # -> other source
    failed: dict[Key, str] = field(default_factory=dict)  # -> why
    unchanged: int = 0
    base_urls: dict[str, str | None] = field(default_factory=dict)
    #: the verdict's kept records and upstream signature checks, by subdir and filename
    kept: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    checks: dict[str, dict[str, SignatureCheck]] = field(default_factory=dict)
    #: rows an earlier attempt of the run staged (``mirroring.staging``)
    staged: dict[Key, StoredRow] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.add),
            "removed": len(self.remove),
            "changed": len(self.change),
            "unchanged": self.unchanged,
            "conflicts": len(self.conflicts),
        }

    def _indexed(self, key: Key) -> int:
        return self.add[key] if key in self.add else self.change[key][1]

    def record(self, key: Key) -> dict[str, Any]:
        """The record of an added or changed file as the channel will keep it."""
        subdir, filename = key
        check = self.checks.get(subdir, {}).get(filename)
        return stored_record(self.kept[subdir][filename], check, self._indexed(key))

    def columns(self, key: Key) -> dict[str, Any]:
        """Column values beside the record: indexed_timestamp and the signature state."""
        check = self.checks.get(key[0], {}).get(key[1])
        return {"indexed_timestamp": self._indexed(key), **signature_columns(check)}

    def downloads(self, job: MirrorJob) -> list[DownloadItem]:
        source = open_source(job.source)
        items: list[DownloadItem] = []
        wanted = list(self.add) + [k for k in self.change if k not in self.add]
        for key in wanted:
            rec = self.kept[key[0]][key[1]]
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

    def fail(self, subdir: str, filename: str, why: str) -> None:
        key = (subdir, filename)
        self.failed[key] = why
        self.add.pop(key, None)
        # A changed record whose new file failed keeps its old row (and file) in the channel.
        self.change.pop(key, None)


def _others(session: Session, job: MirrorJob) -> dict[Key, str]:
    """Files of the channel's subdirs that something else brought (staged ones included)."""
    return {
        (sd, fn): source
        for sd, fn, source, mid in session.execute(
            select(Artifact.subdir, Artifact.filename, Artifact.source, Artifact.mirror_id).where(
                Artifact.channel_id == job.channel_id,
                Artifact.subdir.in_(job.subdirs),
                or_(Artifact.mirror_id.is_(None), Artifact.mirror_id != job.mirror_id),
            )
        ).all()
    }


def build_plan(session: Session, job: MirrorJob, verdict: Verdict) -> Plan:
    plan = Plan(
        base_urls=dict(verdict.base_urls),
        kept=verdict.kept_records,
        checks=verdict.signatures,
        staged=stored_rows(session, job, staged=True),
    )
    mine = stored_rows(session, job, staged=False)
    others = _others(session, job)
    now = now_ms()
    for subdir, kept in verdict.kept_records.items():
        excluded = verdict.excluded.setdefault(subdir, {})
        for filename in kept:
            key = (subdir, filename)
            if key in others:
                plan.conflicts[key] = others[key]
                excluded[filename] = [
                    Reason(CONFLICT_POLICY, "exists", f"already in the channel ({others[key]})")
                ]
                continue
            current = mine.pop(key, None)
            if current is None:
                # CEP 47: set once, when the record first enters the channel (or was staged)
                earlier = plan.staged.get(key)
                plan.add[key] = earlier.indexed_timestamp if earlier is not None else now
                continue
            plan.change[key] = (current.id, current.indexed_timestamp)  # compared just below
            encoded = encode_record(plan.record(key))
            columns = plan.columns(key)
            signature = (
                columns["signature"],
                columns["signature_status"],
                columns["signature_detail"],
            )
            if current.digest == record_digest(encoded) and current.signature == signature:
                del plan.change[key]
                plan.unchanged += 1
    for subdir in verdict.kept_records:
        for filename in verdict.excluded.get(subdir, {}):
            if (subdir, filename) in plan.conflicts:
                verdict.kept_records[subdir].pop(filename, None)
    plan.remove = {key: cur.id for key, cur in mine.items()}
    return plan


def store_exclusions(verdict: Verdict, blobs: BlobStore) -> dict[str, str]:
    """The blob of each subdir's exclusions (dry runs and explain read them): packed before the
    switching transaction, as 400,000 excluded records take seconds to pack."""
    return {sd: blobs.put_bytes(pack_exclusions(per)) for sd, per in verdict.excluded.items()}


def apply_plan(
    session: Session,
    job: MirrorJob,
    plan: Plan,
    verdict: Verdict,
    snapshot: UpstreamSnapshot,
    exclusions: dict[str, str],
) -> None:
    """Switch the channel to the run's result in this one transaction: the rows the run staged
    (``mirroring.staging``) are admitted in one statement, removals and changes applied."""
    # the subdir rows first, then the files (channels/lockorder.py)
    planned = {key[0] for keys in (plan.add, plan.change, plan.remove, plan.staged) for key in keys}
    lock_subdirs(session, [(job.channel_id, subdir) for subdir in planned])
    touched: set[str] = set()
    for chunk in _chunks(list(plan.remove.items())):
        session.execute(delete(Artifact).where(Artifact.id.in_([aid for _, aid in chunk])))
        touched.update(sd for (sd, _), _ in chunk)
    stored = job.mode == MirrorMode.ACTIVE
    for key, (aid, _indexed) in plan.change.items():
        _apply_change(session, job, plan, snapshot, key, aid, stored)
        touched.add(key[0])
    channel = session.get(Channel, job.channel_id)
    if plan.add and channel is not None:
        touched |= admit_staged(
            session, channel, job.mirror_id, stored=stored, reason=ScanReason.MIRROR
        )
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


def _apply_change(
    session: Session,
    job: MirrorJob,
    plan: Plan,
    snapshot: UpstreamSnapshot,
    key: Key,
    aid: int,
    stored: bool,
) -> None:
    rec = plan.record(key)
    values = row_values(
        job, key, rec, encode_record(rec), snapshot.about_for(rec), plan.columns(key)
    )
    if values["summary"] is None:  # not known this time: the one stored stays
        values.pop("summary")
    for name in ("channel_id", "subdir", "filename", "source", "mirror_id", "created_at"):
        values.pop(name)
    old_sha = session.scalar(select(Artifact.sha256).where(Artifact.id == aid))
    session.execute(update(Artifact).where(Artifact.id == aid).values(**values))
    if old_sha != values["sha256"]:  # new bytes: the old verdict says nothing about them
        readmit(session, aid, stored=stored, reason=ScanReason.MIRROR)


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
