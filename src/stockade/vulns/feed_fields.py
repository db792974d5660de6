"""A feed's fields checked before they are stored: format, URL, schedule.

URLs are ``https://`` or ``file://`` (parsed once, decided on the normalized scheme), or, for
format ``bundle`` only, ``airgap:`` exactly: the CVE bundles dropped into the air-gap folder
(``vulns.feed_folder``).
"""

from __future__ import annotations

from datetime import datetime

from croniter import CroniterError, croniter

from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError
from stockade.core.urls import URLParseError, parse_url
from stockade.vulns.feed_folder import AIRGAP_URL
from stockade.vulns.models import FeedFormat

__all__ = ["check_fields", "next_run"]

_FORMATS = tuple(f.value for f in FeedFormat)


def next_run(schedule: str) -> datetime:
    return croniter(schedule, utcnow()).get_next(datetime)


def check_fields(url: str, fmt: str, schedule: str) -> None:
    if fmt not in _FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(_FORMATS)}", field="format")
    _check_url(url, fmt)
    if len(schedule) > 128 or not croniter.is_valid(schedule):
        raise InvalidInputError(f"not a cron expression: {schedule!r}", field="schedule")
    try:
        next_run(schedule)
    except (CroniterError, ValueError, OverflowError):  # valid syntax, no such date (Feb 31st)
        raise InvalidInputError(f"schedule {schedule!r} never fires", field="schedule") from None


def _check_url(url: str, fmt: str) -> None:
    if url == AIRGAP_URL:
        if fmt != FeedFormat.BUNDLE:
            raise InvalidInputError(
                f"{AIRGAP_URL!r} (the air-gap folder's cve.zip files) is a source of format "
                "bundle only",
                field="url",
            )
        return
    try:
        scheme = parse_url(url).scheme  # parsed once, decided on the normalized scheme
    except URLParseError:
        scheme = ""
    if scheme not in ("https", "file") or len(url) > 4096 or not url.isprintable():
        raise InvalidInputError(
            f"feed URLs are https:// or file:// (or {AIRGAP_URL!r} exactly for a bundle feed of "
            "the air-gap folder)",
            field="url",
        )
