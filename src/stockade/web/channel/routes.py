"""The conda channel protocol under ``/conda/`` (SPEC §2): index files, shards, packages.

``CondaApp`` is a pure ASGI application: the edge middleware hands it ``GET``/``HEAD`` requests
under ``/conda/`` directly (see ``web/middleware.py``), so index requests skip FastAPI routing.
When the channel, its index pointer or package file and the file's bytes are cached (the usual
case), a request is answered on the event loop with no thread hop, no database query and no
per-request JSON or header formatting. What is cached is checked against the subdirs' versions,
read again at most every ``CHECK_SECONDS`` by the first request that finds them older (one query for
the process, the other requests wait for it): see ``channels/servable.py``. Misses go to a worker
thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from functools import lru_cache, partial
from typing import Any, TypeVar

import anyio
import structlog
from sqlalchemy.exc import OperationalError
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from stockade.audit.downloads import Download, name_version
from stockade.auth.access import AccessService, ChannelRef
from stockade.auth.permissions import Level, Permission, Privacy
from stockade.auth.principal import Principal
from stockade.channels.locator import ArtifactPointer, ChannelFiles, IndexPointer
from stockade.conda.repodata import empty_repodata_json
from stockade.container import Container
from stockade.core.context import current_origin
from stockade.core.errors import StockadeError
from stockade.scanning.gate import FetchedOutcome, verdict_for_fetched
from stockade.signing.chain import metadata_file
from stockade.web.channel.responses import IMMUTABLE, BlobResponder, RequestInfo
from stockade.web.credentials import credentials_from_scope
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
#: conda-content-trust metadata, served at every channel root too (SPEC §8)
TRUST_RE = re.compile(r"^(?:[0-9]{1,9}\.root|key_mgr)\.json$")
EMPTY_NOARCH = empty_repodata_json("noarch")
PRIVATE_IMMUTABLE = IMMUTABLE.replace("public", "private")
# A file served before its verdict (serve-first) may be quarantined minutes later: no proxy or
# client cache may keep it for a year as an immutable file.
UNJUDGED = "no-store"

log = structlog.get_logger("stockade.web")

K = TypeVar("K")
V = TypeVar("V")


RETRY_AFTER_S = 5  # seconds a client waits for a first-fetched file's verdict


def _not_found(what: str) -> Response:
    return problem(404, "Not found", f"{what} not found", code="conda:not-found")


def _pointer_sha(pointer: IndexPointer, filename: str) -> str | None:
    if filename == "repodata.json":
        return pointer.repodata
    if filename == "repodata.json.zst":
        return pointer.repodata_zst
    if filename == "repodata.json.bz2":
        return pointer.repodata_bz2
    if filename == "repodata_shards.msgpack.zst":
        return pointer.shard_index
    return pointer.run_exports


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _split_path(path: str) -> tuple[str, tuple[str, ...]] | None:
    """``/conda/CHANNEL/…`` -> (channel name, (file) | (subdir, file) | (subdir, "shards", file)).

    The same paths come again and again (conda, CI, mirrors): usual ones are remembered, at most
    4096 paths of at most 512 characters (~6 MB whatever clients send; tests/unit/web)."""
    return _split_usual(path) if len(path) <= 512 else _split(path)


@lru_cache(maxsize=4096)
def _split_usual(path: str) -> tuple[str, tuple[str, ...]] | None:
    return _split(path)


def _split(path: str) -> tuple[str, tuple[str, ...]] | None:
    segments = tuple(s for s in path[len("/conda/") :].split("/") if s)
    if len(segments) < 2:
        return None
    if segments[-1] in ROOT_FILES or TRUST_RE.match(segments[-1]):
        return "/".join(segments[:-1]), segments[-1:]
    if len(segments) >= 4 and segments[-2] == "shards":
        return "/".join(segments[:-3]), segments[-3:]
    if len(segments) >= 3:
        return "/".join(segments[:-2]), segments[-2:]
    return None


class CondaApp:
    """``GET``/``HEAD`` of ``/conda/CHANNEL[/SUBDIR]/FILE`` (tokens already moved aside)."""

    def __init__(self, container: Container, responder: BlobResponder) -> None:
        self.container = container
        self.responder = responder
        self.locator = container.locator
        max_age = container.settings.publication.index_max_age
        self._index_cc = {False: f"public, max-age={max_age}", True: f"private, max-age={max_age}"}
        self._access = AccessService()
        self._downloads = container.downloads
        self._refreshing: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._handle(scope, send)
        except Exception as exc:
            if isinstance(exc, StockadeError):
                response = error_response(exc)
            elif isinstance(exc, OperationalError):  # as the API's handler: retry shortly
                log.warning("database busy or unavailable", error=str(exc.orig)[:200])
                response = problem(
                    503,
                    "Service busy",
                    "the database is busy or unavailable; retry shortly",
                    code="unavailable:database",
                    retry_after=1,
                )
            else:  # as FastAPI's handler for unexpected errors does (this app runs outside it)
                log.error("unhandled error", exc_info=exc)
                response = problem(
                    500, "Internal error", "an unexpected error occurred; see the server log"
                )
            try:
                await response(scope, receive, send)
            except RuntimeError:  # the response had already started: let the server end it
                raise exc from None
            return
        if response is not None:
            await response(scope, receive, send)

    async def _handle(self, scope: Scope, send: Send) -> Response | None:
        split = _split_path(scope["path"])
        if split is None:
            return _not_found("path")
        channel_name, rest = split
        if not self.locator.fresh():
            await self._refresh()
        files = await self._channel(channel_name)
        if files is None:
            return _not_found(f"channel {channel_name!r}")
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        denied = await self._check_read(scope, headers, files)
        if denied is not None:
            return denied
        info = RequestInfo.from_headers(scope["method"], headers)
        private = files.ref.privacy != Privacy.PUBLIC
        if len(rest) == 1:
            return await self._root_file(send, info, files, rest[0], private)
        if len(rest) == 3:
            return await self._shard(send, info, files, rest[0], rest[2], private)
        return await self._subdir_file(scope, send, info, files, rest[0], rest[1], private)

    async def _refresh(self) -> None:
        """Read the shared serving state once for every request that finds it stale (they all
        wait for the same read; a request that goes away does not cancel it for the others)."""
        loop = asyncio.get_running_loop()
        pending = self._refreshing
        if pending is None or pending.done() or pending.get_loop() is not loop:
            pending = loop.run_in_executor(None, self.locator.refresh)
            pending.add_done_callback(_retrieve)  # a failure is the waiters' (none may be left)
            self._refreshing = pending
        await asyncio.shield(pending)

    async def _channel(self, name: str) -> ChannelFiles | None:
        hit, files = self.locator.cached_channel(name)
        if hit:
            return files
        return await anyio.to_thread.run_sync(self.locator.channel, name)

    async def _index(self, channel_id: int, subdir: str) -> IndexPointer | None:
        hit, pointer = self.locator.cached_index(channel_id, subdir)
        if hit:
            return pointer
        return await anyio.to_thread.run_sync(self.locator.index, channel_id, subdir)

    async def _check_read(
        self, scope: Scope, headers: list[tuple[bytes, bytes]], files: ChannelFiles
    ) -> Response | None:
        """None when the caller may read the channel, else the response to send (401 or 404)."""
        ref = files.ref
        public = ref.privacy == Privacy.PUBLIC
        token = scope.get("stockade.url_token")
        authorization = None
        if token is None:
            for key, value in headers:
                if key == b"authorization":
                    authorization = value
                    break
            if public and authorization is None:
                return None
        try:
            principal = self._cached_principal(token, authorization)
            if principal is None:
                creds = credentials_from_scope(scope)
                authenticator = self.container.authenticator
                principal = authenticator.cached(creds)
                if principal is None:
                    principal = await anyio.to_thread.run_sync(authenticator.authenticate, creds)
        except StockadeError as exc:
            return error_response(exc)
        scope["stockade.principal"] = principal  # who downloaded (_record_download)
        if public:
            return None
        level = self._access.channel_level(principal, ref, Permission.ARTIFACT_READ)
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

    def _cached_principal(self, token: str | None, authorization: bytes | None) -> Principal | None:
        """conda's usual credentials (a URL token, a Bearer header) answered from the cache
        without building anything; None sends the caller down the general path."""
        if token is None and authorization is not None and authorization[:7].lower() == b"bearer ":
            token = authorization[7:].decode("latin-1").strip()
        if token is None:
            return None
        return self.container.authenticator.cached_token(token)

    async def _root_file(
        self, send: Send, info: RequestInfo, files: ChannelFiles, name: str, private: bool
    ) -> Response | None:
        if TRUST_RE.match(name):
            return await anyio.to_thread.run_sync(self._trust_file, name)
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
                headers={"cache-control": self._index_cc[private]},
            )
        await self.responder.respond(
            send,
            info,
            sha,
            modified=0.0,
            cache_control=self._index_cc[private],
            content_type="application/json",
            in_memory=True,
        )
        return None

    def _trust_file(self, name: str) -> Response:
        with self.container.read_factory() as session:
            body = metadata_file(session, name)
        if body is None:
            return _not_found(name)
        return Response(body, media_type="application/json", headers={"cache-control": "no-cache"})

    async def _subdir_file(
        self,
        scope: Scope,
        send: Send,
        info: RequestInfo,
        files: ChannelFiles,
        subdir: str,
        filename: str,
        private: bool,
    ) -> Response | None:
        ref = files.ref
        content_type = INDEX_TYPES.get(filename)
        if content_type is not None:
            return await self._index_file(send, info, ref, subdir, filename, private)
        if not filename.endswith((".conda", ".tar.bz2")):
            return _not_found(f"{subdir}/{filename}")
        hit, artifact = self.locator.cached_artifact(ref.id, subdir, filename)
        if not hit:
            artifact = await anyio.to_thread.run_sync(
                self.locator.artifact, ref.id, subdir, filename
            )
        if artifact is None:
            return _not_found(f"{subdir}/{filename}")
        if artifact.unfetched:
            refused = await self._first_fetch(artifact)
            if refused is not None:
                return refused
            # Served now: its verdict changed no version, so read it again next time.
            self.locator.forget_artifact(ref.id, subdir, filename)
        ctype = "application/octet-stream" if filename.endswith(".conda") else "application/x-bzip2"
        cache_control = PRIVATE_IMMUTABLE if private else IMMUTABLE
        status, sent = await self.responder.respond(
            send,
            info,
            artifact.sha256,
            modified=artifact.created_at,
            cache_control=UNJUDGED if artifact.pending else cache_control,
            content_type=ctype,
            in_memory=False,
            filename=filename,  # with S3 and downloads = "redirect": a 307 to the store
        )
        if self._downloads.enabled and info.method == "GET":  # a HEAD downloads nothing
            self._record_download(scope, ref, artifact, status, sent)
        return None

    def _record_download(
        self, scope: Scope, ref: ChannelRef, artifact: ArtifactPointer, status: int, sent: int
    ) -> None:
        """A package file answered: into this process's buffer (``audit/downloads.py``); index
        files, shards and refusals are not downloads. No I/O here."""
        principal: Principal | None = scope.get("stockade.principal")
        self._downloads.record(download_of(principal, ref, artifact, sent, status))

    async def _first_fetch(self, artifact: ArtifactPointer) -> Response | None:
        """A passive record: fetch its file, then wait for its verdict before serving it."""
        if artifact.mirror_id is not None and not self.container.blobs.exists(artifact.sha256):
            await anyio.to_thread.run_sync(
                self.container.passive.ensure,
                artifact.mirror_id,
                artifact.subdir,
                artifact.filename,
                artifact.sha256,
                artifact.size or None,
            )
        outcome = await anyio.to_thread.run_sync(
            partial(
                verdict_for_fetched,
                self.container.factory,
                self.container.scans,
                artifact.id,
                wait_s=self.container.settings.scanning.first_fetch_wait_s,
            )
        )
        where = f"{artifact.subdir}/{artifact.filename}"
        if outcome == FetchedOutcome.WAIT:
            return problem(
                503,
                "Being scanned",
                f"{where} was fetched and is being scanned; try again in a few seconds",
                code="scan:pending",
                retry_after=RETRY_AFTER_S,
            )
        if outcome == FetchedOutcome.REFUSE:
            return _not_found(where)
        return None

    async def _index_file(
        self,
        send: Send,
        info: RequestInfo,
        ref: ChannelRef,
        subdir: str,
        filename: str,
        private: bool,
    ) -> Response | None:
        pointer = await self._index(ref.id, subdir)
        if pointer is None:
            if subdir == "noarch" and filename == "repodata.json":
                return Response(EMPTY_NOARCH, media_type="application/json")
            return _not_found(f"{subdir}/{filename}")
        sha = _pointer_sha(pointer, filename)
        if filename == "repodata.json.bz2" and sha is None:
            sha = await anyio.to_thread.run_sync(self.locator.bz2, ref.id, subdir, pointer)
        if sha is None:
            return _not_found(f"{subdir}/{filename}")
        await self.responder.respond(
            send,
            info,
            sha,
            modified=pointer.published_at,
            cache_control=self._index_cc[private],
            content_type=INDEX_TYPES[filename],
            in_memory=True,
        )
        return None

    async def _shard(
        self,
        send: Send,
        info: RequestInfo,
        files: ChannelFiles,
        subdir: str,
        filename: str,
        private: bool,
    ) -> Response | None:
        match = SHARD_RE.match(filename)
        if match is None or not await self._has_shard(files.ref.id, subdir, match.group(1)):
            return _not_found(f"{subdir}/shards/{filename}")
        await self.responder.respond(
            send,
            info,
            match.group(1),
            modified=0.0,
            cache_control=PRIVATE_IMMUTABLE if private else IMMUTABLE,
            content_type="application/zstd",
            in_memory=True,
        )
        return None

    async def _has_shard(self, channel_id: int, subdir: str, sha256: str) -> bool:
        known = self.locator.cached_shard(channel_id, subdir, sha256)
        if known is None:
            known = await anyio.to_thread.run_sync(
                self.locator.has_shard, channel_id, subdir, sha256
            )
        return known


def conda_app_for(app: Any) -> CondaApp:
    """The ``CondaApp`` of a Stockade application, built on first use from its state."""
    state = app.state
    conda: CondaApp | None = getattr(state, "conda_app", None)
    if conda is None:
        conda = CondaApp(state.container, state.blob_responder)
        state.conda_app = conda
    return conda


class _CondaRoute:
    """The routed way in (an ASGI app, not an endpoint function), for requests the middleware
    does not hand over directly; the route answers other methods with 405."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await conda_app_for(scope["app"])(scope, receive, send)


routes = [Route("/conda/{path:path}", _CondaRoute(), methods=["GET", "HEAD"])]


def download_of(
    principal: Principal | None, ref: ChannelRef, artifact: ArtifactPointer, sent: int, status: int
) -> Download:
    """The download record of a package file answered to ``principal`` in this request."""
    where = current_origin()
    name, version = name_version(artifact.filename)
    return Download(
        time.time(),
        principal.username if principal is not None else "anonymous",
        principal.user_id if principal is not None else None,
        principal.token_id if principal is not None else None,
        where.ip,
        where.user_agent,
        ref.id,
        ref.name,
        artifact.subdir,
        artifact.filename,
        name,
        version,
        artifact.sha256,
        sent,
        status,
        where.request_id,
    )
