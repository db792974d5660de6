"""A channel's files, ``/channels/{name}/files``: upload, copy, move and remove.

Uploading is a plain ``multipart/form-data`` form (it works without JavaScript);
``static/upload.js`` enhances it with drag and drop and a progress bar per file, sending each file
to the REST API's upload route. Copy, move and remove take the ticked files, or a package name
with an optional version spec and subdir, as the CLI does.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.artifacts import ArtifactService, Selection
from stockade.channels.service import ChannelService
from stockade.channels.upload import UploadService, ValidatedUpload, validate_upload
from stockade.container import Container
from stockade.core.errors import InvalidInputError, StockadeError, TooLargeError
from stockade.core.handoff import hand_off
from stockade.db.engine import transaction
from stockade.storage.staging import StagedFile
from stockade.web.bodies import MULTIPART_SLACK, BodyTooLargeError, read_staged_form
from stockade.web.csrf import CsrfError, session_csrf, tokens_match
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.channel_admin import (
    actions_for,
    channel_change,
    channel_name,
    is_package_path,
    writable_channels,
)
from stockade.web.ui.forms import FormError, FormList, FormText, clean, done, notice_of, path_part
from stockade.web.ui.pages import package_page
from stockade.web.ui.render import PAGE_ERRORS, error_page, guarded, render, sentence

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 200
MAX_FILES = 100  # files in one form upload


def files_url(channel: str) -> str:
    return f"/channels/{channel}/files"


def _after(value: str) -> int:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else 0


def files_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    package = clean(request.query_params.get("package", ""), 256)
    after = _after(request.query_params.get("after", ""))
    with container.read_factory() as session:
        channel = ChannelService(session).get(
            principal, channel_name(name), Permission.CHANNEL_READ
        )
        actions = actions_for(principal, channel)
        service = ArtifactService(session)
        files = service.list_files(
            channel,
            name=package or None,
            after_id=after,
            limit=PAGE_SIZE + 1,
            with_pending=actions.upload,
        )
        context = {
            "title": f"Files · {channel.name}",
            "channel": channel,
            "actions": actions,
            "files": files[:PAGE_SIZE],
            "next_after": files[PAGE_SIZE - 1].id if len(files) > PAGE_SIZE else None,
            "package": package,
            "targets": writable_channels(session, principal, but=channel.id)
            if actions.signed_in
            else [],
            "error": error,
            "notice": None if error else notice_of(request),
        }
    scripts = ("upload.js",) if actions.upload else ()
    status = error.status if error else 200
    return render(request, "channel_files.html", context, status=status, scripts=scripts)


@router.get("/channels/{name:path}/files")
def show_files(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    if is_package_path(name):  # the package called "files"
        channel = name.strip("/").removesuffix("/packages")
        build = request.query_params.get("build", "")
        return package_page(request, channel, "files", principal, container, build)
    return guarded(request, principal, lambda: files_page(request, container, principal, name))


# --- upload ---------------------------------------------------------------------------------


def _store(
    container: Container,
    principal: Principal,
    channel: str,
    staged: list[StagedFile],
    force: bool,
) -> list[int]:
    """Validate every file (nothing stored if one fails), store them, record them together."""
    try:
        validated: list[ValidatedUpload] = [validate_upload(s, container.limits) for s in staged]
        for upload in validated:
            container.blobs.put_file(upload.staged.path, upload.staged.sha256)
    finally:
        for s in staged:
            s.discard()
    with transaction(container.factory) as session:
        artifacts = UploadService(session, container.blobs).record_all(
            principal, channel, validated, force=force
        )
        return [a.id for a in artifacts]


async def _staged(
    request: Request, container: Container
) -> tuple[dict[str, str], list[StagedFile]]:
    limits = container.settings.upload
    form = await read_staged_form(
        request,
        container.blobs.staging_dir(),
        max_file_size=limits.max_archive_size,
        max_request_size=limits.max_request_size or limits.max_archive_size + MULTIPART_SLACK,
        max_files=MAX_FILES,
    )
    staged = [s for key, s in form.files if key == "files" and s.filename]
    for key, other in form.files:
        if key != "files" or not other.filename:
            other.discard()
    return dict(form.fields), staged


def _refused(
    request: Request, container: Container, principal: Principal, name: str, exc: StockadeError
) -> Response:
    status, _ = PAGE_ERRORS.get(exc.kind, (400, exc.title))
    error = FormError(sentence(exc.detail), status, "upload")
    return guarded(
        request, principal, lambda: files_page(request, container, principal, name, error=error)
    )


@router.post("/channels/{name:path}/files")
async def upload(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    """The no-JavaScript upload: a multipart form of ``files`` and the CSRF token."""
    channel = name.strip("/")
    if principal.is_anonymous:
        return RedirectResponse(f"/login?next={path_part(files_url(channel))}", status_code=303)
    try:
        ids = await _upload(request, container, principal, channel)
    except CsrfError as exc:
        return error_page(request, 403, exc.title, exc.detail)
    except BodyTooLargeError as exc:
        error = TooLargeError(
            f"the upload is larger than the {exc.limit}-byte limit", code="request:too-large"
        )
        return _refused(request, container, principal, channel, error)
    except StockadeError as exc:
        return _refused(request, container, principal, channel, exc)
    hand_off(container.dispatch_match, ids, "matching of artifacts")
    container.notify_changes()
    return done(files_url(channel), "files-uploaded")


async def _upload(
    request: Request, container: Container, principal: Principal, channel: str
) -> list[int]:
    """A web session, may the principal upload here (both before reading the body), the CSRF
    token of the form, then the files."""
    expected = await run_in_threadpool(session_csrf, request)
    if expected is None:  # a bearer token or no session: no form of ours sent this
        raise CsrfError("the form was missing its security token or it has expired; try again")
    await run_in_threadpool(_check_target, container, principal, channel)
    fields, staged = await _staged(request, container)
    try:
        if not tokens_match(expected, fields.get("csrf_token")):
            raise CsrfError("the form was missing its security token or it has expired; try again")
        if not staged:
            raise InvalidInputError("choose one or more package files to upload", field="files")
    except StockadeError:
        for s in staged:
            s.discard()
        raise
    force = fields.get("force") == "yes"  # replace files that are there: managers only
    return await run_in_threadpool(_store, container, principal, channel, staged, force)


def _check_target(container: Container, principal: Principal, channel: str) -> None:
    with container.read_factory() as session:
        UploadService(session, container.blobs).check_target(principal, channel_name(channel))


# --- copy, move, remove ---------------------------------------------------------------------


def _selection(files: list[str], package: str, version: str, subdir: str) -> Selection:
    return Selection(
        files=[clean(f, 512) for f in files if f.strip()][:10_000],
        name=clean(package, 256) or None,
        version=clean(version, 256) or None,
        subdir=clean(subdir, 64) or None,
    )


def _bulk(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    *,
    op: str,
    selection: Selection,
    target: str = "",
    skip_existing: bool = False,
) -> Response:
    channel = name.strip("/")
    copied: list[int] = []

    def make(session: Session) -> tuple[str, str]:
        service = ArtifactService(session)
        if op == "remove":
            service.remove(principal, channel_name(channel), selection)
            return files_url(channel), "files-removed"
        if not target:
            raise InvalidInputError("choose the channel to copy or move to", field="target")
        result = service.copy(
            principal,
            channel_name(channel),
            clean(target, 512),
            selection,
            move=op == "move",
            skip_existing=skip_existing,
        )
        copied.extend(a.id for a in result.artifacts)
        return files_url(channel), "files-moved" if op == "move" else "files-copied"

    values = {
        "package": selection.name or "",
        "version": selection.version or "",
        "subdir": selection.subdir or "",
        "target": target,
    }
    response = channel_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=files_url(channel),
        redraw=lambda e: files_page(request, container, principal, channel, error=e),
        form="bulk",
        values=values,
    )
    if copied:
        # a copy is matched in its new channel, as the API does
        hand_off(container.dispatch_match, copied, "matching of artifacts")
    return response


@router.post("/channels/{name:path}/remove")
def remove(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    files: FormList = [],  # noqa: B006 (FastAPI copies defaults)
    package: FormText = "",
    version: FormText = "",
    subdir: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    selection = _selection(files, package, version, subdir)
    return _bulk(request, principal, container, name, csrf_token, op="remove", selection=selection)


@router.post("/channels/{name:path}/files/{op}")
def copy_or_move(
    request: Request,
    name: str,
    op: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    files: FormList = [],  # noqa: B006 (FastAPI copies defaults)
    package: FormText = "",
    version: FormText = "",
    subdir: FormText = "",
    target: FormText = "",
    skip_existing: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    """``…/files/copy`` and ``…/files/move``: the ticked files (or a package) to another channel."""
    if op not in ("copy", "move"):
        return error_page(request, 404, "Not found", "There is nothing at this address.")
    return _bulk(
        request,
        principal,
        container,
        name,
        csrf_token,
        op=op,
        selection=_selection(files, package, version, subdir),
        target=target,
        skip_existing=skip_existing == "yes",
    )
