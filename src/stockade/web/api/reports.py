"""Vulnerability reports: of an environment, of a package's tree, of a channel; SBOMs (SPEC §7).

Anyone who can read the channels may ask (anonymous callers too, for public channels, as with
repodata); a channel the caller cannot read answers as one that does not exist.

``POST /reports/env`` takes a multipart upload (``file``, optional ``kind``, ``channel`` and
``platform`` fields) or JSON ``{"specs": [...], "channels": [...], "platform": "linux-64"}``;
``format`` is ``json`` (default), ``csv``, ``cyclonedx`` or ``spdx``. Bodies over 5 MiB get 413.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.vulns.envfiles import EnvironmentInput, parse_environment_file, parse_specs
from stockade.vulns.reports import (
    EnvironmentReport,
    channel_report,
    package_tree,
    report_environment,
)
from stockade.web.api import API
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.errors import problem
from stockade.web.report_files import MEDIA, read_bounded, rendered

router = APIRouter(prefix=API, tags=["reports"])
ReportFormat = Literal["json", "csv", "cyclonedx", "spdx"]
SbomFormat = Literal["cyclonedx", "spdx"]
Channels = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=512)]] | None,
    Query(alias="channel", description="channels to resolve against, in priority order"),
]
Platform = Annotated[str | None, Query(max_length=32, description="linux-64 by default")]
PackageName = Annotated[str, Path(min_length=1, max_length=256)]


class SpecsRequest(BaseModel):
    specs: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(max_length=1000)
    channels: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(
        default_factory=list, max_length=50
    )
    platform: str | None = Field(default=None, max_length=32)


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "kind": {
                            "type": "string",
                            "enum": ["environment", "explicit", "conda-lock", "pixi"],
                        },
                        "channel": {"type": "array", "items": {"type": "string"}},
                        "platform": {"type": "string"},
                    },
                }
            },
            "application/json": {"schema": SpecsRequest.model_json_schema()},
        },
    },
    "responses": {
        "200": {
            "description": "the report",
            "content": {media.split(";")[0]: {} for media in MEDIA.values()},
        }
    },
}


async def _from_form(request: Request, body: bytes) -> tuple[EnvironmentInput, list[str], str]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=60)
    except (MultiPartException, HTTPException, ValueError, KeyError) as exc:
        raise InvalidInputError(
            f"the multipart body cannot be read: {getattr(exc, 'detail', exc)}",
            code="report:bad-body",
        ) from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInputError("send the environment file as the 'file' field", field="file")
        data = await upload.read()
        kind = form.get("kind")
        env = parse_environment_file(
            data, upload.filename, str(kind) if isinstance(kind, str) and kind else None
        )
        channels = [str(c) for c in form.getlist("channel") if isinstance(c, str) and c]
        platform = form.get("platform")
    finally:
        await form.close()
    return env, channels, str(platform) if isinstance(platform, str) else ""


def _from_json(body: bytes) -> tuple[EnvironmentInput, list[str], str]:
    try:
        request = SpecsRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInputError(
            f"{where}: {first.get('msg')}", code="request:invalid", field=where
        ) from None
    env = parse_specs(request.specs, platform=request.platform)
    return env, list(request.channels), request.platform or ""


def _environment_report(
    container: Container,
    principal: Principal,
    env: EnvironmentInput,
    channels: list[str],
    platform: str | None,
) -> EnvironmentReport:
    with container.read_factory() as session:
        return report_environment(session, principal, env, channels=channels, platform=platform)


@router.post("/reports/env", response_class=Response, openapi_extra=_BODY_DOC)
async def environment_report_endpoint(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    channel: Channels = None,
    platform: Platform = None,
    format: ReportFormat = "json",
) -> Response:
    """Every vulnerability of an environment, with the path from the root spec to each."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data", "application/json"):
        return problem(
            415,
            "Unsupported media type",
            "send multipart/form-data (an environment file) or application/json (specs)",
            code="report:media-type",
        )
    body = await read_bounded(request)
    if content_type == "multipart/form-data":
        env, channels, chosen = await _from_form(request, body)
    else:
        env, channels, chosen = _from_json(body)
    report = await run_in_threadpool(
        _environment_report,
        container,
        principal,
        env,
        list(channel or []) or channels,
        platform or chosen or None,
    )
    return rendered(report, format, f"environment-{report.platform}")


@router.get(
    "/channels/{channel:path}/packages/{name}/tree",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def package_tree_endpoint(
    channel: str,
    name: PackageName,
    principal: CurrentPrincipal,
    container: ContainerDep,
    version: Annotated[str, Query(min_length=1, max_length=128)],
    build: Annotated[str, Query(min_length=1, max_length=256)],
    subdir: Annotated[str, Query(min_length=1, max_length=64)] = "noarch",
    platform: Platform = None,
) -> Response:
    """One artifact's dependency tree: its own highest score beside the highest reachable
    through its dependencies (``reachable``: score, severity, vuln id, path)."""
    with container.read_factory() as session:
        found = package_tree(
            session, principal, channel, name, version, build, subdir, platform=platform
        )
    return Response(orjson.dumps(found.to_json()), media_type="application/json")


@router.get(
    "/channels/{channel:path}/packages/{name}/sbom",
    response_class=Response,
    responses={
        200: {"content": {"application/vnd.cyclonedx+json": {}, "application/spdx+json": {}}}
    },
)
def package_sbom_endpoint(
    channel: str,
    name: PackageName,
    principal: CurrentPrincipal,
    container: ContainerDep,
    version: Annotated[str, Query(min_length=1, max_length=128)],
    build: Annotated[str, Query(min_length=1, max_length=256)],
    subdir: Annotated[str, Query(min_length=1, max_length=64)] = "noarch",
    platform: Platform = None,
    format: SbomFormat = "cyclonedx",
) -> Response:
    """An SBOM of the artifact and its resolved dependencies."""
    with container.read_factory() as session:
        found = package_tree(
            session, principal, channel, name, version, build, subdir, platform=platform
        )
    return rendered(found.report, format, f"{found.name}-{found.version}-{found.build}")


@router.get(
    "/channels/{channel:path}/vulnerabilities",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def channel_report_endpoint(
    channel: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """Every matched artifact of the channel: one row per (artifact, vulnerability)."""
    with container.read_factory() as session:
        row = ChannelService(session).get(principal, channel, Permission.CHANNEL_READ)
        report = channel_report(session, row)
    return rendered(report, format, f"{row.name.replace('/', '-')}-vulnerabilities")
