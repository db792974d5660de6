"""Air-gapped operation (SPEC §9), ``/api/v1/airgap``.

- ``POST /airgap/exports``: plan and sign a package bundle of a channel (full, or incremental
  ``since`` a bundle id or ``LAST``); ``GET /airgap/exports``: the bundles made here.
- ``GET /airgap/exports/{bundle_id}/members/{path}``: one member's bytes (``manifest.json``,
  ``manifest.sig``, ``signing/…``, ``repodata/…``, ``pkgs/…?sha256=``), which ``stockade airgap
  export`` writes into the zip one after the other (resuming where an interrupted copy stopped).
- ``GET /airgap``: the air-gap folder (bundles waiting) and what was applied or refused, and why.
- ``POST /airgap/bundles``: a bundle (the body) checked and placed into the air-gap folder, and a
  run asked of every mirror whose source is ``airgap:<its channel>`` (``stockade airgap import``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response, StreamingResponse

from stockade.airgap import intake
from stockade.airgap.exports import ExportRequest, ExportService, export_file_name
from stockade.airgap.models import AirgapExport, BundleKind
from stockade.airgap.status import AirgapStatus, airgap_mirrors, airgap_status
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import InvalidInputError, StockadeError
from stockade.core.handoff import hand_off
from stockade.db.engine import transaction
from stockade.mirroring.errors import RunActiveError
from stockade.mirroring.runs import RunService
from stockade.storage.staging import StagedFile
from stockade.web.api import API
from stockade.web.api.channels import base_url
from stockade.web.api.mirrors import run_public
from stockade.web.api.schemas import Strict
from stockade.web.bodies import stage_body
from stockade.web.deps import ContainerDep, SignedIn

router = APIRouter(prefix=API, tags=["airgap"])


class _MemberFile(FileResponse):
    """A package file of a bundle, read in 1 MiB blocks: Starlette's 64 KiB blocks cost a thread
    hop each (a 1 GB export went from 195 to 252 MB/s, benchmarks/bench_airgap.py)."""

    chunk_size = 1 << 20


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
) -> Response:
    """One member's bytes; a package file is asked for with the sha256 the manifest lists."""
    with container.read_factory() as session:
        member = _service(container, session).member(principal, bundle_id, path, sha256)
    headers = {"x-sha256": member.sha256}
    if member.data is not None:
        return Response(member.data, media_type="application/octet-stream", headers=headers)
    local = container.blobs.local_path(member.sha256)
    if local is not None:
        return _MemberFile(local, media_type="application/octet-stream", headers=headers)
    stream = container.blobs.open(member.sha256)

    def chunks() -> Iterator[bytes]:
        with stream:
            while block := stream.read(1 << 20):
                yield block

    headers["content-length"] = str(member.size)
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


@router.get("/airgap", response_model=AirgapStatus)
def status(principal: SignedIn, container: ContainerDep) -> AirgapStatus:
    """The air-gap folder: bundles waiting (and what they are), applied, refused and why."""
    settings = container.settings
    with container.read_factory() as session:
        return airgap_status(session, principal, settings.airgap, settings.data_dir)


# -- import: a bundle sent to the server, placed into the folder ---------------------------------


class RunRequested(BaseModel):
    mirror: str
    state: str = Field(description="queued | already-running | not-started")
    run_id: int | None = None
    url: str | None = None
    detail: str | None = None


class BundleImported(BaseModel):
    file_name: str = Field(description="its name in the air-gap folder")
    kind: BundleKind
    size: int
    bundle_id: str | None = None
    parent_id: str | None = None
    channel: str | None = None
    runs: list[RunRequested] = Field(description="the runs asked of the channel's mirrors")
    detail: str


@router.post("/airgap/bundles", response_model=BundleImported, status_code=202)
async def import_bundle(
    request: Request,
    principal: SignedIn,
    container: ContainerDep,
    name: Annotated[str | None, Query(max_length=200, description="its name in the folder")] = None,
) -> BundleImported:
    """A package bundle or a ``cve.zip`` (the body) checked and placed into the air-gap folder
    (a bad one is refused, nothing is placed); a package bundle is then applied by a run of every
    mirror whose source is ``airgap:<its channel>``, asked for now. Needs ``mirror:manage``."""
    await run_in_threadpool(_may_import, container, principal)
    staged = await stage_body(request, container, "bundle", container.limits.max_archive_size)
    try:
        placed = await run_in_threadpool(_place, container, principal, staged, name)
    finally:
        staged.discard()
    runs = await run_in_threadpool(_request_runs, container, principal, placed)
    manifest = placed.manifest
    return BundleImported(
        file_name=placed.path.name,
        kind=placed.kind,
        size=placed.size,
        bundle_id=manifest.bundle_id if manifest else None,
        parent_id=manifest.parent_id if manifest else None,
        channel=placed.channel,
        runs=runs,
        detail=_next_step(placed, runs),
    )


def _may_import(container: Container, principal: Principal) -> None:
    with container.read_factory() as session:
        intake.require_import(session, principal)


def _place(
    container: Container, principal: Principal, staged: StagedFile, name: str | None
) -> intake.Placed:
    if not staged.size:
        raise InvalidInputError("send the bundle (a zip) as the request body", field="body")
    settings = container.settings
    placed = intake.accept(staged.path, settings.airgap, settings.data_dir, name)
    with transaction(container.factory) as session:
        intake.record_import(session, principal, placed)
    return placed


def _request_runs(
    container: Container, principal: Principal, placed: intake.Placed
) -> list[RunRequested]:
    if placed.channel is None:
        return []
    with container.read_factory() as session:
        names = [m.name for m in airgap_mirrors(session, placed.channel)]
    return [_request_run(container, principal, name) for name in names]


def _request_run(container: Container, principal: Principal, name: str) -> RunRequested:
    try:
        with transaction(container.factory) as session:
            public = run_public(
                RunService(session, container.secrets).request(principal, name), name
            )
    except RunActiveError as exc:
        detail = f"{exc.detail}: if it has read the folder already, run it again when it ends"
        return RunRequested(
            mirror=name, state="already-running", run_id=exc.extra.get("run"), detail=detail
        )
    except StockadeError as exc:
        return RunRequested(mirror=name, state="not-started", detail=exc.detail)
    hand_off(container.dispatch_run, public.id, "mirror run")
    return RunRequested(mirror=name, state="queued", run_id=public.id, url=public.url)


def _next_step(placed: intake.Placed, runs: list[RunRequested]) -> str:
    if placed.kind == BundleKind.CVE:
        return "a cve.zip: the CVE bundle feed (URL airgap:) applies it at its next sync"
    if not runs:
        return (
            f"no mirror has the source airgap:{placed.channel}: the bundle waits in the folder "
            f"until one does (stockade mirror create NAME --source airgap:{placed.channel} "
            "--mode active) and runs"
        )
    queued = [r.mirror for r in runs if r.state == "queued"]
    return f"runs asked of {', '.join(queued)}" if queued else "no run could be started now"
