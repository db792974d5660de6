"""A held artifact and its last scan as shown to a security reader (the API and the pages share it).

Plain dataclasses: the REST API turns them into its schemas, the quarantine pages render them.
``current`` says whether the result was made under the scanners in force now (``fingerprint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from stockade.auth.models import User
from stockade.scanning.interfaces import Finding, Verdict
from stockade.scanning.models import ArtifactScan
from stockade.scanning.quarantine import HeldArtifact

__all__ = ["HeldView", "ScanResultView", "held_view", "scan_result_view"]


@dataclass(frozen=True)
class ScanResultView:
    verdict: str  # clean, suspicious, malicious or error
    findings: list[Finding]
    errors: dict[str, str]  # scanners that could not judge it, and why
    versions: dict[str, str]  # each scanner's version (code and rules)
    current: bool  # made under the scanners in force now
    scanned_at: datetime
    duration_ms: int
    released_at: datetime | None
    released_by: str | None
    release_note: str | None


@dataclass(frozen=True)
class HeldView:
    id: int
    channel: str
    subdir: str
    filename: str
    name: str
    version: str
    sha256: str
    size: int
    source: str
    status: str
    servable: bool
    created_at: datetime
    scan: ScanResultView | None


def _finding(raw: dict[str, Any]) -> Finding:
    """A stored finding (``recording.finding_json``) back as the scanners' ``Finding``."""
    return Finding(
        scanner=str(raw["scanner"]),
        rule=str(raw["rule"]),
        verdict=Verdict(raw["verdict"]),
        member=raw.get("member"),
        evidence=str(raw.get("evidence", "")),
        details=dict(raw.get("details") or {}),
    )


def scan_result_view(session: Session, scan: ArtifactScan, fingerprint: str) -> ScanResultView:
    releaser = session.get(User, scan.released_by_id) if scan.released_by_id else None
    return ScanResultView(
        verdict=scan.verdict,
        findings=[_finding(f) for f in scan.findings or []],
        errors=dict(scan.errors or {}),
        versions=dict(scan.versions or {}),
        current=scan.fingerprint == fingerprint,
        scanned_at=scan.scanned_at,
        duration_ms=scan.duration_ms,
        released_at=scan.released_at,
        released_by=releaser.username if releaser else None,
        release_note=scan.release_note,
    )


def held_view(session: Session, held: HeldArtifact, fingerprint: str) -> HeldView:
    a = held.artifact
    return HeldView(
        id=a.id,
        channel=held.channel,
        subdir=a.subdir,
        filename=a.filename,
        name=a.name,
        version=a.version,
        sha256=a.sha256,
        size=a.size,
        source=a.source,
        status=a.scan_status,
        servable=a.servable,
        created_at=a.created_at,
        scan=scan_result_view(session, held.scan, fingerprint) if held.scan else None,
    )
