"""Checks of a mirror's settings, each failing with a message that names the field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from croniter import CroniterError, croniter

from stockade.channels.naming import validate_channel_name
from stockade.channels.servable import MAX_SUBDIR_CHARS
from stockade.core.errors import InvalidInputError
from stockade.core.outbound import OutboundPolicy, RefusedDestinationError, refused_destination
from stockade.core.urls import ParsedURL, URLParseError, parse_url, split_userinfo
from stockade.mirroring.errors import InvalidMirrorError
from stockade.mirroring.models import MirrorMode
from stockade.mirroring.sources import SourceConfig, open_source
from stockade.signing.errors import TrustMetadataError
from stockade.signing.upstream import parse_trusted_root

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUBDIR_RE = re.compile(r"^(noarch|[a-z0-9]+-[a-z0-9_]+)$")
PACKAGE_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.\-]*$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidMirrorError(
            f"mirror name {name!r}: 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
            field="name",
        )
    return name


def check_source(url: str, field: str = "source") -> str:
    """``https://``, ``http://`` or ``file://`` URL of a conda channel (no credentials in it),
    returned normalized (scheme and host lower-case, no trailing ``/``).

    The URL is parsed once (:func:`stockade.core.urls.parse_url`) and every rule decides on the
    parsed form: ``FILE:///x`` is a ``file`` URL. The scheme, host and path rules are the sources'
    own (:func:`open_source`); a mirror adds that credentials go in its token, never in the URL,
    and that the URL has no query. Nothing here touches the disk.
    """
    if not isinstance(url, str) or not url.strip():
        what = "the upstream channel URL" if field == "source" else "a URL"
        raise InvalidMirrorError(f"{field}: give {what}", field=field)
    if field == "source" and url.strip()[:7].lower() == "airgap:":
        return _airgap_source(url.strip()[7:], field)
    parsed = _parse(url, field)
    if parsed.has_userinfo:
        raise InvalidMirrorError(
            f"{field}: do not put credentials in the URL; give them as the mirror's token",
            code="mirror:credentials-in-url",
            field=field,
        )
    if parsed.query:
        raise InvalidMirrorError(f"{field}: no query, please", field=field)
    normalized = parsed.unsplit().rstrip("/")
    try:
        open_source(SourceConfig(normalized)).close()
    except InvalidInputError as exc:
        raise InvalidMirrorError(f"{field}: {exc.detail}", field=field) from None
    if parsed.scheme == "file":  # file://localhost/x is file:///x
        normalized = "file://" + parsed.path.rstrip("/")
    return normalized


def _airgap_source(name: str, field: str) -> str:
    """``airgap:NAME``: the bundles of channel NAME dropped into the air-gap folder."""
    try:
        validate_channel_name(name)
    except InvalidInputError as exc:
        raise InvalidMirrorError(
            f"{field}: airgap:NAME names the channel its bundles were exported from ({exc.detail})",
            field=field,
        ) from None
    return f"airgap:{name}"


def _parse(url: str, field: str) -> ParsedURL:
    try:
        return parse_url(url)
    except URLParseError as exc:
        raise InvalidMirrorError(f"{field}: {exc}", field=field) from None


def is_local_source(url: str) -> bool:
    """True for a ``file:`` URL in any spelling (``FILE:``, ``File:``), an ``airgap:`` source (the
    server's air-gap folder), or one that cannot be parsed (treated as the stricter case)."""
    try:
        return parse_url(url).scheme in ("file", "airgap")
    except URLParseError:
        return True


def check_destination(url: str, policy: OutboundPolicy, field: str, *, detail: bool) -> None:
    """Refuse an http(s) URL whose host the outbound policy refuses (checked again on every
    connection). ``detail``: say why (to an administrator); others learn only that it is refused."""
    parsed = _parse(url, field)
    if parsed.scheme not in ("http", "https"):
        return
    reason = refused_destination(parsed.host, policy, parsed.effective_port)
    if reason is not None:
        why = f": {reason}" if detail else ""
        raise InvalidMirrorError(
            f"{field}: this host is {RefusedDestinationError.public}{why}",
            code="mirror:refused-destination",
            field=field,
        )


def check_mode(mode: str) -> str:
    try:
        return MirrorMode(mode).value
    except ValueError:
        raise InvalidMirrorError(
            f"mode must be 'active' or 'passive', got {mode!r}", field="mode"
        ) from None


def check_subdirs(subdirs: Iterable[str]) -> list[str]:
    if isinstance(subdirs, str):
        subdirs = [s for s in subdirs.split(",") if s.strip()]
    clean: list[str] = []
    for subdir in subdirs:
        value = str(subdir).strip()
        if not SUBDIR_RE.match(value):
            raise InvalidMirrorError(
                f"subdirs: {value!r} is not a conda subdir (like linux-64, osx-arm64, noarch)",
                field="subdirs",
            )
        if len(value) > MAX_SUBDIR_CHARS:  # a column of every record and index it would make
            raise InvalidMirrorError(
                f"subdirs: {value[:40]!r}... is longer than {MAX_SUBDIR_CHARS} characters",
                field="subdirs",
            )
        if value not in clean:
            clean.append(value)
    if not clean:
        raise InvalidMirrorError(
            "subdirs: name at least one, e.g. linux-64,noarch", field="subdirs"
        )
    return clean


def check_schedule(schedule: str | None) -> str | None:
    if schedule is None or not schedule.strip():
        return None
    value = " ".join(schedule.split())
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise InvalidMirrorError(
            f"schedule: {schedule!r} is not a cron expression with 5 fields (e.g. '0 2 * * *')",
            field="schedule",
        )
    try:
        croniter(value).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):  # valid syntax that never fires
        raise InvalidMirrorError(
            f"schedule: {schedule!r} never fires (no such date, e.g. February 31st)",
            field="schedule",
        ) from None
    return value


def check_proxy(proxy: str | None) -> tuple[str | None, str | None]:
    """An ``http://`` or ``https://`` proxy URL with a host: the URL without its credentials, and
    the credentials (``user:password``, percent-encoded) to store encrypted, or None."""
    if not proxy or not proxy.strip():
        return None, None
    parsed = _parse(proxy, "proxy")
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidMirrorError("proxy: an http:// or https:// URL with a host", field="proxy")
    if parsed.path.strip("/") or parsed.query or parsed.fragment:
        raise InvalidMirrorError("proxy: scheme, host and port only", field="proxy")
    _, userinfo = split_userinfo(proxy.strip())
    return parsed.unsplit().rstrip("/"), userinfo


def check_ca_bundle(path: str | None) -> str | None:
    """An absolute path to a file on the server; call it only once the caller may name server
    files (an administrator), as the answer says whether the file exists."""
    if not path:
        return None
    candidate = Path(path)
    if not candidate.is_absolute() or not candidate.is_file():
        raise InvalidMirrorError(
            f"ca_bundle: {path!r} is not an absolute path to a file on the server",
            field="ca_bundle",
        )
    return str(candidate)


def check_concurrency(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise InvalidMirrorError("concurrency: a number from 1 to 64", field="concurrency")
    return value


def check_names(values: Iterable[str], field: str) -> list[str]:
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    clean = sorted({str(v).strip().lower() for v in values})
    for value in clean:
        if not PACKAGE_NAME_RE.match(value):
            raise InvalidMirrorError(f"{field}: {value!r} is not a package name", field=field)
    return clean


def check_trusted_root(value: Any) -> bytes | None:
    """The upstream's root metadata (a JSON object or its text), well-formed and signed by its
    own root keys; stored as JSON bytes. None or "" clears it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    data = value.encode() if isinstance(value, str) else _json_bytes(value)
    try:
        envelope = parse_trusted_root(data)
    except TrustMetadataError as exc:
        raise InvalidMirrorError(f"trusted_root: {exc.detail}", field="trusted_root") from None
    return json.dumps(envelope, sort_keys=True).encode()


def _json_bytes(value: Any) -> bytes:
    if not isinstance(value, dict):
        raise InvalidMirrorError(
            "trusted_root: give the upstream's root.json (a JSON object)", field="trusted_root"
        )
    return json.dumps(value).encode()


def check_metadata_url(url: str | None) -> str | None:
    """Where the upstream's key_mgr.json and root updates are: checked as a source URL is."""
    if url is None or not str(url).strip():
        return None
    return check_source(url, "signing_metadata_url")
