"""Upstream channels: a subdir's ``repodata.json`` (conditional GET, ``.zst`` first) and single files.

``open_source(config)`` gives an :class:`HttpSource` (``http://``, ``https://``: any conda channel,
another Stockade with a token), a :class:`FileSource` (``file://``: a channel folder) or an
``AirgapSource`` (``airgap:NAME``: package bundles of channel NAME dropped into the air-gap
folder, ``mirroring.airgap_source``). Both take
the upstream's patched ``repodata.json``, never ``repodata_from_packages.json``.

Secrets: the token is sent as ``Authorization: Bearer`` only to the origin it was given for
(``token_origin``: never to a CEP 15 ``base_url`` on another host, nor after a redirect to another
origin, nor to a new source the mirror was moved to), and is never logged nor put in an error
message or :meth:`describe`. URLs shown are redacted (``stockade.core.urls.redact_url``).

Every HTTP connection passes the outbound guard (``stockade.core.outbound``) with
``config.outbound``: the address connected to, on every redirect hop.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.request import url2pathname

import httpx

from stockade.core.outbound import (
    RefusedDestinationError,
    guarded_client,
)
from stockade.core.urls import URLParseError, parse_url, redact_url
from stockade.mirroring.source_config import (
    SourceConfig,
    bad_source,
    http_client_options,
)
from stockade.mirroring.transfer import (
    ChecksumMismatchError,
    RetryPolicy,
    TransientStatusError,
    UpstreamError,
    VerifyingSink,
    check_subdir,
    copy_verified,
    decompress_zst,
    is_transient_status,
    refused_error,
    resolve_file_url,
    status_error,
    transport_error,
)

__all__ = [
    "ChecksumMismatchError",
    "FileSource",
    "HttpSource",
    "RepodataFetch",
    "SourceConfig",
    "UpstreamError",
    "UpstreamSource",
    "Validators",
    "http_client_options",
    "open_source",
    "redact_url",
]

log = logging.getLogger("stockade.mirroring")

ZST = "repodata.json.zst"
#: What ``MirrorSubdirState`` keeps of an upstream's ETag and Last-Modified: a longer one is not
#: kept, so never sent back (an unchanged repodata is still known by its sha256).
MAX_ETAG = 512
MAX_LAST_MODIFIED = 128
JSON = "repodata.json"
VARIANTS = (ZST, JSON)


@dataclass(frozen=True)
class Validators:
    """What we remember from the previous fetch of one subdir's repodata."""

    etag: str | None = None
    last_modified: str | None = None
    variant: str | None = None  # "repodata.json.zst" or "repodata.json": which one worked
    sha256: str | None = None  # sha256 of the raw bytes last fetched


@dataclass(frozen=True)
class RepodataFetch:
    not_modified: bool  # 304, or same file (file://), or same sha256 of a 200 body
    raw: bytes | None  # bytes as received (zstd when variant is .zst); None when not_modified
    variant: str
    validators: Validators  # to store for next time (sha256 = of raw)

    def json_bytes(self) -> bytes:
        """The decompressed ``repodata.json`` bytes; UpstreamError when the bytes are corrupt."""
        if self.raw is None:
            raise UpstreamError("repodata was not modified: no bytes", code="mirror:bad-repodata")
        return decompress_zst(self.raw) if self.variant == ZST else self.raw


class UpstreamSource(Protocol):
    def describe(self) -> str: ...

    def fetch_repodata(self, subdir: str, previous: Validators | None) -> RepodataFetch: ...

    def file_url(self, subdir: str, filename: str, base_url: str | None = None) -> str: ...

    def fetch_file(
        self,
        subdir: str,
        filename: str,
        dest_dir: Path,
        *,
        sha256: str,
        size: int | None,
        url: str | None = None,
    ) -> Path: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------- validation


def open_source(config: SourceConfig) -> UpstreamSource:
    """The source for ``config.url``'s scheme; InvalidInputError(mirror:bad-source) otherwise."""
    try:
        parts = parse_url(config.url)
    except URLParseError as exc:
        raise bad_source(config, f"malformed URL ({exc})") from None
    if config.timeout_s <= 0:
        raise bad_source(config, "timeout must be positive")
    if parts.scheme in ("http", "https"):
        if not parts.host or parts.fragment or parts.port == 0:
            raise bad_source(config, "an http(s) channel URL needs a host and no fragment")
        return HttpSource(config)
    if parts.scheme == "file":
        if parts.host not in ("", "localhost") or not parts.path.startswith("/"):
            raise bad_source(config, "a file:// URL needs an absolute local path")
        return FileSource(config)
    if parts.scheme == "airgap":
        from stockade.mirroring.airgap_source import AirgapSource  # it builds on this module

        return AirgapSource(config)
    raise bad_source(config, "the URL must start with http://, https://, file:// or airgap:")


# --------------------------------------------------------------------------------- http


class HttpSource:
    def __init__(
        self,
        config: SourceConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._config = config
        self._base = config.url.rstrip("/")
        self._options = http_client_options(config)  # fails early on a bad CA bundle
        self._transport = transport
        self._retry = retry or RetryPolicy()
        self._client: httpx.Client | None = None

    def describe(self) -> str:
        return redact_url(self._base)

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = guarded_client(
                self._config.outbound, self._options, transport=self._transport
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def file_url(self, subdir: str, filename: str, base_url: str | None = None) -> str:
        url = resolve_file_url(self._base, subdir, filename, base_url)
        if _scheme(url) not in ("http", "https"):
            raise UpstreamError(
                f"{self.describe()}/{subdir}: base_url {redact_url(url)} is not http(s)",
                code="mirror:bad-repodata",
            )
        return url

    def fetch_repodata(self, subdir: str, previous: Validators | None) -> RepodataFetch:
        check_subdir(subdir)
        for variant in VARIANTS:
            url = f"{self._base}/{subdir}/{variant}"
            response = self._get(url, _conditional_headers(previous, variant))
            if response.status_code == 404:
                continue
            return self._repodata_result(url, response, variant, previous)
        raise UpstreamError(
            f"{self.describe()}/{subdir}: no {ZST} nor {JSON} (404)", code="mirror:no-subdir"
        )

    def _repodata_result(
        self, url: str, response: httpx.Response, variant: str, previous: Validators | None
    ) -> RepodataFetch:
        etag = _validator(response.headers.get("etag"), MAX_ETAG)
        modified = _validator(response.headers.get("last-modified"), MAX_LAST_MODIFIED)
        if response.status_code == 304 and previous is not None:
            kept = Validators(
                etag or previous.etag, modified or previous.last_modified, variant, previous.sha256
            )
            return RepodataFetch(True, None, variant, kept)
        if not response.is_success or response.status_code == 204:
            raise status_error(response.status_code, url, self._config.secrets())
        raw = response.content
        digest = hashlib.sha256(raw).hexdigest()
        validators = Validators(etag, modified, variant, digest)
        if previous is not None and previous.sha256 == digest:
            return RepodataFetch(True, None, variant, validators)
        return RepodataFetch(False, raw, variant, validators)

    def _get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http().get(url, headers=headers)
            except RefusedDestinationError as exc:
                raise refused_error(exc, url) from None
            except httpx.TransportError as exc:
                if not self._retry.should_retry(attempt, exc):
                    raise transport_error(exc, url, self._config.secrets()) from None
                time.sleep(self._retry.delay(attempt, None))
            else:
                if not is_transient_status(response.status_code) or attempt >= self._retry.retries:
                    return response
                time.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
            attempt += 1
            log.info("retrying %s (attempt %d)", redact_url(url), attempt + 1)

    def fetch_file(
        self,
        subdir: str,
        filename: str,
        dest_dir: Path,
        *,
        sha256: str,
        size: int | None,
        url: str | None = None,
    ) -> Path:
        target = url or self.file_url(subdir, filename)
        attempt = 0
        while True:
            try:
                return self._stream_once(target, dest_dir, sha256, size, attempt)
            except RefusedDestinationError as exc:
                raise refused_error(exc, target) from None
            except httpx.TransportError as exc:
                if not self._retry.should_retry(attempt, exc):
                    raise transport_error(exc, target, self._config.secrets()) from None
                time.sleep(self._retry.delay(attempt, None))
            except TransientStatusError as later:
                time.sleep(self._retry.delay(attempt, later.retry_after))
            attempt += 1

    def _stream_once(
        self, url: str, dest_dir: Path, sha256: str, size: int | None, attempt: int
    ) -> Path:
        headers = {"accept-encoding": "identity"}
        with self._http().stream("GET", url, headers=headers) as response:
            status = response.status_code
            if is_transient_status(status) and attempt < self._retry.retries:
                raise TransientStatusError(response.headers.get("retry-after"))
            if not response.is_success:
                raise status_error(status, url, self._config.secrets())
            sink = VerifyingSink(dest_dir, sha256, size, redact_url(url))
            try:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                return sink.finish()
            except BaseException:
                sink.abort()
                raise


def _scheme(url: str) -> str:
    try:
        return parse_url(url).scheme
    except URLParseError:
        return ""


def _validator(value: str | None, limit: int) -> str | None:
    return value if value is not None and len(value) <= limit else None


def _conditional_headers(previous: Validators | None, variant: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    if previous is not None and previous.variant == variant:
        if previous.etag:
            headers["if-none-match"] = previous.etag
        if previous.last_modified:
            headers["if-modified-since"] = previous.last_modified
    return headers


# --------------------------------------------------------------------------------- file://


class FileSource:
    """A channel folder on this machine (``file:///abs/channel``): ETag = ``{mtime_ns}-{size}``."""

    def __init__(self, config: SourceConfig) -> None:
        self._config = config
        self._url = config.url.rstrip("/")
        self.root = Path(url2pathname(parse_url(self._url).path)).resolve()

    def describe(self) -> str:
        return redact_url(self._url)

    def close(self) -> None:
        return None

    def file_url(self, subdir: str, filename: str, base_url: str | None = None) -> str:
        return resolve_file_url(self._url, subdir, filename, base_url)

    def path_for_url(self, url: str) -> Path:
        """The local path of a ``file://`` URL, refused outside the channel folder."""
        try:
            parts = parse_url(url)
            path = Path(url2pathname(parts.path)).resolve()
        except URLParseError:
            parts, path = None, None
        if (
            parts is None
            or path is None
            or parts.scheme != "file"
            or not path.is_relative_to(self.root)
        ):
            raise UpstreamError(
                f"{self.describe()}: {redact_url(url)} is outside the channel folder",
                code="mirror:bad-repodata",
            )
        return path

    def fetch_repodata(self, subdir: str, previous: Validators | None) -> RepodataFetch:
        check_subdir(subdir)
        if not self.root.is_dir():
            raise UpstreamError(
                f"{self.describe()}: not a folder", code="mirror:upstream-unreachable"
            )
        for variant in VARIANTS:
            path = self.root / subdir / variant
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            etag = f"{stat.st_mtime_ns}-{stat.st_size}"
            if previous is not None and previous.variant == variant and previous.etag == etag:
                return RepodataFetch(True, None, variant, previous)
            raw = path.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            validators = Validators(etag, None, variant, digest)
            same = previous is not None and previous.sha256 == digest
            return RepodataFetch(same, None if same else raw, variant, validators)
        raise UpstreamError(f"{self.describe()}/{subdir}: no {JSON}", code="mirror:no-subdir")

    def fetch_file(
        self,
        subdir: str,
        filename: str,
        dest_dir: Path,
        *,
        sha256: str,
        size: int | None,
        url: str | None = None,
    ) -> Path:
        path = self.path_for_url(url or self.file_url(subdir, filename))
        try:
            return copy_verified(path, dest_dir, sha256, size)
        except FileNotFoundError:
            raise UpstreamError(
                f"{self.describe()}/{subdir}/{filename}: missing", code="mirror:upstream-status"
            ) from None
