"""Uploads: multipart (all or nothing), per-file batches (each file accepted or refused), streamed PUT.

Every path stages the bytes (hashed as they arrive), validates each file outside any transaction,
moves the good ones into the blob store, then records them in one transaction (one publication
request per subdir, one scan request per file). A crash between the steps leaves at most an
unreferenced blob (``stockade fsck``); once the transaction commits, nothing is lost.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.channels.upload import Refusal, UploadService, ValidatedUpload, validate_upload
from stockade.container import Container
from stockade.core.errors import InvalidInputError, StockadeError
from stockade.core.faults import crash_point
from stockade.core.handoff import hand_off
from stockade.db.engine import transaction
from stockade.storage.staging import StagedFile
from stockade.web.api import API
from stockade.web.api.channels import base_url
from stockade.web.api.presenters import artifact_public, channel_signs
from stockade.web.api.schemas import ArtifactPublic, UploadResult
from stockade.web.bodies import MULTIPART_SLACK, read_staged_form, stage_body
from stockade.web.deps import ContainerDep, SignedIn
from stockade.web.errors import PROBLEM_TYPE, STATUS

router = APIRouter(prefix=API, tags=["files"])
MAX_FILES_PER_REQUEST = 1000
Recorded = tuple[Artifact, str, bool]  # artifact, channel name, whether the channel signs


class UploadStatus(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"


class UploadOutcome(BaseModel):
    """One file of a per-file batch: accepted (its artifact) or refused (an RFC 9457 problem)."""

    filename: str
    status: UploadStatus
    artifact: ArtifactPublic | None = None
    problem: dict[str, Any] | None = None


class UploadBatchResult(BaseModel):
    accepted: int
    refused: int
    files: list[UploadOutcome]


def _check_target(container: Container, principal: Principal, channel: str) -> None:
    with container.read_factory() as session:
        UploadService(session, container.blobs).check_target(principal, channel)


def _validate(
    container: Container,
    staged: list[StagedFile],
    *,
    expected_sha256: str | None = None,
    expected_subdir: str | None = None,
    each: bool,
) -> tuple[list[ValidatedUpload], list[Refusal]]:
    """Validate every file, then store the good ones; the staging files are gone after.
    Without ``each``, the first bad file refuses the request (nothing stored)."""
    validated: list[ValidatedUpload] = []
    refused: list[Refusal] = []
    try:
        for s in staged:
            try:
                validated.append(
                    validate_upload(
                        s,
                        container.limits,
                        expected_sha256=expected_sha256,
                        expected_subdir=expected_subdir,
                    )
                )
            except StockadeError as exc:
                if not each:
                    raise
                refused.append(Refusal(s, exc))
        for upload in validated:
            container.blobs.put_file(upload.staged.path, upload.staged.sha256)
        crash_point("upload:after-blob")
    finally:
        for s in staged:
            s.discard()
    return validated, refused


def _finish_uploads(
    container: Container,
    principal: Principal,
    channel: str,
    staged: list[StagedFile],
    *,
    force: bool,
    expected_sha256: str | None = None,
    expected_subdir: str | None = None,
) -> list[Recorded]:
    """All or nothing: validate every file first (nothing stored if one fails), then record."""
    validated, _ = _validate(
        container,
        staged,
        expected_sha256=expected_sha256,
        expected_subdir=expected_subdir,
        each=False,
    )
    with transaction(container.factory) as session:
        service = UploadService(session, container.blobs)
        artifacts = service.record_all(principal, channel, validated, force=force)
        signs = channel_signs(session, artifacts[0].channel_id) if artifacts else False
        return [(a, channel, signs) for a in artifacts]


def _finish_each(
    container: Container,
    principal: Principal,
    channel: str,
    staged: list[StagedFile],
    *,
    force: bool,
    expected_subdir: str | None,
) -> tuple[list[tuple[StagedFile, Recorded]], list[Refusal]]:
    """Each file on its own: the good ones are recorded (one transaction), the others named.
    Each recorded artifact comes with the staged file it was made of."""
    validated, refused = _validate(container, staged, expected_subdir=expected_subdir, each=True)
    if not validated:
        return [], refused
    with transaction(container.factory) as session:
        service = UploadService(session, container.blobs)
        artifacts, conflicts = service.record_each(principal, channel, validated, force=force)
        signs = channel_signs(session, artifacts[0].channel_id) if artifacts else False
        conflicting = {r.staged.path for r in conflicts}
        kept = [v.staged for v in validated if v.staged.path not in conflicting]
        recorded = [(s, (a, channel, signs)) for s, a in zip(kept, artifacts, strict=True)]
        return recorded, refused + conflicts


def problem_body(exc: StockadeError) -> dict[str, Any]:
    """The RFC 9457 body the error would have as a whole response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + exc.code,
        "title": exc.title,
        "status": STATUS[exc.kind],
        "detail": exc.detail,
        "code": exc.code,
    }
    for key, value in exc.extra.items():
        if value is not None:
            body[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return body


@router.post("/channels/{channel:path}/files", response_model=UploadResult, status_code=201)
async def upload_files(
    channel: str,
    request: Request,
    principal: SignedIn,
    container: ContainerDep,
    force: Annotated[bool, Query(description="replace existing files (needs manage)")] = False,
    subdir: Annotated[str | None, Query(description="refuse packages of another subdir")] = None,
) -> UploadResult:
    """All or nothing: one bad file refuses the request and nothing is stored."""
    await run_in_threadpool(_check_target, container, principal, channel)
    staged = await _staged_files(request, container)
    rows = await run_in_threadpool(
        _finish_uploads, container, principal, channel, staged, force=force, expected_subdir=subdir
    )
    hand_off(container.dispatch_match, [a.id for a, _, _ in rows], "matching of artifacts")
    base = base_url(request)
    return UploadResult(uploaded=[artifact_public(a, ch, base, signs=s) for a, ch, s in rows])


@router.post("/channels/{channel:path}/uploads", response_model=UploadBatchResult)
async def upload_each(
    channel: str,
    request: Request,
    principal: SignedIn,
    container: ContainerDep,
    force: Annotated[bool, Query(description="replace existing files (needs manage)")] = False,
    subdir: Annotated[str | None, Query(description="refuse packages of another subdir")] = None,
) -> UploadBatchResult:
    """Per file: each good file is recorded, each bad one is named with its problem (200)."""
    await run_in_threadpool(_check_target, container, principal, channel)
    staged = await _staged_files(request, container)
    rows, refused = await run_in_threadpool(
        _finish_each, container, principal, channel, staged, force=force, expected_subdir=subdir
    )
    hand_off(container.dispatch_match, [a.id for _, (a, _, _) in rows], "matching of artifacts")
    base = base_url(request)
    outcomes = _outcomes(staged, rows, refused, base)
    accepted = sum(o.status is UploadStatus.ACCEPTED for o in outcomes)
    return UploadBatchResult(accepted=accepted, refused=len(outcomes) - accepted, files=outcomes)


def _outcomes(
    staged: list[StagedFile],
    rows: list[tuple[StagedFile, Recorded]],
    refused: list[Refusal],
    base: str,
) -> list[UploadOutcome]:
    """One outcome per file sent, in the order sent (two files may share a name)."""
    done = [
        (
            s.path,
            UploadOutcome(
                filename=s.filename,
                status=UploadStatus.ACCEPTED,
                artifact=artifact_public(a, ch, base, signs=signs),
            ),
        )
        for s, (a, ch, signs) in rows
    ]
    bad = [
        (
            r.staged.path,
            UploadOutcome(
                filename=r.filename, status=UploadStatus.REFUSED, problem=problem_body(r.error)
            ),
        )
        for r in refused
    ]
    position = {s.path: i for i, s in enumerate(staged)}
    ordered = sorted(done + bad, key=lambda pair: position.get(pair[0], len(staged)))
    return [outcome for _, outcome in ordered]


async def _staged_files(request: Request, container: Container) -> list[StagedFile]:
    """The ``files`` parts of a multipart body, staged in the data folder (bounded as read)."""
    limits = container.settings.upload
    form = await read_staged_form(
        request,
        container.blobs.staging_dir(),
        max_file_size=limits.max_archive_size,
        max_request_size=limits.max_request_size or limits.max_archive_size + MULTIPART_SLACK,
        max_files=MAX_FILES_PER_REQUEST,
    )
    staged = [s for name, s in form.files if name == "files"]
    for name, other in form.files:
        if name != "files":
            other.discard()
    if not staged:
        raise InvalidInputError(
            "send one or more package files in `files` form fields",
            code="upload:no-files",
            field="files",
        )
    return staged


@router.put(
    "/channels/{channel:path}/files/{filename}", response_model=ArtifactPublic, status_code=201
)
async def put_file(
    channel: str,
    filename: str,
    request: Request,
    principal: SignedIn,
    container: ContainerDep,
    sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None,
    force: bool = False,
    subdir: Annotated[str | None, Query(description="refuse packages of another subdir")] = None,
) -> ArtifactPublic:
    """Streamed upload of one file; the body is the archive. ``sha256`` is checked if given."""
    await run_in_threadpool(_check_target, container, principal, channel)
    staged = await stage_body(request, container, filename, container.limits.max_archive_size)
    rows = await run_in_threadpool(
        _finish_uploads,
        container,
        principal,
        channel,
        [staged],
        force=force,
        expected_sha256=sha256,
        expected_subdir=subdir,
    )
    hand_off(container.dispatch_match, [a.id for a, _, _ in rows], "matching of artifacts")
    artifact, name, signs = rows[0]
    return artifact_public(artifact, name, base_url(request), signs=signs)
