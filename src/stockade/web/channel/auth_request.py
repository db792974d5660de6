"""``GET /_stockade/authz``: nginx's ``auth_request`` asks whether it may send a conda file itself.

Behind the nginx front of ``docs/deployment-nginx.md`` ("Private channels at nginx speed"), every
conda ``GET``/``HEAD`` first makes this subrequest, with the client's ``Authorization`` and
``Cookie`` headers and the original URL (``X-Original-URI``, which may hold a ``/t/TOKEN/``).
nginx caches the answer for a couple of seconds per credential and URL, under a hash of both.

The answer has an empty body. It tells nginx what to do:

- ``200`` with ``X-Stockade-Blob: ab/cd/<sha256>`` (plus the ``ETag``, ``Last-Modified``,
  ``Cache-Control`` and ``Content-Type`` Stockade would send, as ``X-Stockade-*``): these
  credentials may read this file, and it is that blob of the filesystem store; nginx sends it (or
  a ``304``) itself;
- ``401``: nginx passes the request to Stockade (``error_page 401 = @stockade``), which answers
  as without this endpoint (refusals with their ``401``/``404`` problems, files made on the fly,
  scans pending, first fetches). The ``401`` is nginx's signal, not the client's answer.

So every access decision is Stockade's, taken with the same rules as ``CondaApp``; nginx only
replays a "yes, this blob" for the same credential and URL for as long as it caches it. Package
files nginx is allowed to send are recorded as downloads here (once per answer nginx caches).
The endpoint exists only with ``x_accel_redirect`` set (the front needs it): a Stockade that
clients reach directly answers ``404``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import unquote

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stockade.auth.access import AccessService, ChannelRef
from stockade.auth.permissions import Level, Permission, Privacy
from stockade.auth.principal import Principal
from stockade.channels.locator import ArtifactPointer, ChannelFiles
from stockade.container import Container
from stockade.core.errors import AuthenticationError
from stockade.web.channel.responses import IMMUTABLE
from stockade.web.channel.routes import (
    INDEX_TYPES,
    PRIVATE_IMMUTABLE,
    SHARD_RE,
    TRUST_RE,
    _pointer_sha,
    _split_path,
    download_of,
)
from stockade.web.credentials import credentials_from_scope
from stockade.web.errors import problem
from stockade.web.middleware import _split_token

PATH = "/_stockade/authz"
#: The Content-Type of a file by the end of its name, as CondaApp sends it.
CONTENT_TYPES = (
    (".json", "application/json"),
    (".zst", "application/zstd"),
    (".bz2", "application/x-bzip2"),
    (".conda", "application/octet-stream"),
)


@dataclass(frozen=True)
class Servable:
    """A file nginx may send itself: which blob, and the headers Stockade would send with it."""

    sha256: str
    content_type: str
    modified: float
    cache_control: str

    def headers(self) -> dict[str, str]:
        sha = self.sha256
        return {
            "x-stockade-blob": f"{sha[:2]}/{sha[2:4]}/{sha}",
            "x-stockade-etag": f'"{sha}"',
            "x-stockade-last-modified": formatdate(self.modified, usegmt=True),
            "x-stockade-cache-control": self.cache_control,
            "x-stockade-content-type": self.content_type,
        }


class AuthzDecider:
    """Decides, for one original request, whether nginx may send its file itself."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.locator = container.locator
        max_age = container.settings.publication.index_max_age
        self._index_cc = {False: f"public, max-age={max_age}", True: f"private, max-age={max_age}"}
        self._access = AccessService()

    def decide(self, scope: dict[str, object], uri: str, method: str) -> Servable | None:
        self._current()
        token, path = _split_token(unquote(uri.partition("?")[0]))
        split = _split_path(path) if path.startswith("/conda/") else None
        files = self.locator.channel(split[0]) if split is not None else None
        if method not in ("GET", "HEAD") or split is None or files is None:
            return None
        principal = self._principal({**scope, "stockade.url_token": token})
        if principal is None or not self._may_read(principal, files.ref):
            return None
        rest = split[1]
        private = files.ref.privacy != Privacy.PUBLIC
        if len(rest) == 1:
            return self._root_file(files, rest[0], private)
        if len(rest) == 3:
            return self._shard(files.ref, rest[0], rest[2], private)
        if rest[1] in INDEX_TYPES:
            return self._index_file(files.ref, rest[0], rest[1], private)
        served = self._package(files.ref, rest[0], rest[1], private)
        if served is not None and method == "GET" and self.container.downloads.enabled:
            self._record_download(scope, principal, files.ref, *served)
        return served[1] if served is not None else None

    def _package(
        self, ref: ChannelRef, subdir: str, filename: str, private: bool
    ) -> tuple[ArtifactPointer, Servable] | None:
        if not filename.endswith((".conda", ".tar.bz2")):
            return None
        artifact = self.locator.artifact(ref.id, subdir, filename)
        if artifact is None or artifact.unfetched or artifact.pending:
            return None  # Stockade answers: a first fetch waits for its verdict; no-store files
        served = _servable(artifact.sha256, filename, artifact.created_at, private, IMMUTABLE)
        return (artifact, served) if served is not None else None

    def _current(self) -> None:
        """Read the subdirs' serving versions when they are older than the locator allows
        (the conda app does the same per request; behind nginx it may see few requests)."""
        fresh = getattr(self.locator, "fresh", None)
        refresh = getattr(self.locator, "refresh", None)
        if fresh is not None and refresh is not None and not fresh():
            refresh()

    def _principal(self, scope: dict[str, object]) -> Principal | None:
        creds = credentials_from_scope(scope)
        try:
            return self.container.authenticator.authenticate(creds)
        except AuthenticationError:
            return None  # Stockade answers the request itself (401, with its problem body)

    def _may_read(self, principal: Principal, ref: ChannelRef) -> bool:
        if ref.privacy == Privacy.PUBLIC:
            return True
        return self._access.channel_level(principal, ref, Permission.ARTIFACT_READ) >= Level.READ

    def _root_file(self, files: ChannelFiles, name: str, private: bool) -> Servable | None:
        if TRUST_RE.match(name):
            return None
        sha = files.channeldata if name == "channeldata.json" else files.notices
        if sha is None:
            return None
        return _servable(sha, name, 0.0, private, self._index_cc[False])

    def _shard(self, ref: ChannelRef, subdir: str, name: str, private: bool) -> Servable | None:
        match = SHARD_RE.match(name)
        if match is None or not self.locator.has_shard(ref.id, subdir, match.group(1)):
            return None
        return _servable(match.group(1), name, 0.0, private, IMMUTABLE)

    def _index_file(
        self, ref: ChannelRef, subdir: str, name: str, private: bool
    ) -> Servable | None:
        pointer = self.locator.index(ref.id, subdir)
        sha = _pointer_sha(pointer, name) if pointer is not None else None
        if pointer is None or sha is None:
            return None  # an empty noarch, a .bz2 made on first request: Stockade answers
        return _servable(sha, name, pointer.published_at, private, self._index_cc[False])

    def _record_download(
        self,
        scope: dict[str, object],
        principal: Principal,
        ref: ChannelRef,
        artifact: ArtifactPointer,
        served: Servable,
    ) -> None:
        """What nginx is about to answer, as CondaApp records it (``304`` and ranges included)."""
        headers = dict(scope["headers"])  # type: ignore[call-overload]
        etag = served.headers()["x-stockade-etag"].encode()
        # nginx passes the client's conditional headers under these names (it drops the
        # originals from a request it may cache)
        status = 304 if headers.get(b"x-original-if-none-match") == etag else 200
        if status == 200 and headers.get(b"x-original-range"):
            status = 206
        sent = artifact.size if status == 200 else 0
        self.container.downloads.record(download_of(principal, ref, artifact, sent, status))


def _servable(
    sha256: str, filename: str, modified: float, private: bool, public_cc: str
) -> Servable | None:
    """The answer for a blob: ``public_cc`` is the Cache-Control of a public channel's file
    (CondaApp's ``private`` form for other channels). None for a name of no known type."""
    content_type = next((t for suffix, t in CONTENT_TYPES if filename.endswith(suffix)), None)
    if content_type is None:
        return None
    if private:
        public_cc = (
            PRIVATE_IMMUTABLE
            if public_cc == IMMUTABLE
            else public_cc.replace("public", "private", 1)
        )
    return Servable(sha256, content_type, modified, public_cc)


async def authz(request: Request) -> Response:
    container: Container = request.app.state.container
    if not container.settings.x_accel_redirect:
        # Only the documented nginx front asks this (it needs x_accel_redirect): a Stockade that
        # clients reach directly has no such endpoint (a call would record downloads never sent).
        return problem(404, "Not found", "no such endpoint", code="authz:not-found")
    uri = request.headers.get("x-original-uri")
    if not uri or not uri.startswith("/"):
        return problem(
            400,
            "Bad request",
            "X-Original-URI must be the original request's path",
            code="authz:bad-request",
        )
    method = request.headers.get("x-original-method", "GET").upper()
    conductor: AuthzDecider | None = getattr(request.app.state, "authz", None)
    if conductor is None:
        conductor = request.app.state.authz = AuthzDecider(container)
    scope = {"headers": request.scope["headers"], "client": request.scope.get("client")}
    if container.blobs.local_path("0" * 64) is None:
        return Response(status_code=401)  # blobs not on a filesystem (S3): Stockade sends all
    served = await anyio.to_thread.run_sync(conductor.decide, scope, uri, method)
    if served is None:
        return Response(status_code=401)  # "answer it yourself", to nginx
    return Response(status_code=200, headers=served.headers())


routes = [Route(PATH, authz, methods=["GET", "HEAD"])]
