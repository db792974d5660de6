"""The conda channel protocol under ``/conda/`` (SPEC §2): index files, shards, packages."""

from __future__ import annotations

import re

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stockade.auth.access import AccessService, ChannelRef
from stockade.auth.permissions import Level, Privacy
from stockade.auth.principal import Principal
from stockade.channels.locator import ChannelFiles
from stockade.conda.repodata import empty_repodata_json
from stockade.container import Container
from stockade.core.errors import StockadeError
from stockade.web.channel.responses import IMMUTABLE, BlobResponder
from stockade.web.credentials import credentials_from
from stockade.web.errors import error_response, problem

ROOT_FILES = {"channeldata.json", "notices.json"}
INDEX_TYPES = {
    "repodata.json": "application/json",
    "repodata.json.zst": "application/zstd",
    "repodata.json.bz2": "application/x-bzip2",
    "repodata_shards.msgpack.zst": "application/zstd",
    "run_exports.json": "application/json",
}
SHARD_RE = re.compile(r"^([0-9a-f]{64})\.msgpack\.zst$")
EMPTY_NOARCH = empty_repodata_json("noarch")


def _not_found(what: str) -> Response:
    return problem(404, "Not found", f"{what} not found", code="conda:not-found")


async def _principal(request: Request, container: Container) -> Principal:
    authenticator = container.extras["authenticator"]
    creds = credentials_from(request)
    return await anyio.to_thread.run_sync(authenticator.authenticate, creds)  # type: ignore[attr-defined]


def _level(container: Container, principal: Principal, ref: ChannelRef) -> Level:
    with container.read_factory() as session:
        return AccessService(session).channel_level(principal, ref)


async def _check_read(
    request: Request, container: Container, files: ChannelFiles
) -> Response | None:
    """None when the caller may read the channel, else the response to send (401 or 404)."""
    ref = files.ref
    if (
        ref.privacy == Privacy.PUBLIC
        and "authorization" not in request.headers
        and "stockade.url_token" not in request.scope
    ):
        return None
    try:
        principal = await _principal(request, container)
    except StockadeError as exc:
        return error_response(exc)
    if ref.privacy == Privacy.PUBLIC:
        return None
    level = await anyio.to_thread.run_sync(_level, container, principal, ref)
    if level >= Level.READ:
        return None
    if principal.is_anonymous:
        return problem(
            401,
            "Authentication required",
            f"channel {ref.name!r} needs a token",
            code="unauthenticated",
        )
    return _not_found(f"channel {ref.name!r}")


async def conda_endpoint(request: Request) -> Response:
    container: Container = request.app.state.container
    responder: BlobResponder = request.app.state.blob_responder
    segments = [s for s in request.path_params["path"].split("/") if s]
    if len(segments) < 2:
        return _not_found("path")
    if segments[-1] in ROOT_FILES:
        channel_name, rest = "/".join(segments[:-1]), segments[-1:]
    elif len(segments) >= 4 and segments[-2] == "shards":
        channel_name, rest = "/".join(segments[:-3]), segments[-3:]
    elif len(segments) >= 3:
        channel_name, rest = "/".join(segments[:-2]), segments[-2:]
    else:
        return _not_found("path")
    files = await anyio.to_thread.run_sync(container.locator.channel, channel_name)
    if files is None:
        return _not_found(f"channel {channel_name!r}")
    denied = await _check_read(request, container, files)
    if denied is not None:
        return denied
    private = files.ref.privacy != Privacy.PUBLIC
    if len(rest) == 1:
        return await _root_file(request, responder, files, rest[0], private)
    if len(rest) == 3:
        return await _shard(request, responder, container, files, rest[0], rest[2])
    return await _subdir_file(request, responder, container, files, rest[0], rest[1], private)


def _index_cache_control(container: Container, private: bool) -> str:
    scope = "private" if private else "public"
    return f"{scope}, max-age={container.settings.publication.index_max_age}"


async def _root_file(
    request: Request, responder: BlobResponder, files: ChannelFiles, name: str, private: bool
) -> Response:
    container: Container = request.app.state.container
    sha = files.channeldata if name == "channeldata.json" else files.notices
    if sha is None:
        body = (
            b'{"notices":[]}'
            if name == "notices.json"
            else b'{"channeldata_version":1,"packages":{},"subdirs":[]}'
        )
        return Response(
            body,
            media_type="application/json",
            headers={"cache-control": _index_cache_control(container, private)},
        )
    return await responder.respond(
        request,
        sha,
        modified=0.0,
        cache_control=_index_cache_control(container, private),
        content_type="application/json",
        in_memory=True,
    )


async def _subdir_file(
    request: Request,
    responder: BlobResponder,
    container: Container,
    files: ChannelFiles,
    subdir: str,
    filename: str,
    private: bool,
) -> Response:
    ref = files.ref
    if filename in INDEX_TYPES:
        pointer = await anyio.to_thread.run_sync(container.locator.index, ref.id, subdir)
        if pointer is None:
            if subdir == "noarch" and filename == "repodata.json":
                return Response(EMPTY_NOARCH, media_type="application/json")
            return _not_found(f"{subdir}/{filename}")
        sha: str | None = {
            "repodata.json": pointer.repodata,
            "repodata.json.zst": pointer.repodata_zst,
            "repodata.json.bz2": pointer.repodata_bz2,
            "repodata_shards.msgpack.zst": pointer.shard_index,
            "run_exports.json": pointer.run_exports,
        }[filename]
        if filename == "repodata.json.bz2" and sha is None:
            sha = await anyio.to_thread.run_sync(container.locator.bz2, ref.id, subdir, pointer)
        if sha is None:
            return _not_found(f"{subdir}/{filename}")
        return await responder.respond(
            request,
            sha,
            modified=pointer.published_at,
            cache_control=_index_cache_control(container, private),
            content_type=INDEX_TYPES[filename],
            in_memory=True,
        )
    if not filename.endswith((".conda", ".tar.bz2")):
        return _not_found(f"{subdir}/{filename}")
    artifact = await anyio.to_thread.run_sync(container.locator.artifact, ref.id, subdir, filename)
    if artifact is None:
        return _not_found(f"{subdir}/{filename}")
    cache_control = IMMUTABLE.replace("public", "private") if private else IMMUTABLE
    ctype = "application/octet-stream" if filename.endswith(".conda") else "application/x-bzip2"
    return await responder.respond(
        request,
        artifact.sha256,
        modified=artifact.created_at,
        cache_control=cache_control,
        content_type=ctype,
        in_memory=False,
    )


async def _shard(
    request: Request,
    responder: BlobResponder,
    container: Container,
    files: ChannelFiles,
    subdir: str,
    filename: str,
) -> Response:
    match = SHARD_RE.match(filename)
    known = match is not None and await anyio.to_thread.run_sync(
        container.locator.has_shard, files.ref.id, subdir, match.group(1)
    )
    if match is None or not known:
        return _not_found(f"{subdir}/shards/{filename}")
    private = files.ref.privacy != Privacy.PUBLIC
    cache_control = IMMUTABLE.replace("public", "private") if private else IMMUTABLE
    return await responder.respond(
        request,
        match.group(1),
        modified=0.0,
        cache_control=cache_control,
        content_type="application/zstd",
        in_memory=True,
    )


routes = [Route("/conda/{path:path}", conda_endpoint, methods=["GET", "HEAD"])]
