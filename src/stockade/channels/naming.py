"""Channel names: lowercase path segments ``parent/child``; none may shadow a protocol word."""

from __future__ import annotations

import re

from stockade.channels.errors import InvalidChannelNameError

SEGMENT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
RESERVED = {
    "t",
    "api",
    "conda",
    "static",
    "shards",
    "label",
    "files",
    "patches",
    "notices",
    "subdirs",
    "freeze",
    "unfreeze",
    "remove",
    "members",
    "packages",
}
MAX_DEPTH = 4


def validate_channel_name(name: str) -> list[str]:
    segments = name.split("/")
    if len(segments) > MAX_DEPTH:
        raise InvalidChannelNameError(
            f"channel {name!r} is nested deeper than {MAX_DEPTH} levels", field="name"
        )
    for segment in segments:
        if not SEGMENT_RE.match(segment):
            raise InvalidChannelNameError(
                f"channel name segment {segment!r} must be 1-64 characters of a-z 0-9 . _ -, "
                "starting with a letter or digit",
                field="name",
            )
        if segment in RESERVED:
            raise InvalidChannelNameError(f"{segment!r} is reserved", field="name")
    return segments
