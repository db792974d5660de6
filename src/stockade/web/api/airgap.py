"""Air-gapped operation (SPEC §9), ``/api/v1/airgap``.

- ``POST /airgap/exports``: plan and sign a package bundle of a channel (full, or incremental
  ``since`` a bundle id or ``LAST``); ``GET /airgap/exports``: the bundles made here.
- ``GET /airgap/exports/{bundle_id}/members/{path}``: one member's bytes (``manifest.json``,
  ``manifest.sig``, ``signing/…``, ``repodata/…``, ``pkgs/…?sha256=``), which ``stockade airgap
  export`` writes into the zip one after the other (resuming where an interrupted copy stopped).
- ``GET /airgap``: the air-gap folder (bundles waiting) and what was applied or refused, and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from stockade.airgap.exports import ExportRequest, ExportService
from stockade.airgap.models import AirgapExport
from stockade.airgap.status import AirgapStatus, airgap_status
from stockade.db.engine import transaction
from stockade.web.api.channels import base_url
from stockade.web.api.schemas import Strict
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(tags=["airgap"])

BundleId = Annotated[str, PathParam(pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")]
MemberPath = Annotated[str, PathParam(max_length=400)]
Sha256 = Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")]


class ExportCreate(Strict):
    channel: str = Field(max_length=300)
    subdirs: list[str] | None = Field(default=None, max_length=64)
    since: str | None = Field(
        default=None,
        max_length=40,
        description="a bundle id made here, or LAST: an incremental bundle after it",
    )


class ExportPublic(BaseModel):
    bundle_id: str
    parent_id: str | None
    channel: str
    subdirs: list[str]
    files: int
    bytes: int
    created_at: datetime
    file_name: str = Field(description="the name to give the zip on the other side")
    counts: dict[str, Any]
    members: list[str] = Field(description="the members before the files, in order")


def _public(row: AirgapExport, service: ExportService) -> ExportPublic:
    return ExportPublic(
        bundle_id=row.bundle_id,
        parent_id=row.parent_id,
        channel=row.channel_name,
        subdirs=list(row.subdirs),
        files=row.files,
        bytes=row.bytes,
        created_at=row.created_at,
        file_name=export_file_name(row),
        counts={"subdirs": row.counts.get("subdirs", {})},
        members=service.members(row),
    )


def export_file_name(row: AirgapExport) -> str:
    channel = row.channel_name.replace("/", "_")
    return f"conda_{channel}_airgap_{row.bundle_id}.zip"


def _service(container: Any, session: Any) -> ExportService:
    settings = container.settings
    return ExportService(session, container.blobs, settings.signing, settings.data_dir)


@router.post("/airgap/exports", response_model=ExportPublic, status_code=201)
def create_export(
    body: ExportCreate, request: Request, principal: SignedIn, container: ContainerDep
) -> ExportPublic:
    """Plan and sign a bundle of the channel's servable packages (quarantined ones never leave)."""
    with transaction(container.factory) as session:
        service = _service(container, session)
        wanted = ExportRequest(body.channel, body.subdirs, body.since, base_url(request))
        return _public(service.create(principal, wanted), service)


@router.get("/airgap/exports", response_model=list[ExportPublic])
def list_exports(principal: SignedIn, container: ContainerDep) -> list[ExportPublic]:
    with container.read_factory() as session:
        service = _service(container, session)
        return [_public(row, service) for row in service.list_exports(principal)]


@router.get("/airgap/exports/{bundle_id}", response_model=ExportPublic)
def show_export(bundle_id: BundleId, principal: SignedIn, container: ContainerDep) -> ExportPublic:
    with container.read_factory() as session:
        service = _service(container, session)
        return _public(service.get(principal, bundle_id), service)


@router.get("/airgap/exports/{bundle_id}/members/{path:path}")
def export_member(
    bundle_id: BundleId,
    path: MemberPath,
    principal: SignedIn,
    container: ContainerDep,
    sha256: Sha256 = None,
) -> StreamingResponse:
    """One member's bytes; a package file is asked for with the sha256 the manifest lists."""
    with container.read_factory() as session:
        member, stream = _service(container, session).member(principal, bundle_id, path, sha256)

    def chunks() -> Any:
        with stream:
            while block := stream.read(1 << 20):
                yield block

    headers = {"content-length": str(member.size), "x-sha256": member.sha256}
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


@router.get("/airgap", response_model=AirgapStatus)
def status(principal: SignedIn, container: ContainerDep) -> AirgapStatus:
    """The air-gap folder: bundles waiting (and what they are), applied, refused and why."""
    settings = container.settings
    with container.read_factory() as session:
        return airgap_status(session, principal, settings.airgap, settings.data_dir)
