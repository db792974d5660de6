"""NVD API 2.0 CVE pages (``{"vulnerabilities": [{"cve": {...}}, ...]}``) to :class:`Vulnerability`.

Read per CVE: ``id``, ``published``, ``lastModified``, ``vulnStatus`` (``Rejected`` marks it
withdrawn), the English description (NVD has no title: ``summary`` stays empty), ``metrics``
``cvssMetricV40``/``V31``/``V30``/``V2`` (the vector is scored again; the stated ``baseScore`` is
kept as :attr:`Score.stated_score`; primary assessments before secondary ones), ``weaknesses`` (CWE
ids), ``references`` and ``configurations``.

Configurations: every ``cpeMatch`` with ``vulnerable: true`` in a node that is not negated becomes a
range of the ``vendor:product`` its ``criteria`` names (CPE 2.3). With ``versionStart``/``versionEnd``
bounds the range is those bounds; without, the CPE's version field decides: ``*`` every version, a
concrete version exactly that version (with the update field appended when it names a pre-release,
``2.7.0`` + ``rc1``), ``-`` ("not applicable": the product has no versions) nothing. Non-vulnerable
matches are platform conditions of an ``AND`` configuration (running on an OS) and are not products
that could be the conda package; they are skipped. All matches of one product are one
:class:`Affected` entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stockade.vulns.feeds.fields import (
    Context,
    FeedInput,
    FeedWarning,
    cwe_ids,
    decode,
    english,
    items,
    mapping,
    objects,
    record_id,
    text,
    timestamp,
    unique,
)
from stockade.vulns.model import Affected, RangeKind, Reference, Score, VersionRange, Vulnerability

__all__ = ["CpeName", "parse_cpe", "parse_nvd"]

_METRICS = (("cvssMetricV40", "4.0"), ("cvssMetricV31", "3.1"), ("cvssMetricV30", "3.0"))
_METRICS_V2 = ("cvssMetricV2", "2.0")
_PRE_RELEASE_UPDATE = re.compile(r"(alpha|beta|preview|pre|rc|a|b|c|dev|post)[._-]?\d*")
_CPE_FIELDS = 13  # cpe, 2.3, part, vendor, product, version, update, edition, ... other
_BOUNDS = (
    ("versionStartIncluding", "start", True),
    ("versionStartExcluding", "start", False),
    ("versionEndIncluding", "end", True),
    ("versionEndExcluding", "end", False),
)


class CpeName:
    """The parts of a CPE 2.3 formatted string that name a product and a version."""

    __slots__ = ("part", "product", "update", "vendor", "version")

    def __init__(self, part: str, vendor: str, product: str, version: str, update: str) -> None:
        self.part, self.vendor, self.product = part, vendor, product
        self.version, self.update = version, update


def parse_cpe(criteria: str) -> CpeName | None:
    """Split ``cpe:2.3:a:vendor:product:version:update:...`` (``\\``-escapes honoured)."""
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for char in criteria:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    if len(fields) != _CPE_FIELDS or fields[:2] != ["cpe", "2.3"] or not all(fields[3:5]):
        return None
    part, vendor, product, version, update = (f.lower() for f in fields[2:7])
    return CpeName(part, vendor, product, version, update)


def parse_nvd(
    data: FeedInput, *, warnings: list[FeedWarning] | None = None, strict: bool = False
) -> list[Vulnerability]:
    """Parse an NVD API 2.0 CVE response page (or a list of its ``vulnerabilities`` items)."""
    ctx = Context(warnings, strict=strict)
    doc = decode(data)
    entries = (
        doc
        if isinstance(doc, list)
        else mapping(doc, "(page)", "(document)").get("vulnerabilities")
    )
    found: list[Vulnerability] = []
    for i, entry in enumerate(items(entries, "(page)", "vulnerabilities")):
        cve = mapping(mapping(entry, f"#{i}", "(item)").get("cve"), f"#{i}", "cve")
        found.append(_cve(ctx, cve))
    return found


def _cve(ctx: Context, cve: Mapping[str, Any]) -> Vulnerability:
    rid = record_id(cve.get("id"), "id")
    modified = timestamp(ctx, cve.get("lastModified"), rid, "lastModified")
    published = timestamp(ctx, cve.get("published"), rid, "published")
    rejected = text(cve.get("vulnStatus"), rid, "vulnStatus").lower() == "rejected"
    weaknesses = [
        d.get("value")
        for i, w in enumerate(items(cve.get("weaknesses"), rid, "weaknesses"))
        for d in items(mapping(w, rid, f"weaknesses[{i}]").get("description"), rid, "weaknesses")
        if isinstance(d, Mapping)
    ]
    return Vulnerability(
        id=rid,
        source="nvd",
        details=english(items(cve.get("descriptions"), rid, "descriptions")),
        published=published,
        modified=modified,
        withdrawn=(modified or published) if rejected else None,
        scores=_scores(ctx, rid, mapping(cve.get("metrics"), rid, "metrics", required=False)),
        cwes=unique(cwe_ids(weaknesses)),
        references=tuple(_references(rid, cve.get("references"))),
        affected=_affected(ctx, rid, cve.get("configurations")),
    )


def _scores(ctx: Context, rid: str, metrics: Mapping[str, Any]) -> tuple[Score, ...]:
    scores: list[Score] = []
    for key, version in (*_METRICS, _METRICS_V2):
        listed = [mapping(m, rid, f"metrics.{key}") for m in items(metrics.get(key), rid, key)]
        listed.sort(key=lambda m: m.get("type") != "Primary")
        for i, metric in enumerate(listed):
            where = f"metrics.{key}[{i}].cvssData"
            data = mapping(metric.get("cvssData"), rid, where)
            vector = text(data.get("vectorString"), rid, f"{where}.vectorString", required=True)
            stated_version = data.get("version", version)
            source = text(metric.get("source"), rid, f"metrics.{key}[{i}].source")
            score = ctx.score(
                rid,
                where,
                vector,
                version=stated_version,
                source=source,
                stated=data.get("baseScore"),
            )
            if score is not None:
                scores.append(score)
    return unique(scores)


def _references(rid: str, value: Any) -> list[Reference]:
    refs: list[Reference] = []
    for where, entry in objects(value, rid, "references"):
        url = text(entry.get("url"), rid, f"{where}.url", required=True)
        tags = tuple(
            t for t in items(entry.get("tags"), rid, f"{where}.tags") if isinstance(t, str)
        )
        refs.append(Reference(url=url, tags=tags))
    return refs


def _affected(ctx: Context, rid: str, configurations: Any) -> tuple[Affected, ...]:
    products: dict[tuple[str, str], tuple[list[VersionRange], list[str]]] = {}
    for config_field, config in objects(configurations, rid, "configurations"):
        for where, node in objects(config.get("nodes"), rid, f"{config_field}.nodes"):
            if node.get("negate") is True:
                ctx.warn(rid, where, "negated node left out", "ignored")
                continue
            for field, match in objects(node.get("cpeMatch"), rid, f"{where}.cpeMatch"):
                if match.get("vulnerable") is True:
                    _add_match(ctx, rid, field, match, products)
    return tuple(
        Affected(vendor=vendor, product=product, ranges=tuple(ranges), versions=unique(versions))
        for (vendor, product), (ranges, versions) in products.items()
    )


def _add_match(
    ctx: Context,
    rid: str,
    where: str,
    match: Mapping[str, Any],
    products: dict[tuple[str, str], tuple[list[VersionRange], list[str]]],
) -> None:
    criteria = text(match.get("criteria"), rid, f"{where}.criteria", required=True)
    cpe = parse_cpe(criteria)
    if cpe is None:
        ctx.warn(rid, f"{where}.criteria", f"not a CPE 2.3 name: {criteria!r}")
        return
    ranges, versions = products.setdefault((cpe.vendor, cpe.product), ([], []))
    bounds: dict[str, tuple[str, bool]] = {}
    for key, side, inclusive in _BOUNDS:
        value = match.get(key)
        if isinstance(value, str) and value.strip():
            bounds[side] = (value.strip(), inclusive)
    if bounds:
        start, start_inclusive = bounds.get("start", (None, True))
        end, end_inclusive = bounds.get("end", (None, False))
        ranges.append(VersionRange(RangeKind.CUSTOM, start, start_inclusive, end, end_inclusive))
    elif cpe.version == "*":
        ranges.append(VersionRange(RangeKind.CUSTOM))
    elif cpe.version not in ("-", ""):
        update = cpe.update if _PRE_RELEASE_UPDATE.fullmatch(cpe.update) else ""
        versions.append(cpe.version + update)
