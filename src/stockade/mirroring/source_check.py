"""Is a new mirror's source a conda channel we can reach? (SPEC §5)

Checked when a mirror is created, unless the caller says the source is offline on purpose
(``--no-check``, API ``"check": false``). A run fetches every subdir of the mirror and fails when
one has no ``repodata.json``, so the check asks for the same files, and nothing more:

- ``file://``: the folder exists on the server and each subdir has ``repodata.json`` (or
  ``.zst``);
- ``http(s)://``: each subdir answers ``repodata.json.zst`` or ``repodata.json`` with a 2xx
  (status only: the body is not read), through the outbound guard with the mirror's proxy, CA
  bundle and token, as a run would connect.

A failure is a :class:`SourceCheckError` (422, ``mirror:source-check``) that says what was wrong
(no such folder, which subdirs are missing, refused access, unreachable), never a secret nor why
a connection failed (that goes to the server log, as in runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.request import url2pathname

import httpx

from stockade.core.outbound import RefusedDestinationError, guarded_client
from stockade.core.urls import parse_url, redact_url
from stockade.mirroring.errors import SourceCheckError
from stockade.mirroring.source_config import SourceConfig, http_client_options
from stockade.mirroring.transfer import refused_error, transport_error

__all__ = ["CHECK_TIMEOUT_S", "check_source_reachable"]

CHECK_TIMEOUT_S = 15.0
VARIANTS = ("repodata.json.zst", "repodata.json")
HINT = "give the channel's URL (the folder that holds the subdirs), or --no-check if it is offline"


def check_source_reachable(config: SourceConfig, subdirs: Sequence[str]) -> None:
    """Raise :class:`SourceCheckError` unless every subdir of ``config.url`` has repodata."""
    scheme = parse_url(config.url).scheme
    if scheme == "airgap":
        return  # bundles arrive later, through the air-gap folder
    if scheme == "file":
        _check_folder(config.url, subdirs)
    else:
        _check_http(config, subdirs)


def _error(message: str) -> SourceCheckError:
    return SourceCheckError(f"source: {message}", field="source")


def _check_folder(url: str, subdirs: Sequence[str]) -> None:
    root = Path(url2pathname(parse_url(url).path))
    if not root.is_dir():
        raise _error(f"{redact_url(url)}: no such folder on the server ({HINT})")
    missing = [sd for sd in subdirs if not any((root / sd / v).is_file() for v in VARIANTS)]
    if missing:
        present = sorted(p.name for p in root.iterdir() if any((p / v).is_file() for v in VARIANTS))
        has = f"it has: {', '.join(present)}" if present else "it has none: is it a channel?"
        raise _error(
            f"{redact_url(url)}: no repodata.json for {', '.join(missing)} ({has}; {HINT})"
        )


def _check_http(config: SourceConfig, subdirs: Sequence[str]) -> None:
    base = config.url.rstrip("/")
    missing: list[str] = []
    with guarded_client(config.outbound, http_client_options(config)) as client:
        for subdir in subdirs:
            if not _has_repodata(client, config, f"{base}/{subdir}"):
                missing.append(subdir)
    if missing:
        raise _error(f"{redact_url(base)}: no repodata.json for {', '.join(missing)} ({HINT})")


def _has_repodata(client: httpx.Client, config: SourceConfig, folder: str) -> bool:
    """True on a 2xx for one variant, False when both are 404; an error on anything else."""
    for variant in VARIANTS:
        url = f"{folder}/{variant}"
        status = _status(client, config, url)
        if status == 404:
            continue
        if 200 <= status < 300:
            return True
        shown = redact_url(url)
        if status in (401, 403):
            raise _error(
                f"{shown}: access refused (HTTP {status}); give the mirror a token that may "
                "read the channel"
            )
        raise _error(f"{shown}: HTTP {status}")
    return False


def _status(client: httpx.Client, config: SourceConfig, url: str) -> int:
    try:
        with client.stream("GET", url, headers={"accept-encoding": "identity"}) as response:
            return response.status_code  # the body is never read
    except RefusedDestinationError as exc:
        raise _error(refused_error(exc, url).detail) from None
    except httpx.TransportError as exc:
        raise _error(f"{transport_error(exc, url, config.secrets()).detail}; {HINT}") from None
