"""The environment report page (SPEC §7): upload an environment file or type specs, see every
vulnerability of the resolved environment with the path from the root, or download the report.

``GET /reports/env`` draws the form: a file (``environment.yml``, an explicit list, a conda-lock or
a pixi lock) or specs one per line, the channels to resolve against (those the viewer can read),
the platform, and what to get back: the report on the page, or a JSON, CSV, CycloneDX or SPDX
download (the same bytes as ``POST /api/v1/reports/env``). ``POST /reports/env`` answers.

Anyone who can read a channel may use it, anonymous visitors too for public channels, as with the
API. The form changes nothing, but a signed-in viewer's form still carries the session's CSRF
token and is refused without it (every signed-in form does).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.responses import Response

from stockade.auth.principal import Principal
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import ErrorKind, InvalidInputError, StockadeError, TooLargeError
from stockade.vulns.envfiles import EnvironmentInput, parse_environment_file, parse_specs
from stockade.vulns.reports import EnvironmentReport, report_environment
from stockade.vulns.trees import PLATFORMS
from stockade.web.csrf import FIELD, require_session_token
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.report_files import MAX_BODY, read_bounded, rendered
from stockade.web.ui.render import PAGE_ERRORS, error_page, login_redirect, render, sentence

router = APIRouter(include_in_schema=False)
PAGE = "/reports/env"
FORMATS = ("page", "json", "csv", "cyclonedx", "spdx")
KINDS = ("", "environment", "explicit", "conda-lock", "pixi")


def _channels(container: Container, principal: Principal) -> list[str]:
    with container.read_factory() as session:
        return [c.name for c in ChannelService(session).list_visible(principal)]


def _form_page(
    request: Request,
    container: Container,
    principal: Principal,
    *,
    typed: dict[str, Any] | None = None,
    error: str | None = None,
    report: EnvironmentReport | None = None,
    status: int = 200,
) -> Response:
    context = {
        "title": "Environment report",
        "channels": _channels(container, principal),
        "platforms": PLATFORMS,
        "formats": FORMATS,
        "kinds": KINDS,
        "typed": typed
        or {"channels": [], "platform": "", "format": "page", "specs": "", "kind": ""},
        "error": error,
        "report": report,
    }
    return render(request, "report_env.html", context, status=status)


@router.get(PAGE)
def report_form(request: Request, principal: CurrentPrincipal, container: ContainerDep) -> Response:
    return _form_page(request, container, principal)


async def _read_form(request: Request) -> tuple[dict[str, Any], bytes | None, str | None]:
    body = await read_bounded(request)  # chunked bodies too: never more than MAX_BODY on disk

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=80)
    except (MultiPartException, HTTPException, ValueError, KeyError) as exc:
        raise InvalidInputError(
            f"the form cannot be read: {getattr(exc, 'detail', exc)}", code="report:bad-body"
        ) from None
    try:
        typed: dict[str, Any] = {
            "csrf": str(form.get(FIELD) or ""),
            "specs": str(form.get("specs") or "")[:20_000],
            "channels": [str(c) for c in form.getlist("channel") if isinstance(c, str) and c],
            "platform": str(form.get("platform") or ""),
            "format": str(form.get("format") or "page"),
            "kind": str(form.get("kind") or ""),
        }
        upload = form.get("file")
        data: bytes | None = None
        filename: str | None = None
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(MAX_BODY + 1)
            filename = upload.filename
            if len(data) > MAX_BODY:
                raise TooLargeError(f"the file is larger than {MAX_BODY // (1024 * 1024)} MiB")
    finally:
        await form.close()
    return typed, data, filename


def _environment(
    typed: dict[str, Any], data: bytes | None, filename: str | None
) -> EnvironmentInput:
    if typed["format"] not in FORMATS:
        raise InvalidInputError(f"unknown format {typed['format']!r}", field="format")
    if typed["kind"] not in KINDS:
        raise InvalidInputError(f"unknown file kind {typed['kind']!r}", field="kind")
    if data:
        return parse_environment_file(data, filename, typed["kind"] or None)
    specs = [line.strip() for line in typed["specs"].splitlines() if line.strip()]
    if not specs:
        raise InvalidInputError(
            "choose an environment file or type at least one spec", field="specs"
        )
    return parse_specs(specs, platform=typed["platform"] or None)


def _report(
    container: Container, principal: Principal, env: EnvironmentInput, typed: dict[str, Any]
) -> EnvironmentReport:
    with container.read_factory() as session:
        return report_environment(
            session,
            principal,
            env,
            channels=typed["channels"],
            platform=typed["platform"] or None,
        )


@router.post(PAGE)
async def report_submit(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    typed: dict[str, Any] | None = None
    try:
        typed, data, filename = await _read_form(request)
        if principal.via == "session":
            require_session_token(request, typed["csrf"])
        env = _environment(typed, data, filename)
        report = await run_in_threadpool(_report, container, principal, env, typed)
    except StockadeError as exc:
        if exc.kind is ErrorKind.UNAUTHENTICATED and principal.is_anonymous:
            return login_redirect(request)  # a channel that needs signing in, as pages do
        status, title = PAGE_ERRORS.get(exc.kind, (400, exc.title))
        if typed is None or exc.code == "csrf:invalid":
            return error_page(request, status, title, exc.detail)
        message, shown = sentence(exc.detail), typed
        return await run_in_threadpool(
            lambda: _form_page(
                request, container, principal, typed=shown, error=message, status=status
            )
        )
    if typed["format"] != "page":
        return rendered(report, typed["format"], f"environment-{report.platform}")
    return await run_in_threadpool(
        lambda: _form_page(request, container, principal, typed=typed, report=report)
    )
