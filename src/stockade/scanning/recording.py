"""Recording a verdict in one transaction: the result, the status, the request gone, an event.

A result is keyed by the scanners' fingerprint (:class:`ScannerSet`): a verdict for the same bytes
under the same fingerprint is reused at once (copies, the same file mirrored twice), and a
release made under a fingerprint survives rescans under it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.channels.lockorder import lock_subdirs_of
from stockade.channels.models import Artifact, Channel, ScanRequest
from stockade.channels.scanstate import ArtifactSource, ScanStatus, set_status
from stockade.core.clock import utcnow
from stockade.core.metrics import metrics
from stockade.db.unit_of_work import after_commit
from stockade.scanning.engine import ScanReport
from stockade.scanning.interfaces import Finding, Scanner, Verdict
from stockade.scanning.models import ArtifactScan


class ScanEvent(StrEnum):
    QUARANTINE = "artifact.quarantine"
    HOLD = "artifact.scan-hold"
    FLAG = "artifact.scan-flag"  # suspicious, and served by its channel's choice
    RELEASE = "artifact.release"
    DELETE = "artifact.quarantine-delete"
    DOWNLOAD = "artifact.quarantine-download"
    RESCAN = "artifact.rescan"
    RULE_ADD = "scan-rule.add"
    RULE_REMOVE = "scan-rule.remove"


@dataclass(frozen=True)
class ScannerSet:
    """The scanners in force and their fingerprint (a hash of every name and version)."""

    scanners: Sequence[Scanner]
    versions: Mapping[str, str]

    @classmethod
    def of(cls, scanners: Sequence[Scanner]) -> ScannerSet:
        return cls(tuple(scanners), {s.name: s.version for s in scanners})

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(dict(sorted(self.versions.items())), separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# Called in the verdict's transaction for a file newly quarantined or held: (session, artifact,
# channel name, status, findings); the composition root plugs the webhook outbox in.
HeldNotifier = Callable[[Session, Artifact, str, str, Sequence[dict[str, Any]]], object]


def _no_notice(*_args: object) -> None:
    return None


_STATUS = {
    Verdict.CLEAN: ScanStatus.CLEAN,
    Verdict.SUSPICIOUS: ScanStatus.SUSPICIOUS,
    Verdict.MALICIOUS: ScanStatus.MALICIOUS,
}


def finding_json(finding: Finding) -> dict[str, Any]:
    data = asdict(finding)
    data["verdict"] = str(finding.verdict)
    data["details"] = dict(finding.details)
    return data


def status_of(verdict: str, scan: ArtifactScan) -> ScanStatus:
    """The artifact's status for a stored result: a release under these rules holds."""
    status = ScanStatus.ERROR if verdict == "error" else _STATUS[Verdict(verdict)]
    if status != ScanStatus.CLEAN and scan.released_fingerprint == scan.fingerprint:
        return ScanStatus.RELEASED
    return status


def reuse_result(
    session: Session,
    artifact_id: int,
    sha256: str,
    current: ScannerSet,
    notify: HeldNotifier = _no_notice,
) -> bool:
    """Take a verdict already made for the same bytes under the same rules (no rescan).

    Only from an artifact scanned as the same subject: the scanners judge the name it is
    recorded under and, for a mirrored one, its likeness to internal names, so the same bytes
    uploaded (no such check) must not lend their verdict to a mirrored copy, nor one name to
    another."""
    fingerprint = current.fingerprint
    lock_subdirs_of(session, [artifact_id])  # before the file's rows (channels/lockorder.py)
    artifact = session.get(Artifact, artifact_id)
    if artifact is None or artifact.sha256 != sha256:
        return False  # replaced since it was claimed: its own request judges the new bytes
    mirrored = Artifact.source == ArtifactSource.MIRROR
    same = session.scalar(
        select(ArtifactScan)
        .join(Artifact, Artifact.id == ArtifactScan.artifact_id)
        .where(
            ArtifactScan.sha256 == sha256,
            ArtifactScan.fingerprint == fingerprint,
            ArtifactScan.verdict != "error",
            Artifact.name == artifact.name,
            mirrored if artifact.source == ArtifactSource.MIRROR else ~mirrored,
        )
        .order_by(ArtifactScan.artifact_id == artifact_id)  # another artifact's first
        .limit(1)
    )
    if same is None:
        return False
    scan = _result_row(session, artifact_id, sha256)
    keep_release = scan.released_fingerprint
    for column in ("verdict", "findings", "errors", "versions", "fingerprint", "bytes_read"):
        setattr(scan, column, getattr(same, column))
    scan.scanned_at = utcnow()
    scan.duration_ms = 0
    scan.released_fingerprint = keep_release
    return _apply(session, artifact_id, scan, notify)


def record_report(
    session: Session,
    artifact_id: int,
    sha256: str,
    report: ScanReport,
    current: ScannerSet,
    *,
    duration_ms: int,
    notify: HeldNotifier = _no_notice,
) -> bool:
    lock_subdirs_of(session, [artifact_id])  # before the file's rows (channels/lockorder.py)
    if not _still(session, artifact_id, sha256):
        return False  # replaced while scanned: the new bytes' result row is left alone
    scan = _result_row(session, artifact_id, sha256)
    scan.verdict = "error" if report.failed else str(report.verdict)
    scan.findings = [finding_json(f) for f in report.findings]
    scan.errors = dict(report.errors)
    scan.versions = dict(current.versions)
    scan.fingerprint = current.fingerprint
    scan.scanned_at = utcnow()
    scan.duration_ms = duration_ms
    scan.bytes_read = report.bytes_read
    return _apply(session, artifact_id, scan, notify)


def record_missing(session: Session, artifact_id: int, sha256: str) -> bool:
    """The file is not stored: a passive mirror's record goes back to ``unfetched``; anything
    else is an error (held)."""
    lock_subdirs_of(session, [artifact_id])  # before the file's rows (channels/lockorder.py)
    artifact = session.get(Artifact, artifact_id)
    session.execute(delete(ScanRequest).where(ScanRequest.artifact_id == artifact_id))
    if artifact is None or artifact.sha256 != sha256:
        return False
    status = ScanStatus.UNFETCHED if artifact.mirror_id is not None else ScanStatus.ERROR
    set_status(session, artifact, status)
    return True


def _still(session: Session, artifact_id: int, sha256: str) -> bool:
    """Whether the artifact still holds the bytes that were scanned (a forced upload replaces
    a row, and SQLite may give the new row the old one's id)."""
    current = session.scalar(select(Artifact.sha256).where(Artifact.id == artifact_id))
    return current == sha256


def _result_row(session: Session, artifact_id: int, sha256: str) -> ArtifactScan:
    scan = session.get(ArtifactScan, artifact_id)
    if scan is None or scan.sha256 != sha256:
        if scan is not None:
            session.delete(scan)
            session.flush()
        scan = ArtifactScan(artifact_id=artifact_id, sha256=sha256, fingerprint="")
        session.add(scan)
    return scan


def _apply(session: Session, artifact_id: int, scan: ArtifactScan, notify: HeldNotifier) -> bool:
    artifact = session.get(Artifact, artifact_id, with_for_update=True)
    if artifact is None or artifact.sha256 != scan.sha256:
        if scan in session.new:
            session.expunge(scan)
        return False  # deleted or replaced while it was scanned: its new request rescans it
    session.execute(delete(ScanRequest).where(ScanRequest.artifact_id == artifact_id))
    previous = artifact.scan_status
    status = status_of(scan.verdict, scan)
    verdict = metrics().scan_verdicts.labels(scan.verdict)
    after_commit(session, f"metrics:scan:{artifact_id}", verdict.inc)  # counted once committed
    set_status(session, artifact, status)
    session.flush()
    if status in (ScanStatus.MALICIOUS, ScanStatus.ERROR, ScanStatus.SUSPICIOUS) and (
        previous != status
    ):
        channel = _event(session, artifact, scan, status)
        if status == ScanStatus.MALICIOUS or not artifact.servable:
            notify(session, artifact, channel, str(status), list(scan.findings or []))
    return True


def _event(session: Session, artifact: Artifact, scan: ArtifactScan, status: ScanStatus) -> str:
    """Record the audit event; returns the channel's name."""
    channel = session.get(Channel, artifact.channel_id)
    name = channel.name if channel else "?"
    if status == ScanStatus.MALICIOUS:
        event = ScanEvent.QUARANTINE
    else:
        event = ScanEvent.FLAG if artifact.servable else ScanEvent.HOLD
    AuditLog(session).record(
        event,
        None,
        Target("channel", name, artifact.channel_id),
        details={
            "file": f"{artifact.subdir}/{artifact.filename}",
            "sha256": artifact.sha256,
            "status": str(status),
            "served": artifact.servable,
            "rules": sorted({f["rule"] for f in scan.findings})[:20],
            "errors": sorted(scan.errors)[:20],
        },
    )
    return name
