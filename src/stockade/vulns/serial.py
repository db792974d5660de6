"""JSON shapes of :mod:`stockade.vulns.model` values, as the ``vulnerabilities`` table stores them.

Round trip: ``from_row_fields(to_row_fields(v)) == v`` for every parsed :class:`Vulnerability`.

``affected`` is a list of objects; keys with the dataclass default are left out::

    {"ecosystem": "PyPI", "name": "aiohttp", "purl": "pkg:pypi/aiohttp",
     "vendor": "openssl", "product": "openssl", "cpes": ["cpe:2.3:a:..."],
     "ranges": [{"kind": "ecosystem", "start": "1.0", "start_inclusive": true,
                 "end": "3.7.4", "end_inclusive": false, "status": "affected"}],
     "versions": ["0.1", "0.2"], "default_status": "unaffected"}

``scores``: ``[{"version": "3.1", "vector": "CVSS:3.1/...", "base_score": 7.5, "source": "nvd@nist.gov",
"stated_score": 7.5}]``; ``references``: ``[{"url": "...", "tags": ["FIX"]}]``.
:func:`digest` hashes the whole serialisation (sorted keys), so any change of the record changes it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from stockade.vulns.model import (
    Affected,
    CvssVersion,
    RangeKind,
    Reference,
    Score,
    Status,
    VersionRange,
    Vulnerability,
)

__all__ = [
    "affected_from_json",
    "affected_to_json",
    "digest",
    "record_fields",
    "vulnerability_from_fields",
]

_RANGE_DEFAULTS = VersionRange()
_AFFECTED_DEFAULTS = Affected()


def range_to_json(rng: VersionRange) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": rng.kind.value}
    for key in ("start", "start_inclusive", "end", "end_inclusive"):
        value = getattr(rng, key)
        if value != getattr(_RANGE_DEFAULTS, key):
            out[key] = value
    if rng.status is not Status.AFFECTED:
        out["status"] = rng.status.value
    return out


def range_from_json(raw: dict[str, Any]) -> VersionRange:
    return VersionRange(
        kind=RangeKind(raw.get("kind", RangeKind.ECOSYSTEM.value)),
        start=raw.get("start"),
        start_inclusive=bool(raw.get("start_inclusive", True)),
        end=raw.get("end"),
        end_inclusive=bool(raw.get("end_inclusive", False)),
        status=Status(raw.get("status", Status.AFFECTED.value)),
    )


def affected_to_json(affected: Affected) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("ecosystem", "name", "purl", "vendor", "product"):
        value = getattr(affected, key)
        if value is not None:
            out[key] = value
    if affected.cpes:
        out["cpes"] = list(affected.cpes)
    if affected.ranges:
        out["ranges"] = [range_to_json(r) for r in affected.ranges]
    if affected.versions:
        out["versions"] = list(affected.versions)
    if affected.default_status is not _AFFECTED_DEFAULTS.default_status:
        out["default_status"] = affected.default_status.value
    return out


def affected_from_json(raw: dict[str, Any]) -> Affected:
    return Affected(
        ecosystem=raw.get("ecosystem"),
        name=raw.get("name"),
        purl=raw.get("purl"),
        vendor=raw.get("vendor"),
        product=raw.get("product"),
        cpes=tuple(raw.get("cpes", ())),
        ranges=tuple(range_from_json(r) for r in raw.get("ranges", ())),
        versions=tuple(raw.get("versions", ())),
        default_status=Status(raw.get("default_status", _AFFECTED_DEFAULTS.default_status.value)),
    )


def score_to_json(score: Score) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": score.version.value,
        "vector": score.vector,
        "base_score": score.base_score,
    }
    if score.source:
        out["source"] = score.source
    if score.stated_score is not None:
        out["stated_score"] = score.stated_score
    return out


def score_from_json(raw: dict[str, Any]) -> Score:
    stated = raw.get("stated_score")
    return Score(
        version=CvssVersion(raw["version"]),
        vector=raw["vector"],
        base_score=float(raw["base_score"]),
        source=raw.get("source", ""),
        stated_score=float(stated) if stated is not None else None,
    )


def record_fields(vuln: Vulnerability) -> dict[str, Any]:
    """The column values of a ``vulnerabilities`` row (without feed, KEV, EPSS and digest)."""
    best = vuln.best_score()
    return {
        "vuln_id": vuln.id,
        "source": vuln.source,
        "aliases": list(vuln.aliases),
        "summary": vuln.summary,
        "details": vuln.details,
        "published": vuln.published,
        "modified": vuln.modified,
        "withdrawn": vuln.withdrawn,
        "scores": [score_to_json(s) for s in vuln.scores],
        "best_score": best.base_score if best is not None else None,
        "severity": best.severity.value if best is not None else None,
        "cwes": list(vuln.cwes),
        "references": [{"url": r.url, "tags": list(r.tags)} for r in vuln.references],
        "affected": [affected_to_json(a) for a in vuln.affected],
    }


def vulnerability_from_fields(fields: dict[str, Any]) -> Vulnerability:
    """A :class:`Vulnerability` from :func:`record_fields` output (or a row read as such)."""
    return Vulnerability(
        id=fields["vuln_id"],
        source=fields["source"],
        aliases=tuple(fields.get("aliases") or ()),
        summary=fields.get("summary") or "",
        details=fields.get("details") or "",
        published=fields.get("published"),
        modified=fields.get("modified"),
        withdrawn=fields.get("withdrawn"),
        scores=tuple(score_from_json(s) for s in fields.get("scores") or ()),
        cwes=tuple(fields.get("cwes") or ()),
        references=tuple(
            Reference(r["url"], tuple(r.get("tags", ()))) for r in fields.get("references") or ()
        ),
        affected=tuple(affected_from_json(a) for a in fields.get("affected") or ()),
    )


def digest(fields: dict[str, Any]) -> str:
    """sha256 of :func:`record_fields` output, keys sorted, dates as ISO 8601."""
    body = orjson.dumps(
        fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=_default
    )
    return hashlib.sha256(body).hexdigest()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")
