"""The upstream's trust metadata (``N.root.json``, ``key_mgr.json``), fetched like its repodata:
through the mirror's source settings and the one outbound guard (proxy, CA bundle, the token sent
to the origin it was given for only, every connection and redirect checked), or read from a
``file://`` folder. Verification is :mod:`stockade.signing.upstream`'s.

Where: the mirror's ``signing_metadata_url``, else the source channel's URL (conda's
``signing_metadata_url_base`` defaults to the channel too).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.request import url2pathname

import httpx

from stockade.core.errors import StockadeError
from stockade.core.outbound import RefusedDestinationError, guarded_client
from stockade.core.urls import URLParseError, parse_url, redact_url
from stockade.mirroring.source_config import SourceConfig, http_client_options
from stockade.signing.format import MAX_METADATA_BYTES
from stockade.signing.upstream import (
    Fetch,
    TrustFetchError,
    UpstreamTrust,
    establish_trust,
)

if TYPE_CHECKING:
    from stockade.mirroring.reporter import RunReporter


def metadata_base(config: SourceConfig, signing_metadata_url: str | None) -> str:
    return (signing_metadata_url or config.url).rstrip("/")


def trust_fetcher(config: SourceConfig, base: str) -> Fetch:
    """A fetch callable for :func:`establish_trust` over the folder at ``base``."""
    try:
        scheme = parse_url(base).scheme
    except URLParseError:
        scheme = ""
    if scheme == "file":
        return _file_fetcher(Path(url2pathname(parse_url(base).path)))
    if scheme == "airgap" and config.bundle is not None:
        return config.bundle.signing_member  # the chain the bundle carries
    if scheme not in ("http", "https"):
        raise TrustFetchError(f"{redact_url(base)} is not an http(s) or file:// URL")

    def fetch(name: str) -> bytes | None:
        url = f"{base}/{name}"
        try:
            with (
                guarded_client(config.outbound, http_client_options(config)) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise TrustFetchError(f"HTTP {response.status_code} from {redact_url(url)}")
                return _bounded(response.iter_bytes(), name)
        except RefusedDestinationError as exc:
            raise TrustFetchError(f"{redact_url(url)}: {exc.public}") from None
        except httpx.HTTPError as exc:
            raise TrustFetchError(f"{redact_url(url)}: {type(exc).__name__}") from None
        except StockadeError as exc:
            raise TrustFetchError(f"{redact_url(url)}: {exc.detail}") from None

    return fetch


def _file_fetcher(folder: Path) -> Fetch:
    def fetch(name: str) -> bytes | None:
        path = folder / name
        try:
            if path.stat().st_size > MAX_METADATA_BYTES:
                raise TrustFetchError(f"{name} is larger than {MAX_METADATA_BYTES} bytes")
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TrustFetchError(f"{name}: {exc.strerror}") from None

    return fetch


def _bounded(chunks: object, name: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:  # type: ignore[attr-defined]  # an iterator of bytes
        size += len(chunk)
        if size > MAX_METADATA_BYTES:
            raise TrustFetchError(f"{name} is larger than {MAX_METADATA_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


def fetch_trust(
    config: SourceConfig,
    trusted_root: bytes | None,
    signing_metadata_url: str | None,
    now: datetime,
    reporter: RunReporter | None = None,
) -> UpstreamTrust:
    """The trust a run checks upstream signatures with (see :mod:`stockade.signing.upstream`)."""
    if trusted_root is None:
        return UpstreamTrust()
    base = metadata_base(config, signing_metadata_url)
    try:
        fetch = trust_fetcher(config, base)
    except TrustFetchError as exc:
        trust = UpstreamTrust(True, problem=str(exc), unreachable=True, fetch_error=str(exc))
    else:
        trust = establish_trust(trusted_root, fetch, now)
    if reporter is not None:
        level = "info" if trust.key_mgr is not None else "warning"
        reporter.log(f"{redact_url(base)}: {trust.describe()}", level)
    return trust
