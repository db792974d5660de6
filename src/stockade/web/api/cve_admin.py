"""Vulnerability data administration: cve.zip and feed-file imports, export, the name map.

Everything here needs ``cve:manage`` (listing the name map: ``cve:read``).

- ``POST /cve/imports``: the body is a zip, a ``cve.zip`` bundle (``format=bundle``, or no format
  and a ``manifest.json`` in it) or a zip of feed files (``format=osv|nvd|cve5``, or detected from
  the first file). Verified whole, stored and matched in one transaction, synchronously; a body
  over the upload limit is a 413, a bad zip a 422 naming the member, and nothing changes.
- ``GET /cve/export``: a ``cve.zip`` of every advisory, the KEV/EPSS figures and the admin
  name-map entries.
- ``/cve/name-map``: list (filters, cursor), add, remove (an admin entry is deleted, a shipped or
  learned one suppressed), import a CSV or JSON file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import InvalidInputError, TooLargeError
from stockade.db.engine import transaction
from stockade.storage.staging import StagedFile
from stockade.vulns.bundle import BundleService, ImportCounts
from stockade.vulns.models import NameMapEntry
from stockade.vulns.namemap import NameMapService, ensure_shipped
from stockade.vulns.security import BlobSecurityReader
from stockade.vulns.store import SUPPRESS
from stockade.web.api import API
from stockade.web.api.cve_admin_schemas import (
    CveImportResult,
    NameMapChange,
    NameMapEntryCreate,
    NameMapEntryPublic,
    NameMapImportResult,
)
from stockade.web.bodies import stage_body
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn

router = APIRouter(prefix=API, tags=["vulnerabilities"])
NAME_MAP_FILE_MAX = 16 * 1024**2
ImportFormat = Literal["bundle", "osv", "nvd", "cve5"]


def entry_public(row: NameMapEntry) -> NameMapEntryPublic:
    hidden = row.identifier.startswith(SUPPRESS)
    return NameMapEntryPublic(
        id=row.id,
        conda_name=row.conda_name,
        identifier=row.identifier[len(SUPPRESS) :] if hidden else row.identifier,
        origin=row.origin,
        suppressed=hidden,
        note=row.note,
        created_at=row.created_at,
        href=f"{API}/cve/name-map/{row.id}",
    )


async def _stage(request: Request, container: Container, name: str, limit: int) -> StagedFile:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"{name}: larger than the {limit}-byte upload limit", code="too-large")
    staged = await stage_body(request, container, name, limit)
    if not staged.size:
        staged.discard()
        raise InvalidInputError(f"send the {name} as the request body", field="body")
    return staged


def _check_manage(container: Container, principal: Principal) -> None:
    with container.read_factory() as session:
        BundleService(session).require(principal)


@router.post("/cve/imports", response_model=CveImportResult)
async def import_cves(
    request: Request,
    principal: SignedIn,
    container: ContainerDep,
    format: Annotated[
        ImportFormat | None, Query(description="default: bundle if it has a manifest.json")
    ] = None,
) -> CveImportResult:
    """Import a ``cve.zip`` or a zip of feed files (the body), all or nothing."""
    await run_in_threadpool(_check_manage, container, principal)
    staged = await _stage(request, container, "cve.zip", container.limits.max_archive_size)
    try:
        counts = await run_in_threadpool(_import, container, principal, staged.path, format)
    finally:
        staged.discard()
    return CveImportResult(**counts.public())


def _import(
    container: Container, principal: Principal, path: Path, fmt: str | None
) -> ImportCounts:
    security = BlobSecurityReader(container.blobs)
    with transaction(container.factory) as session:
        return BundleService(session, security=security).import_file(principal, path, fmt)


@router.get(
    "/cve/export",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "a cve.zip"}},
)
def export_cves(principal: SignedIn, container: ContainerDep) -> FileResponse:
    """Every advisory, the KEV/EPSS figures and the admin name map, as a ``cve.zip``."""
    folder = Path(tempfile.mkdtemp(prefix="cve-export-", dir=container.blobs.staging_dir()))
    out = folder / "cve.zip"
    try:
        with transaction(container.factory) as session:
            counts = BundleService(session).export(principal, out)
    except BaseException:
        _remove(folder)
        raise
    return FileResponse(
        out,
        media_type="application/zip",
        filename="cve.zip",
        headers={"X-Content-SHA256": counts.sha256},
        background=BackgroundTask(_remove, folder),
    )


def _remove(folder: Path) -> None:
    for item in folder.glob("*"):
        item.unlink(missing_ok=True)
    folder.rmdir()


@router.get("/cve/name-map", response_model=list[NameMapEntryPublic])
def list_name_map(
    response: Response,
    principal: CurrentPrincipal,
    container: ContainerDep,
    conda_name: Annotated[str | None, Query(max_length=256)] = None,
    identifier: Annotated[str | None, Query(max_length=512)] = None,
    origin: Annotated[Literal["shipped", "metadata", "admin"] | None, Query()] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="cursor: the last id seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[NameMapEntryPublic]:
    """Entries by id; ``X-Next-Cursor`` holds the ``after`` of the next page when there is one."""
    ensure_shipped(container.factory, container.read_factory)
    with container.read_factory() as session:
        rows = NameMapService(session).list(
            principal,
            conda_name=conda_name,
            identifier=identifier,
            origin=origin,
            after=after,
            limit=limit,
        )
        found = [entry_public(r) for r in rows]
    if len(found) == limit:
        response.headers["X-Next-Cursor"] = str(found[-1].id)
    return found


@router.post("/cve/name-map", response_model=NameMapChange, status_code=201)
def add_name(
    body: NameMapEntryCreate, principal: SignedIn, container: ContainerDep
) -> NameMapChange:
    """Map a conda name to a purl or CPE ``vendor:product``; matching follows at once."""
    security = BlobSecurityReader(container.blobs)
    with transaction(container.factory) as session:
        row, counts = NameMapService(session, security=security).add(
            principal, body.conda_name, body.identifier, body.note
        )
        return NameMapChange(
            entry=entry_public(row),
            removed=False,
            matches_added=counts.added,
            matches_removed=counts.removed,
        )


@router.delete("/cve/name-map/{entry_id}", response_model=NameMapChange)
def remove_name(
    entry_id: Annotated[int, PathParam(ge=1, le=2**62)],
    principal: SignedIn,
    container: ContainerDep,
) -> NameMapChange:
    """Delete an admin entry (``removed``), or suppress a shipped or learned one (``entry`` is
    the suppression, itself removable)."""
    security = BlobSecurityReader(container.blobs)
    with transaction(container.factory) as session:
        row, counts = NameMapService(session, security=security).remove(principal, entry_id)
        removed = row.id == entry_id
        return NameMapChange(
            entry=None if removed else entry_public(row),
            removed=removed,
            matches_added=counts.added,
            matches_removed=counts.removed,
        )


@router.post("/cve/name-map/import", response_model=NameMapImportResult)
async def import_names(
    request: Request, principal: SignedIn, container: ContainerDep
) -> NameMapImportResult:
    """Add the entries of a CSV (``conda,identifier,note``) or JSON file, all or nothing."""
    await run_in_threadpool(_check_manage, container, principal)
    staged = await _stage(request, container, "name map file", NAME_MAP_FILE_MAX)
    try:
        data = staged.path.read_bytes()
    finally:
        staged.discard()
    return await run_in_threadpool(_import_names, container, principal, data)


def _import_names(container: Container, principal: Principal, data: bytes) -> NameMapImportResult:
    security = BlobSecurityReader(container.blobs)
    with transaction(container.factory) as session:
        added, known, counts = NameMapService(session, security=security).import_file(
            principal, data
        )
    return NameMapImportResult(
        rows=added + known,
        added=added,
        already_there=known,
        matches_added=counts.added,
        matches_removed=counts.removed,
    )
