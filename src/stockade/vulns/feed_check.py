"""Checking a feed's source when it is added or its URL changes (issue 12): before anything is
stored, the caller (the API) asks :func:`check_feed_source`; ``check: false`` (CLI ``--no-check``)
skips it for a source that is offline on purpose.

- ``file://``: the path exists and can be read; a folder is enough for the folder formats (it may
  be filled later), a ``bundle`` must be a file; a file's first bytes must look like the format.
- ``airgap:`` (format ``bundle`` only), or the air-gap folder's own ``file://`` path: the
  server's air-gap folder, whatever it holds now (bundles are dropped in later).
- ``https://``: one ``GET`` through the outbound guard (``[outbound]``, every redirect hop), with a
  short timeout: an HTTP status below 400 and first bytes that look like the format; the rest of
  the body is not downloaded.

"Look like": JSON (``{`` or ``[``) for ``nvd``, ``cve5`` and ``kev``; JSON, YAML text or a zip for
``osv``; gzip or CSV text for ``epss``; a zip for ``bundle``. A failure is a
:class:`FeedSourceError` (HTTP 422 ``vulns:feed-source-check``) that says what was wrong, with the
URL redacted and without how a connection failed. :func:`authorize_source` and
:func:`changed_source` run the permission and field checks first, so a caller without
``cve:manage`` learns nothing of the server's files or network.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.request import url2pathname

import httpx
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.outbound import (
    ClientOptions,
    OutboundPolicy,
    RefusedDestinationError,
    guarded_client,
)
from stockade.core.urls import redact_url
from stockade.vulns.errors import FeedFetchError, FeedSourceError
from stockade.vulns.feed_folder import AIRGAP_URL, names_folder
from stockade.vulns.feedsync import FeedService, check_fields
from stockade.vulns.fetching import parse_feed_url
from stockade.vulns.models import DEFAULT_FEED_SCHEDULE, FeedFormat

__all__ = ["authorize_source", "changed_source", "check_feed_source", "looks_like"]

_HEAD = 4096  # bytes read to recognise the format
_TIMEOUT = 20.0
_ZIP = b"PK\x03\x04"
_GZIP = b"\x1f\x8b"
_WHAT = {
    FeedFormat.NVD.value: "NVD API 2.0 JSON",
    FeedFormat.CVE5.value: "CVE JSON 5",
    FeedFormat.KEV.value: "CISA KEV JSON",
    FeedFormat.OSV.value: "OSV JSON, YAML or zip",
    FeedFormat.EPSS.value: "EPSS CSV (plain or gzip)",
    FeedFormat.BUNDLE.value: "a cve.zip",
}


def authorize_source(session: Session, principal: Principal, url: str, fmt: str) -> None:
    """``cve:manage`` and well-formed fields, before a new feed's source is checked."""
    AccessService(session).require(principal, Permission.CVE_MANAGE)
    check_fields(url, fmt, DEFAULT_FEED_SCHEDULE)


def changed_source(
    session: Session, principal: Principal, name: str, url: str | None, fmt: str | None
) -> tuple[str, str] | None:
    """The (url, format) an update would fetch from when it differs from the stored one (a
    redacted URL sent back is the stored one); None when the source stays."""
    row = FeedService(session).get(principal, name)
    AccessService(session).require(principal, Permission.CVE_MANAGE)
    if url is not None and url.strip() == redact_url(row.url) != row.url:
        url = None
    new = (url or row.url, fmt or row.format)
    if new == (row.url, row.format):
        return None
    check_fields(new[0], new[1], DEFAULT_FEED_SCHEDULE)
    return new


def check_feed_source(
    url: str,
    fmt: str,
    *,
    outbound: OutboundPolicy | None = None,
    client: httpx.Client | None = None,
    airgap_folder: Path | None = None,
) -> None:
    """Raise :class:`FeedSourceError` unless the source answers with something of ``fmt``;
    a ``bundle`` feed of the air-gap folder (``airgap_folder``) is always fine."""
    if fmt == FeedFormat.BUNDLE and names_folder(url, airgap_folder):
        return
    try:
        parts = parse_feed_url(url)
    except FeedFetchError as exc:
        raise FeedSourceError(exc.detail, field="url") from None
    if parts.scheme == "file":
        _check_path(Path(url2pathname(parts.path)), fmt)
    else:
        _check_https(url, fmt, outbound, client)


def looks_like(fmt: str, head: bytes) -> bool:
    """Whether the first bytes of a document can be of the format (a cheap check, not a parse)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    json_like = text[:1] in (b"{", b"[")
    if fmt in (FeedFormat.NVD, FeedFormat.CVE5, FeedFormat.KEV):
        return json_like
    if fmt == FeedFormat.OSV:
        return json_like or head.startswith(_ZIP) or (bool(text) and _is_text(text))
    if fmt == FeedFormat.EPSS:
        return head.startswith(_GZIP) or text.lower().startswith((b"#model", b"cve,"))
    return head.startswith(_ZIP)  # bundle


def _is_text(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end is still text
        return exc.start >= len(data) - 3 and b"\0" not in data
    return b"\0" not in data


def _check_path(path: Path, fmt: str) -> None:
    if not path.exists():
        raise FeedSourceError(f"{path} does not exist on the server", field="url")
    if path.is_dir():
        if fmt == FeedFormat.BUNDLE:
            raise FeedSourceError(
                f"{path} is a folder: a bundle feed names one cve.zip (or {AIRGAP_URL!r}: the "
                "cve.zip files dropped into the air-gap folder)",
                field="url",
            )
        if not os.access(path, os.R_OK | os.X_OK):
            raise FeedSourceError(f"{path} cannot be read by the server", field="url")
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD)
    except OSError:
        raise FeedSourceError(f"{path} cannot be read by the server", field="url") from None
    if not looks_like(fmt, head):
        raise FeedSourceError(f"{path} does not look like {_WHAT[fmt]}", field="url")


def _check_https(
    url: str, fmt: str, outbound: OutboundPolicy | None, client: httpx.Client | None
) -> None:
    shown = redact_url(url)
    http = client or guarded_client(
        outbound or OutboundPolicy(), ClientOptions(timeout=_TIMEOUT, follow_redirects=True)
    )
    try:
        with http.stream("GET", url) as response:
            if response.status_code >= httpx.codes.BAD_REQUEST:
                raise FeedSourceError(f"{shown} answers HTTP {response.status_code}", field="url")
            head = b""
            for block in response.iter_bytes():
                head += block
                if len(head) >= _HEAD:
                    break
    except RefusedDestinationError:
        raise FeedSourceError(
            f"{shown} is {RefusedDestinationError.public} ([outbound] settings)", field="url"
        ) from None
    except httpx.HTTPError:
        raise FeedSourceError(f"{shown} cannot be reached from the server", field="url") from None
    finally:
        if client is None:
            http.close()
    if not looks_like(fmt, head[:_HEAD]):
        raise FeedSourceError(f"{shown} does not answer {_WHAT[fmt]}", field="url")
