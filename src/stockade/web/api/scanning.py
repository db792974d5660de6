"""Scanning and the quarantine queue (SPEC §8): held artifacts, release, delete, rescans, rules.

Reading needs ``security:read``; release, delete, fetching a held file, rescans and rules need
``security:manage`` (admins have both). A held file is fetched only here, with an audit event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session
from starlette.responses import StreamingResponse

from stockade.channels.scanstate import ScanStatus
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.scanning.held_view import ScanResultView, held_view, scan_result_view
from stockade.scanning.models import ArtifactScan, ScanRule
from stockade.scanning.quarantine import HeldArtifact, QuarantineService
from stockade.scanning.recording import finding_json
from stockade.scanning.rescans import request_rescan
from stockade.scanning.rulebook import RuleBook
from stockade.web.api import API
from stockade.web.api.scan_schemas import (
    HeldArtifactPublic,
    ReleaseRequest,
    RescanQueued,
    RescanRequest,
    ScanProgressPublic,
    ScanResultPublic,
    ScanRuleCreate,
    ScanRulePublic,
)
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(prefix=API, tags=["scanning"])
ArtifactId = Annotated[int, Path(ge=1, le=2**62)]
Status = Annotated[ScanStatus | None, Query(description="one held state; default: all of them")]


def scan_public(session: Session, scan: ArtifactScan, fingerprint: str) -> ScanResultPublic:
    return scan_result_public(scan_result_view(session, scan, fingerprint))


def scan_result_public(view: ScanResultView) -> ScanResultPublic:
    data = asdict(view)
    data["findings"] = [finding_json(f) for f in view.findings]
    return ScanResultPublic.model_validate(data)


def held_public(session: Session, held: HeldArtifact, fingerprint: str) -> HeldArtifactPublic:
    view = held_view(session, held, fingerprint)
    data = asdict(view)
    data["scan"] = scan_result_public(view.scan) if view.scan else None
    return HeldArtifactPublic.model_validate(data)


@router.get("/quarantine", response_model=list[HeldArtifactPublic])
def list_held(
    principal: SignedIn,
    container: ContainerDep,
    status: Status = None,
    channel: Annotated[str | None, Query(max_length=512)] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[HeldArtifactPublic]:
    """What the scanners hold: malicious (quarantined), and suspicious or unjudged files whose
    channel holds them. Pages by ``after`` (the last id seen)."""
    fingerprint = container.scanners.current().fingerprint
    with container.read_factory() as session:
        rows = QuarantineService(session).list(
            principal, status=status, channel=channel, after_id=after, limit=limit
        )
        return [held_public(session, h, fingerprint) for h in rows]


@router.get("/quarantine/{artifact_id}", response_model=HeldArtifactPublic)
def show_held(
    artifact_id: ArtifactId, principal: SignedIn, container: ContainerDep
) -> HeldArtifactPublic:
    """Any artifact's scan result, by id (held or not)."""
    fingerprint = container.scanners.current().fingerprint
    with container.read_factory() as session:
        held = QuarantineService(session).show(principal, artifact_id)
        return held_public(session, held, fingerprint)


@router.post("/quarantine/{artifact_id}/release", response_model=HeldArtifactPublic)
def release_held(
    artifact_id: ArtifactId, body: ReleaseRequest, principal: SignedIn, container: ContainerDep
) -> HeldArtifactPublic:
    """Serve a held file. The release holds while the rules are the same; new rules judge again."""
    fingerprint = container.scanners.current().fingerprint
    with transaction(container.factory) as session:
        held = QuarantineService(session).release(principal, artifact_id, body.note)
        public = held_public(session, held, fingerprint)
    return public


@router.delete("/quarantine/{artifact_id}", status_code=204)
def delete_held(
    artifact_id: ArtifactId,
    principal: SignedIn,
    container: ContainerDep,
    note: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    with transaction(container.factory) as session:
        QuarantineService(session).delete(principal, artifact_id, note)
    return Response(status_code=204)


@router.get("/quarantine/{artifact_id}/file", response_class=StreamingResponse)
def fetch_held(
    artifact_id: ArtifactId, principal: SignedIn, container: ContainerDep
) -> StreamingResponse:
    """The file itself, for analysis (recorded in the audit log)."""
    with transaction(container.factory) as session:
        held = QuarantineService(session).download(principal, artifact_id)
        sha256, filename = held.artifact.sha256, held.artifact.filename
    return StreamingResponse(
        _chunks(container.blobs.open(sha256)),
        media_type="application/octet-stream",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(64 * 1024):
            yield chunk


@router.post("/scans", response_model=RescanQueued, status_code=202)
def rescan(body: RescanRequest, principal: SignedIn, container: ContainerDep) -> RescanQueued:
    """Scan again: one artifact (``artifact_id``), one ``channel``, or ``all``."""
    targets = sum(x is not None for x in (body.artifact_id, body.channel)) + int(body.all)
    if targets != 1:
        raise InvalidInputError(
            "give exactly one of artifact_id, channel or all", code="scan:bad-target"
        )
    with transaction(container.factory) as session:
        queued = request_rescan(
            session, principal, artifact_id=body.artifact_id, channel=body.channel
        )
    return RescanQueued(queued=queued)


@router.get("/scans/status", response_model=ScanProgressPublic)
def scan_status(principal: SignedIn, container: ContainerDep) -> ScanProgressPublic:
    """Live state of scanning: the queue (its size falls as a rescan goes on), the held files."""
    current = container.scanners.current()
    with container.read_factory() as session:
        progress = QuarantineService(session).progress(principal)
    return ScanProgressPublic(
        queued=progress.queued,
        running=progress.running,
        held=progress.held,
        total=progress.total,
        scanners=dict(current.versions),
        fingerprint=current.fingerprint,
    )


def rule_public(rule: ScanRule) -> ScanRulePublic:
    count = sum(1 for line in rule.source.splitlines() if line.lstrip().startswith("rule "))
    return ScanRulePublic(
        name=rule.name,
        enabled=rule.enabled,
        created_at=rule.created_at,
        rules=count,
        source=rule.source,
    )


@router.get("/scan-rules", response_model=list[ScanRulePublic])
def list_rules(principal: SignedIn, container: ContainerDep) -> list[ScanRulePublic]:
    """Admins' own YARA rule sets (the shipped ones are in ``/scans/status`` ``scanners``)."""
    with container.read_factory() as session:
        return [rule_public(r) for r in RuleBook(session).list(principal)]


@router.post("/scan-rules", response_model=ScanRulePublic, status_code=201)
def add_rule(body: ScanRuleCreate, principal: SignedIn, container: ContainerDep) -> ScanRulePublic:
    """Add a YARA rule set (compiled first; each rule needs ``meta: verdict``). Every artifact
    is then rescanned in the background."""
    with transaction(container.factory) as session:
        public = rule_public(RuleBook(session).add(principal, body.name, body.source))
    container.scanners.invalidate()
    return public


@router.delete("/scan-rules/{name}", status_code=204)
def remove_rule(
    name: Annotated[str, Path(min_length=1, max_length=128)],
    principal: SignedIn,
    container: ContainerDep,
) -> Response:
    with transaction(container.factory) as session:
        RuleBook(session).remove(principal, name)
    container.scanners.invalidate()
    return Response(status_code=204)
