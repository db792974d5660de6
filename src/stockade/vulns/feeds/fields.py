"""Reading feed documents: decoding, typed field access that names the record and field, warnings.

Every parser follows one policy. A document that is not JSON/YAML, or a record whose required field
is missing or of the wrong type, raises :class:`~stockade.vulns.errors.FeedError` naming the record
and the field. Content that is valid but unusable here is skipped with a :class:`FeedWarning`:
``ignored`` for what we deliberately leave out (GIT ranges, non-CVSS severities), ``invalid`` for a
broken part of an otherwise good record (a vector the CVSS library rejects, a malformed CPE). With
``strict=True`` an ``invalid`` warning raises instead. Unknown fields are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
import yaml

from stockade.core import yamlsafe
from stockade.vulns.cvss import score_vector
from stockade.vulns.errors import FeedError, InvalidVectorError
from stockade.vulns.model import CvssVersion, Score

FeedInput = bytes | str | Mapping[str, Any] | list[Any]
WarningKind = Literal["ignored", "invalid"]
_T = TypeVar("_T", bound=Hashable)
_CWE = re.compile(r"CWE-\d+")
#: The longest advisory id or alias kept (``vulnerabilities.vuln_id``, and upper-cased, which may
#: lengthen it, ``vuln_alias_ids.alias``).
MAX_ID = 128


@dataclass(frozen=True, slots=True)
class FeedWarning:
    """A part of a record left out, and why."""

    record: str
    field: str
    message: str
    kind: WarningKind = "invalid"

    def __str__(self) -> str:
        return f"{self.record} {self.field}: {self.message}"


class Context:
    """Warnings of one parse call; raises for ``invalid`` ones when strict."""

    def __init__(self, warnings: list[FeedWarning] | None, *, strict: bool) -> None:
        self.warnings: list[FeedWarning] = warnings if warnings is not None else []
        self.strict = strict

    def warn(self, record: str, field: str, message: str, kind: WarningKind = "invalid") -> None:
        if self.strict and kind == "invalid":
            raise FeedError(message, record=record, field=field)
        self.warnings.append(FeedWarning(record, field, message, kind))

    def score(
        self,
        record: str,
        field: str,
        vector: str,
        *,
        version: CvssVersion | str | None = None,
        source: str = "",
        stated: Any = None,
    ) -> Score | None:
        """A computed score, or ``None`` with a warning when the vector is rejected."""
        stated_score = float(stated) if isinstance(stated, int | float) else None
        try:
            return score_vector(vector, version=version, source=source, stated_score=stated_score)
        except InvalidVectorError as exc:
            self.warn(record, field, exc.detail)
            return None


def decode(data: FeedInput, *, yaml_allowed: bool = False) -> Any:
    """Decode JSON (or YAML when allowed) bytes or text; mappings and lists pass through."""
    if isinstance(data, Mapping | list):
        return data
    raw = data.encode() if isinstance(data, str) else data
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not yaml_allowed:
            raise FeedError(f"not JSON: {exc}") from exc
    try:
        # every scalar stays a string: versions like 1.10 must not become floats
        return yamlsafe.load(raw, strings_only=True)
    except yaml.YAMLError as exc:
        raise FeedError(f"neither JSON nor YAML: {exc}") from exc


def mapping(value: Any, record: str, field: str, *, required: bool = True) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise FeedError(f"expected an object, got {_kind(value)}", record=record, field=field)
    return value


def items(value: Any, record: str, field: str) -> list[Any]:
    """A list field; absent or null is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise FeedError(f"expected a list, got {_kind(value)}", record=record, field=field)
    return value


def objects(value: Any, record: str, field: str) -> list[tuple[str, Mapping[str, Any]]]:
    """A list of objects, each with its field path (``affected[2]``); absent or null is empty."""
    listed = items(value, record, field)
    return [(f"{field}[{i}]", mapping(v, record, f"{field}[{i}]")) for i, v in enumerate(listed)]


def text(value: Any, record: str, field: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise FeedError(
            f"expected a non-empty string, got {_kind(value)}", record=record, field=field
        )
    return value


def record_id(value: Any, field: str) -> str:
    """A record's required id; one longer than :data:`MAX_ID` cannot be stored: the record fails."""
    rid = text(value, str(value or "(no id)")[:MAX_ID], field, required=True)
    if len(rid.upper()) > MAX_ID:
        raise FeedError(
            f"an id is at most {MAX_ID} characters, this one has {len(rid.upper())}",
            record=rid[:MAX_ID] + "...",
            field=field,
        )
    return rid


def alias_ids(ctx: Context, value: Any, record: str, field: str) -> tuple[str, ...]:
    """A record's aliases; one longer than :data:`MAX_ID` is left out with a warning."""
    kept: list[str] = []
    for i, alias in enumerate(texts(value, record, field)):
        if len(alias.upper()) > MAX_ID:
            ctx.warn(record, f"{field}[{i}]", f"an alias is at most {MAX_ID} characters; left out")
        else:
            kept.append(alias)
    return unique(kept)


def texts(value: Any, record: str, field: str) -> tuple[str, ...]:
    return tuple(
        text(v, record, f"{field}[{i}]") for i, v in enumerate(items(value, record, field))
    )


def timestamp(ctx: Context, value: Any, record: str, field: str) -> datetime | None:
    """An ISO 8601 time, UTC when the feed gives no offset; a bad one is warned about."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        ctx.warn(record, field, f"expected a timestamp string, got {_kind(value)}")
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        ctx.warn(record, field, f"not an ISO 8601 timestamp: {value!r}")
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cwe_ids(values: Iterable[Any]) -> list[str]:
    """``CWE-<n>`` ids found in strings (skips ``NVD-CWE-Other`` and free text without an id)."""
    found: list[str] = []
    for value in values:
        if isinstance(value, str):
            match = _CWE.search(value.upper())
            if match and not value.upper().startswith("NVD-"):
                found.append(match.group(0))
    return found


def unique(values: Iterable[_T]) -> tuple[_T, ...]:
    """Values without repeats, in first-seen order."""
    return tuple(dict.fromkeys(values))


def english(descriptions: Iterable[Any]) -> str:
    """The English ``value`` of a list of ``{lang, value}`` (the first one when none is English)."""
    values = [d for d in descriptions if isinstance(d, Mapping) and isinstance(d.get("value"), str)]
    for item in values:
        if str(item.get("lang", "")).lower().startswith("en"):
            return str(item["value"])
    return str(values[0]["value"]) if values else ""


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
