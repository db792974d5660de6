"""OSV records (JSON or YAML; one record, or a list of records) to :class:`Vulnerability`.

Read: ``id``, ``aliases``, ``summary``, ``details``, ``published``, ``modified``, ``withdrawn``,
``severity`` (``CVSS_V2``/``CVSS_V3``/``CVSS_V4`` vectors, also per affected package), ``references``,
``database_specific.cwe_ids`` (GitHub advisories) and ``affected[]``: ``package`` (ecosystem, name,
purl), ``ranges`` of type ``ECOSYSTEM`` and ``SEMVER`` and explicit ``versions``.

``GIT`` ranges are left out with an ``ignored`` warning: commits cannot be placed among conda
versions, and OSV advisories that have them also carry the ECOSYSTEM range or version list. Events
are evaluated as the OSV schema says, in version order (conda ordering, ``vulns.ranges``): each
``introduced`` opens an interval (``"0"``: from the first version), the next ``fixed`` closes it
exclusive, ``last_affected`` inclusive; ``limit`` caps every interval (exclusive, ``*`` none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockade.vulns.feeds.fields import (
    Context,
    FeedInput,
    FeedWarning,
    alias_ids,
    cwe_ids,
    decode,
    mapping,
    objects,
    record_id,
    text,
    texts,
    timestamp,
    unique,
)
from stockade.vulns.model import Affected, RangeKind, Reference, Score, VersionRange, Vulnerability
from stockade.vulns.ranges import comparable

__all__ = ["parse_osv"]

_SEVERITY_TYPES = {"CVSS_V2": "2.0", "CVSS_V3": "3", "CVSS_V4": "4.0"}
_RANGE_KINDS = {"ECOSYSTEM": RangeKind.ECOSYSTEM, "SEMVER": RangeKind.SEMVER}
_EVENTS = ("introduced", "fixed", "last_affected", "limit")


def parse_osv(
    data: FeedInput, *, warnings: list[FeedWarning] | None = None, strict: bool = False
) -> list[Vulnerability]:
    """Parse one OSV record or a list of them (JSON or YAML)."""
    ctx = Context(warnings, strict=strict)
    doc = decode(data, yaml_allowed=True)
    records = doc if isinstance(doc, list) else [doc]
    return [_record(ctx, mapping(r, f"#{i}", "(record)")) for i, r in enumerate(records)]


def _record(ctx: Context, raw: Mapping[str, Any]) -> Vulnerability:
    rid = record_id(raw.get("id"), "id")
    affected: list[Affected] = []
    scores = _scores(ctx, rid, "severity", raw.get("severity"))
    for where, entry in objects(raw.get("affected"), rid, "affected"):
        scores += _scores(ctx, rid, f"{where}.severity", entry.get("severity"))
        parsed = _affected(ctx, rid, where, entry)
        if parsed is not None:
            affected.append(parsed)
    specific = raw.get("database_specific")
    cwes = specific.get("cwe_ids") if isinstance(specific, Mapping) else None
    return Vulnerability(
        id=rid,
        source="osv",
        aliases=alias_ids(ctx, raw.get("aliases"), rid, "aliases"),
        summary=text(raw.get("summary"), rid, "summary"),
        details=text(raw.get("details"), rid, "details"),
        published=timestamp(ctx, raw.get("published"), rid, "published"),
        modified=timestamp(ctx, raw.get("modified"), rid, "modified"),
        withdrawn=timestamp(ctx, raw.get("withdrawn"), rid, "withdrawn"),
        scores=unique(scores),
        cwes=unique(cwe_ids(cwes if isinstance(cwes, list) else [])),
        references=tuple(_references(rid, raw.get("references"))),
        affected=tuple(affected),
    )


def _scores(ctx: Context, rid: str, field: str, value: Any) -> list[Score]:
    scores: list[Score] = []
    for where, entry in objects(value, rid, field):
        kind = text(entry.get("type"), rid, f"{where}.type", required=True)
        vector = text(entry.get("score"), rid, f"{where}.score", required=True)
        if kind not in _SEVERITY_TYPES:
            ctx.warn(rid, where, f"severity type {kind} is not CVSS; left out", "ignored")
            continue
        score = ctx.score(
            rid, f"{where}.score", vector, version=_SEVERITY_TYPES[kind], source="osv"
        )
        if score is not None:
            scores.append(score)
    return scores


def _references(rid: str, value: Any) -> list[Reference]:
    refs: list[Reference] = []
    for where, entry in objects(value, rid, "references"):
        url = text(entry.get("url"), rid, f"{where}.url", required=True)
        kind = text(entry.get("type"), rid, f"{where}.type")
        refs.append(Reference(url=url, tags=(kind,) if kind else ()))
    return refs


def _affected(ctx: Context, rid: str, where: str, entry: Mapping[str, Any]) -> Affected | None:
    if entry.get("package") is None:
        ctx.warn(rid, f"{where}.package", "no package (a GIT-only entry); left out", "ignored")
        return None
    package = mapping(entry.get("package"), rid, f"{where}.package")
    ecosystem = text(package.get("ecosystem"), rid, f"{where}.package.ecosystem", required=True)
    name = text(package.get("name"), rid, f"{where}.package.name", required=True)
    letters = ecosystem.lower() != "pypi"
    ranges: list[VersionRange] = []
    for field, rng in objects(entry.get("ranges"), rid, f"{where}.ranges"):
        ranges += _range(ctx, rid, field, rng, letters)
    return Affected(
        ecosystem=ecosystem,
        name=name,
        purl=text(package.get("purl"), rid, f"{where}.package.purl") or None,
        ranges=tuple(ranges),
        versions=unique(texts(entry.get("versions"), rid, f"{where}.versions")),
    )


def _range(
    ctx: Context, rid: str, where: str, rng: Mapping[str, Any], letters: bool
) -> list[VersionRange]:
    kind_name = text(rng.get("type"), rid, f"{where}.type", required=True)
    kind = _RANGE_KINDS.get(kind_name)
    if kind is None:
        message = f"{kind_name} range left out (commits have no place among conda versions)"
        ctx.warn(rid, where, message, "ignored" if kind_name == "GIT" else "invalid")
        return []
    events: list[tuple[str, str]] = []
    for field, event in objects(rng.get("events"), rid, f"{where}.events"):
        pairs = [(key, value) for key, value in event.items() if key in _EVENTS]
        if len(pairs) != 1 or not isinstance(pairs[0][1], str):
            ctx.warn(rid, field, f"not one known event: {dict(event)!r}")
            continue
        events.append(pairs[0])
    return intervals(events, kind, letters=letters)


def intervals(
    events: list[tuple[str, str]], kind: RangeKind, *, letters: bool
) -> list[VersionRange]:
    """OSV events (``(name, version)`` pairs) as intervals, evaluated in version order."""
    ordered = _in_version_order(events, letters)
    found: list[VersionRange] = []
    opened: tuple[str | None] | None = None  # the start of the interval being read, if any
    limits = [v for name, v in ordered if name == "limit" and v != "*"]
    for name, version in ordered:
        if name == "introduced" and opened is None:
            opened = (None if version in ("0", "") else version,)
        elif name in ("fixed", "last_affected") and opened is not None:
            found.append(VersionRange(kind, opened[0], True, version, name == "last_affected"))
            opened = None
    if opened is not None:
        found.append(VersionRange(kind, opened[0], True, None, False))
    if limits:
        cap = limits[-1]  # the highest limit: a version must be below at least one
        found = [_capped(r, cap, letters) for r in found]
    return found


def _in_version_order(events: list[tuple[str, str]], letters: bool) -> list[tuple[str, str]]:
    """Events sorted by version (``introduced "0"`` first); as given when a version is unparseable."""
    keyed = []
    for name, version in events:
        key = None if version in ("0", "*") else comparable(version, letter_releases=letters)
        if key is None and version not in ("0", "*"):
            return events
        keyed.append((name, version, key))
    floor = [(n, v) for n, v, k in keyed if k is None and v == "0"]
    rest = sorted((e for e in keyed if e[2] is not None), key=_SortKey)
    tail = [(n, v) for n, v, k in keyed if k is None and v == "*"]
    return floor + [(n, v) for n, v, _ in rest] + tail


class _SortKey:
    """Orders ``(name, version, Version)`` triples by the rattler version (stable otherwise)."""

    __slots__ = ("key",)

    def __init__(self, entry: tuple[str, str, Any]) -> None:
        self.key = entry[2]

    def __lt__(self, other: _SortKey) -> bool:
        return bool(self.key < other.key)


def _capped(rng: VersionRange, cap: str, letters: bool) -> VersionRange:
    end = comparable(rng.end, letter_releases=letters) if rng.end is not None else None
    limit = comparable(cap, letter_releases=letters)
    if limit is not None and (end is None or limit < end):
        return VersionRange(rng.kind, rng.start, rng.start_inclusive, cap, False, rng.status)
    return rng
