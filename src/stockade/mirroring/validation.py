"""Checks of a mirror's settings, each failing with a message that names the field."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from croniter import CroniterError, croniter

from stockade.core.errors import InvalidInputError
from stockade.mirroring.errors import InvalidMirrorError
from stockade.mirroring.models import MirrorMode
from stockade.mirroring.sources import SourceConfig, open_source

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


def check_source(url: str) -> str:
    """``https://``, ``http://`` or ``file://`` URL of a conda channel (no credentials in it).

    The scheme, host and path rules are the sources' own (:func:`open_source`); a mirror adds that
    credentials go in its token, never in the URL, and that the URL has no query.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidMirrorError("source: give the upstream channel URL", field="source")
    url = url.strip().rstrip("/")
    try:
        open_source(SourceConfig(url)).close()
        parts = urlsplit(url)
    except (InvalidInputError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, InvalidInputError) else str(exc)
        raise InvalidMirrorError(f"source: {detail}", field="source") from None
    if parts.username or parts.password:
        raise InvalidMirrorError(
            "source: do not put credentials in the URL; give them as the mirror's token",
            code="mirror:credentials-in-url",
            field="source",
        )
    if parts.query:
        raise InvalidMirrorError("source: no query, please", field="source")
    return url


def is_local_source(url: str) -> bool:
    return url.startswith("file:")


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


def check_proxy(proxy: str | None) -> str | None:
    if not proxy:
        return None
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
        raise InvalidMirrorError(
            "proxy: an http://, https:// or socks5:// URL with a host", field="proxy"
        )
    return proxy


def check_ca_bundle(path: str | None) -> str | None:
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
