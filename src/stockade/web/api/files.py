"""Artifacts: list, show, remove, copy and move, patches (uploads: :mod:`.uploads`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from stockade.auth.permissions import Permission
from stockade.channels.artifacts import ArtifactService
from stockade.channels.artifacts import Selection as SelectionSpec
from stockade.channels.models import Artifact
from stockade.channels.patching import PatchService
from stockade.channels.service import ChannelService
from stockade.channels.signature_names import SignatureState
from stockade.core.handoff import hand_off
from stockade.db.engine import transaction
from stockade.scanning.models import ArtifactScan
from stockade.web.api import API, uploads
from stockade.web.api.channels import base_url
from stockade.web.api.presenters import artifact_public, channel_signs
from stockade.web.api.scanning import scan_public
from stockade.web.api.schemas import (
    ArtifactPublic,
    BulkResult,
    CopyRequest,
    PatchPublic,
    PatchSet,
    Selection,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn
from stockade.web.routing import add_routes

router = APIRouter(prefix=API, tags=["files"])
add_routes(router, uploads.router)  # POST files, POST uploads, PUT files/{filename}


@router.get("/channels/{channel:path}/files", response_model=list[ArtifactPublic])
def list_files(
    channel: str,
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    subdir: str | None = None,
    name: str | None = None,
    signature: Annotated[
        SignatureState | None, Query(description="only files in this signature state")
    ] = None,
    after: Annotated[int, Query(ge=0, description="cursor: the last id seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ArtifactPublic]:
    with container.read_factory() as session:
        row = ChannelService(session).get(principal, channel, Permission.CHANNEL_READ)
        service = ArtifactService(session)
        artifacts = service.list_files(
            row,
            subdir=subdir,
            name=name,
            signature=signature,
            after_id=after,
            limit=limit,
            with_pending=service.sees_pending(principal, row),
        )
        if artifacts:
            request.state.next_cursor = artifacts[-1].id
        return [artifact_public(a, row.name, base_url(request), signs=row.sign) for a in artifacts]


@router.get("/channels/{channel:path}/files/{subdir}/{filename}", response_model=ArtifactPublic)
def show_file(
    channel: str,
    subdir: str,
    filename: str,
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
) -> ArtifactPublic:
    with container.read_factory() as session:
        row = ChannelService(session).get(principal, channel, Permission.CHANNEL_READ)
        service = ArtifactService(session)
        artifact = service.get(
            row, subdir, filename, with_pending=service.sees_pending(principal, row)
        )
        public = artifact_public(artifact, row.name, base_url(request), signs=row.sign)
        scan = session.get(ArtifactScan, artifact.id)
        if scan is not None and scan.sha256 == artifact.sha256:
            fingerprint = container.scanners.current().fingerprint
            public.scan = scan_public(session, scan, fingerprint)
        return public


@router.delete("/channels/{channel:path}/files/{subdir}/{filename}", status_code=204)
def delete_file(
    channel: str, subdir: str, filename: str, principal: SignedIn, container: ContainerDep
) -> Response:
    with transaction(container.factory) as session:
        ArtifactService(session).remove(
            principal, channel, SelectionSpec(files=[f"{subdir}/{filename}"])
        )
    return Response(status_code=204)


def _signs(session: Session, artifacts: list[Artifact]) -> bool:
    """Whether the channel of a bulk result (one channel) signs."""
    return channel_signs(session, artifacts[0].channel_id) if artifacts else False


def _spec(body: Selection) -> SelectionSpec:
    return SelectionSpec(files=body.files, name=body.name, version=body.version, subdir=body.subdir)


@router.post("/channels/{channel:path}/remove", response_model=BulkResult)
def remove_files(
    channel: str, body: Selection, request: Request, principal: SignedIn, container: ContainerDep
) -> BulkResult:
    with transaction(container.factory) as session:
        result = ArtifactService(session).remove(principal, channel, _spec(body))
        signs = _signs(session, result.artifacts)
        public = [
            artifact_public(a, channel, base_url(request), signs=signs) for a in result.artifacts
        ]
    return BulkResult(artifacts=public, skipped=result.skipped)


@router.post("/copy", response_model=BulkResult)
def copy_files(
    body: CopyRequest, request: Request, principal: SignedIn, container: ContainerDep
) -> BulkResult:
    """Copy (or with ``move``, move) artifacts from ``source`` to ``target``."""
    with transaction(container.factory) as session:
        result = ArtifactService(session).copy(
            principal,
            body.source,
            body.target,
            _spec(body),
            move=body.move,
            skip_existing=body.skip_existing,
        )
        signs = _signs(session, result.artifacts)
        public = [
            artifact_public(a, body.target, base_url(request), signs=signs)
            for a in result.artifacts
        ]
        copied = [a.id for a in result.artifacts]
    # a move keeps no match: its rows are new ones
    hand_off(container.dispatch_match, copied, "matching of artifacts")
    return BulkResult(artifacts=public, skipped=result.skipped)


@router.get("/channels/{channel:path}/patches", response_model=list[PatchPublic])
def list_patches(
    channel: str, principal: CurrentPrincipal, container: ContainerDep, subdir: str | None = None
) -> list[PatchPublic]:
    with container.read_factory() as session:
        row = ChannelService(session).get(principal, channel, Permission.CHANNEL_READ)
        return [
            PatchPublic.model_validate(p, from_attributes=True)
            for p in PatchService(session).list(row, subdir)
        ]


@router.put("/channels/{channel:path}/patches/{subdir}/{filename}", response_model=PatchPublic)
def set_patch(
    channel: str,
    subdir: str,
    filename: str,
    body: PatchSet,
    principal: SignedIn,
    container: ContainerDep,
) -> PatchPublic:
    with transaction(container.factory) as session:
        patch = PatchService(session).set(
            principal,
            channel,
            subdir,
            filename,
            changes=body.changes,
            revoked=body.revoked,
            removed=body.removed,
        )
        public = PatchPublic.model_validate(patch, from_attributes=True)
    return public


@router.delete("/channels/{channel:path}/patches/{subdir}/{filename}", status_code=204)
def clear_patch(
    channel: str, subdir: str, filename: str, principal: SignedIn, container: ContainerDep
) -> Response:
    with transaction(container.factory) as session:
        PatchService(session).clear(principal, channel, subdir, filename)
    return Response(status_code=204)


@router.post("/channels/{channel:path}/patches/{subdir}", response_model=list[PatchPublic])
def import_patch_instructions(
    channel: str, subdir: str, body: dict[str, Any], principal: SignedIn, container: ContainerDep
) -> list[PatchPublic]:
    """Import a ``patch_instructions.json`` document for one subdir."""
    with transaction(container.factory) as session:
        service = PatchService(session)
        service.import_instructions(principal, channel, subdir, body)
        row = ChannelService(session).get(principal, channel, Permission.CHANNEL_READ)
        public = [
            PatchPublic.model_validate(p, from_attributes=True) for p in service.list(row, subdir)
        ]
    return public
