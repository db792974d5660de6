"""What a repodata patch may set a record field to: conda's and rattler's record types, and
values every encoder and client reads (64-bit integers, finite numbers, bounded sizes).

A value outside these broke publication for good (issue 11: ``{"timestamp": 10**40}``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

#: The largest ``timestamp`` a record may carry: the end of year 9999, in milliseconds.
MAX_TIMESTAMP_MS = 253_402_300_799_999
MAX_KEY_LENGTH = 128
MAX_STRING_LENGTH = 10_000
MAX_ITEMS = 10_000
MAX_DEPTH = 8
_STRING_LIST_FIELDS = frozenset({"depends", "constrains", "purls"})
_INT64 = 2**63
_STRING_FIELDS = frozenset(
    {"features", "license", "license_family", "arch", "platform", "python_site_packages_path"}
)
_DEPENDS_MAP_FIELDS = frozenset({"extra_depends", "experimental_extra_depends"})
#: NUL (PostgreSQL stores no NUL in text) and UTF-16 surrogates (a JSON ``\ud800`` escape left
#: alone: not text, no encoder writes it).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def _is_timestamp(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_TIMESTAMP_MS


def _is_map_of_string_lists(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and (v is None or _is_string_list(v)) for k, v in value.items()
    )


def _scalar_problem(value: Any) -> str | None:
    if type(value) is int and not -_INT64 <= value < _INT64:
        return "holds an integer out of the 64-bit range"
    if type(value) is float and not math.isfinite(value):
        return "holds a number that is not finite"
    if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
        return "holds a string that is too long"
    if isinstance(value, str) and _NOT_TEXT.search(value):
        return "holds a string with a NUL or a lone surrogate"
    if value is not None and type(value) not in (bool, int, float, str):
        return f"holds a value of type {type(value).__name__}"
    return None


def _json_problem(value: Any, depth: int) -> str | None:
    """What makes a value unfit for a record every encoder and client reads, or None."""
    if not isinstance(value, list | dict):
        return _scalar_problem(value)
    if depth < 0:
        return f"nests deeper than {MAX_DEPTH} levels"
    if len(value) > MAX_ITEMS:
        return f"holds more than {MAX_ITEMS} items"
    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
        return "has an object key that is not a string"
    if isinstance(value, dict) and any(_NOT_TEXT.search(k) for k in value):
        return "has an object key with a NUL or a lone surrogate"
    items = value.values() if isinstance(value, dict) else value
    return next((p for p in (_json_problem(item, depth - 1) for item in items) if p), None)


def _is_string_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_ITEMS
        and all(isinstance(item, str) and len(item) <= MAX_STRING_LENGTH for item in value)
    )


#: Known repodata record fields, as conda and rattler type them: (accepts, what it must be).
_FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(_STRING_LIST_FIELDS, (_is_string_list, "must be a list of strings")),
    **{f: (lambda v: isinstance(v, str), "must be a string or null") for f in _STRING_FIELDS},
    **dict.fromkeys(
        _DEPENDS_MAP_FIELDS | {"run_exports"},
        (_is_map_of_string_lists, "must be an object of string lists"),
    ),
    "track_features": (
        lambda v: isinstance(v, str) or _is_string_list(v),
        "must be a string or list of strings",
    ),
    "noarch": (lambda v: v in ("generic", "python"), "must be 'generic', 'python' or null"),
    "timestamp": (
        _is_timestamp,
        f"must be an integer from 0 to {MAX_TIMESTAMP_MS} (milliseconds since 1970)",
    ),
    "revoked": (lambda v: type(v) is bool, "must be true, false or null"),
}


def value_problem(key: str, value: Any) -> str | None:
    """What is wrong with a (non-null) patch value for field ``key``, or None."""
    return _field_problem(key, value) or _json_problem(value, MAX_DEPTH)


def _field_problem(key: str, value: Any) -> str | None:
    """What is wrong with the value of a known record field, or None."""
    rule = _FIELD_RULES.get(key)
    if rule is None or rule[0](value):
        return None
    return rule[1]
