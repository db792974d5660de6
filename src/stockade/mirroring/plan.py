"""What a run loads before it starts (``MirrorJob``), what it will change in the channel
(``Plan``), and the one transaction that makes the change (``apply_plan``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
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
from stockade.core.outbound import OutboundPolicy
from stockade.core.secrets import SecretBox
from stockade.core.urls import origin_of
from stockade.db.upsert import insert_ignore
from stockade.mirroring.credentials import proxy_url
from stockade.mirroring.downloader import DownloadItem
from stockade.mirroring.inputs import (
    CONFLICT_POLICY,
    digest,
    guarded_names,
    malicious_files,
    pack_exclusions,
)
from stockade.mirroring.models import Mirror, MirrorMode, MirrorRun, MirrorSubdirState
from stockade.mirroring.sources import SourceConfig, open_source, redact_url
from stockade.mirroring.summaries import backfill_summaries
from stockade.policies.engine import Reason
from stockade.policies.model import Policy
from stockade.policies.service import PolicyService
from stockade.signing.upstream import (
    SignatureCheck,
    SignatureStatus,
    UpstreamTrust,
    stored_trust,
)
from stockade.storage.interfaces import BlobStore

if TYPE_CHECKING:
    from stockade.mirroring.summaries import About
    from stockade.mirroring.upstream import UpstreamSnapshot, Verdict

CHUNK = 2000


@dataclass(frozen=True)
class SubdirStateView:
    subdir: str
    etag: str | None
    last_modified: str | None
    variant: str | None
    raw_sha256: str | None
    fingerprint: str | None
    valid_until: datetime | None
    upstream_count: int
    kept_count: int
    base_url: str | None
    exclusions_sha256: str | None
    fetched_at: datetime | None = None


@dataclass
class MirrorJob:
    run_id: int
    attempt: int
    mirror_id: int
    name: str
    channel_id: int
    channel_name: str
    mode: str
    subdirs: list[str]
    concurrency: int
    source: SourceConfig
    policies: list[Policy]
    policy_digest: str
    guarded: set[str]
    allowed: list[str]
    guard_digest: str
    malicious: set[str]
    states: dict[str, SubdirStateView]
    vulnerability_version: str = ""
    # Content trust of the upstream (``mirroring.trust``): the root an admin trusts, where the
    # upstream's metadata is, and what records are checked with: the last run's, checked again
    # offline (dry runs, explain) until a run fetches it anew (``fetch_upstream``).
    trusted_root: bytes | None = None
    signing_metadata_url: str | None = None
    trust: UpstreamTrust = field(default_factory=UpstreamTrust)

    def describe(self) -> str:
        policies = ", ".join(p.name for p in self.policies) or "no policy"
        return (
            f"{self.mode} mirror of {redact_url(self.source.url)} into "
            f"{self.channel_name!r} ({', '.join(self.subdirs)}; {policies})"
        )


def state_views(session: Session, mirror_id: int) -> dict[str, SubdirStateView]:
    rows = session.scalars(
        select(MirrorSubdirState).where(MirrorSubdirState.mirror_id == mirror_id)
    ).all()
    return {
        r.subdir: SubdirStateView(
            r.subdir,
            r.etag,
            r.last_modified,
            r.variant,
            r.raw_sha256,
            r.fingerprint,
            r.valid_until,
            r.upstream_count,
            r.kept_count,
            r.base_url,
            r.exclusions_sha256,
            r.fetched_at,
        )
        for r in rows
    }


def metadata_location(mirror: Mirror) -> str:
    """Where the upstream's trust metadata is fetched from (``mirroring.trust``)."""
    return mirror.signing_metadata_url or mirror.source_url


def mirror_policies(session: Session, mirror: Mirror) -> list[Policy]:
    """The channel's policies, then the mirror's own (a record must pass all of them)."""
    service = PolicyService(session)
    seen: set[str] = set()
    result: list[Policy] = []
    for policy in service.for_channel(mirror.channel_id) + service.for_mirror(mirror.id):
        if policy.name not in seen:
            seen.add(policy.name)
            result.append(policy)
    return result


def source_config(
    mirror: Mirror,
    secrets: SecretBox,
    timeout_s: float = 60.0,
    outbound: OutboundPolicy | None = None,
) -> SourceConfig:
    """How to reach the mirror's upstream: the token bound to the origin it was given for, the
    proxy with its decrypted credentials, the outbound policy (strict when not given)."""
    return SourceConfig(
        url=mirror.source_url,
        token=secrets.decrypt(mirror.source_token_enc) if mirror.source_token_enc else None,
        token_origin=mirror.source_token_origin or origin_of(mirror.source_url),
        proxy=proxy_url(mirror, secrets),
        ca_bundle=Path(mirror.ca_bundle) if mirror.ca_bundle else None,
        timeout_s=timeout_s,
        outbound=outbound or OutboundPolicy(),
    )


def job_for_mirror(
    session: Session,
    mirror: Mirror,
    secrets: SecretBox,
    *,
    run_id: int = 0,
    attempt: int = 0,
    policies: list[Policy] | None = None,
    timeout_s: float = 60.0,
    outbound: OutboundPolicy | None = None,
) -> MirrorJob:
    channel = session.get(Channel, mirror.channel_id)
    assert channel is not None
    chosen = mirror_policies(session, mirror) if policies is None else policies
    guarded = guarded_names(session, channel.id, mirror.companions or [])
    allowed = list(mirror.allowed_names or [])
    definitions = list(chosen)  # dataclasses: digested field by field, sets sorted
    return MirrorJob(
        run_id=run_id,
        attempt=attempt,
        mirror_id=mirror.id,
        name=mirror.name,
        channel_id=channel.id,
        channel_name=channel.name,
        mode=mirror.mode,
        subdirs=list(mirror.subdirs),
        concurrency=mirror.concurrency,
        source=source_config(mirror, secrets, timeout_s, outbound),
        policies=chosen,
        policy_digest=digest(definitions),
        guarded=guarded,
        allowed=allowed,
        guard_digest=digest(sorted(guarded - set(allowed))),
        malicious=malicious_files(session, channel.id),
        states=state_views(session, mirror.id),
        trusted_root=mirror.trusted_root,
        signing_metadata_url=mirror.signing_metadata_url,
        trust=stored_trust(
            mirror.trusted_root, mirror.upstream_trust, utcnow(), metadata_location(mirror)
        ),
    )


def load_job(
    session: Session,
    run_id: int,
    secrets: SecretBox,
    timeout_s: float = 60.0,
    outbound: OutboundPolicy | None = None,
) -> MirrorJob:
    run = session.get(MirrorRun, run_id)
    assert run is not None
    mirror = session.get(Mirror, run.mirror_id)
    assert mirror is not None
    return job_for_mirror(
        session,
        mirror,
        secrets,
        run_id=run_id,
        attempt=run.attempt,
        timeout_s=timeout_s,
        outbound=outbound,
    )


# ------------------------------------------------------------------------------------------ plan


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
