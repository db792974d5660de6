"""Fetching feed documents: ``https://`` conditionally, or ``file://`` files and folders.

Every ``https://`` request passes the outbound guard (``stockade.core.outbound``, the
``[outbound]`` policy): the address connected to, on every redirect hop. Errors name the URL
redacted (an API key in a query is not shown) and not why a connection failed.

A ``https://`` URL is one document, fetched with ``If-None-Match`` / ``If-Modified-Since`` from the
last answer's ``ETag`` / ``Last-Modified``; a 304 is "not modified". A ``file://`` URL is a file,
or a folder whose feed files (by the format's suffixes) are read recursively in path order. An
OSV file that is a zip (osv.dev's ``<ecosystem>/all.zip``) is its ``.json``/``.yaml`` members.
A host that gives no answer is :class:`FeedUnreachableError` (the feed shows ``unreachable``).
:func:`fetch_file` fetches one large file (a ``cve.zip``) to disk instead of memory.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import url2pathname

import httpx

from stockade.core.outbound import (
    ClientOptions,
    OutboundPolicy,
    RefusedDestinationError,
    guarded_client,
)
from stockade.core.urls import ParsedURL, URLParseError, parse_url, redact_url
from stockade.vulns.bundlefile import BundleError, BundleLimits, members, open_zip, read_member
from stockade.vulns.errors import FeedFetchError, FeedUnreachableError
from stockade.vulns.models import FeedFormat

__all__ = ["SUFFIXES", "Fetched", "FetchedFile", "fetch", "fetch_file", "parse_feed_url"]

SUFFIXES = {
    FeedFormat.OSV.value: (".json", ".yaml", ".yml"),
    FeedFormat.NVD.value: (".json",),
    FeedFormat.CVE5.value: (".json",),
    FeedFormat.KEV.value: (".json",),
    FeedFormat.EPSS.value: (".csv", ".gz"),
    FeedFormat.BUNDLE.value: (".zip",),
}
_TIMEOUT = 120.0
MAX_ETAG = 512  # VulnFeed.etag
MAX_LAST_MODIFIED = 128  # VulnFeed.last_modified
_ZIP_MAGIC = b"PK\x03\x04"
_NO_ANSWER = (httpx.TimeoutException, httpx.NetworkError, httpx.ProxyError)  # unreachable
_NO_HOST_ANSWER = (502, 503, 504)  # bad gateway, unavailable, gateway timeout: unreachable too
log = logging.getLogger("stockade.vulns")


@dataclass
class Fetched:
    documents: list[tuple[str, bytes]] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False

    def sha256(self) -> str:
        h = hashlib.sha256()
        for name, data in self.documents:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()


def fetch(
    url: str,
    fmt: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    client: httpx.Client | None = None,
    outbound: OutboundPolicy | None = None,
) -> Fetched:
    parts = parse_feed_url(url)
    if parts.scheme == "file":
        return _read_path(Path(url2pathname(parts.path)), fmt)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    owned = client is None
    http = client or _client(outbound)
    try:
        response = http.get(url, headers=headers)
    except (httpx.HTTPError, RefusedDestinationError) as exc:
        raise _fetch_error(url, exc) from None
    finally:
        if owned:
            http.close()
    if response.status_code == httpx.codes.NOT_MODIFIED:
        return Fetched(etag=etag, last_modified=last_modified, not_modified=True)
    if response.status_code >= httpx.codes.BAD_REQUEST:
        raise _status_error(url, response.status_code)
    etag, modified = _validators(response.headers)
    name = parts.path.rsplit("/", 1)[-1] or "feed"
    return Fetched(_documents(name, response.content, fmt), etag=etag, last_modified=modified)


def _validators(headers: httpx.Headers) -> tuple[str | None, str | None]:
    """The answer's ETag and Last-Modified, each only if ``VulnFeed`` can keep it (a longer one is
    not sent back: an unchanged document is still known by its sha256)."""
    etag, modified = headers.get("ETag"), headers.get("Last-Modified")
    return (
        etag if etag is not None and len(etag) <= MAX_ETAG else None,
        modified if modified is not None and len(modified) <= MAX_LAST_MODIFIED else None,
    )


def _documents(name: str, data: bytes, fmt: str) -> list[tuple[str, bytes]]:
    """One fetched file as documents: an OSV zip (``PyPI/all.zip`` of osv.dev) is its members of
    the format's suffixes, read with the safe zip reader; anything else is one document."""
    if fmt != FeedFormat.OSV or not data.startswith(_ZIP_MAGIC):
        return [(name, data)]
    try:
        with open_zip(io.BytesIO(data), BundleLimits()) as archive:
            found = members(archive, BundleLimits())
            return [
                (f"{name}/{member}", read_member(archive, info))
                for member, info in sorted(found.items())
                if member.lower().endswith(SUFFIXES[fmt]) and not member.startswith(".")
            ]
    except BundleError as exc:
        raise FeedFetchError(f"{name}: {exc.detail}") from None


def _read_path(path: Path, fmt: str) -> Fetched:
    if path.is_file():
        return Fetched(_documents(path.name, path.read_bytes(), fmt))
    if not path.is_dir():
        raise FeedFetchError(f"feed path {path} does not exist")
    suffixes = SUFFIXES[fmt]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
    )
    return Fetched([(p.relative_to(path).as_posix(), p.read_bytes()) for p in files])


@dataclass
class FetchedFile:
    path: Path | None
    sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


@contextmanager
def fetch_file(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    client: httpx.Client | None = None,
    outbound: OutboundPolicy | None = None,
) -> Iterator[FetchedFile]:
    """One file (a ``cve.zip``) from ``file://`` in place, or from ``https://`` streamed to a
    temporary file (removed afterwards), fetched conditionally; its sha256 computed."""
    parts = parse_feed_url(url)
    if parts.scheme == "file":
        path = Path(url2pathname(parts.path))
        if not path.is_file():
            raise FeedFetchError(f"{path} is not a file (a bundle feed names one cve.zip)")
        yield FetchedFile(path, _file_sha256(path))
        return
    headers = {
        k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", last_modified)) if v
    }
    owned = client is None
    http = client or _client(outbound)
    with tempfile.TemporaryDirectory(prefix="stockade-feed-") as folder:
        target = Path(folder) / "cve.zip"
        try:
            with http.stream("GET", url, headers=headers) as response:
                if response.status_code == httpx.codes.NOT_MODIFIED:
                    yield FetchedFile(None, None, etag, last_modified, not_modified=True)
                    return
                if response.status_code >= httpx.codes.BAD_REQUEST:
                    raise _status_error(url, response.status_code)
                digest = hashlib.sha256()
                with target.open("wb") as fh:
                    for block in response.iter_bytes(1 << 20):
                        digest.update(block)
                        fh.write(block)
                got = FetchedFile(target, digest.hexdigest(), *_validators(response.headers))
        except (httpx.HTTPError, RefusedDestinationError) as exc:
            raise _fetch_error(url, exc) from None
        finally:
            if owned:
                http.close()
        yield got


def parse_feed_url(url: str) -> ParsedURL:
    """The feed URL parsed once: ``https`` or ``file`` in any spelling, decided on the parsed
    scheme."""
    try:
        parts = parse_url(url)
    except URLParseError as exc:
        raise FeedFetchError(f"not a feed URL ({exc})") from None
    if parts.scheme not in ("https", "file"):
        raise FeedFetchError(f"feed URLs are https:// or file://, not {redact_url(url)!r}")
    return parts


def _client(outbound: OutboundPolicy | None) -> httpx.Client:
    options = ClientOptions(timeout=_TIMEOUT, follow_redirects=True)
    return guarded_client(outbound or OutboundPolicy(), options)


def _status_error(url: str, status: int) -> FeedFetchError:
    """An HTTP error; a gateway that could not reach the host (a proxy's 502/504) or a host
    that is down (503) is no answer from the feed: unreachable, retried without more warnings."""
    if status in _NO_HOST_ANSWER:
        reason = f"HTTP {status}"
        return FeedUnreachableError(
            f"fetching {redact_url(url)} (HTTP {status}): cannot be reached", reason=reason
        )
    return FeedFetchError(f"fetching {redact_url(url)}: HTTP {status}")


def _fetch_error(url: str, exc: Exception) -> FeedFetchError:
    """Which URL failed and whether the policy refused it, never how a connection failed
    (refused, reset, timed out would tell the state of internal ports): that goes to the log."""
    if isinstance(exc, RefusedDestinationError):
        why = RefusedDestinationError.public
        log.warning("feed %s: %s (%s)", redact_url(url), why, str(exc)[:300])
        return FeedFetchError(f"fetching {redact_url(url)}: {why}")
    if not isinstance(exc, _NO_ANSWER):  # an answer that is not HTTP, too many redirects…
        log.warning("feed %s: no usable answer (%s)", redact_url(url), str(exc)[:300])
        return FeedFetchError(f"fetching {redact_url(url)}: no usable answer")
    # no answer: the sync marks the feed unreachable and logs it once (vulns.feed_state)
    reason = f"{exc.__class__.__name__}: {redact_url(str(exc))[:300]}"
    return FeedUnreachableError(f"fetching {redact_url(url)}: cannot be reached", reason=reason)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
