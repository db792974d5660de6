"""CVE JSON 5 records (``dataType: CVE_RECORD``; one record or a list) to :class:`Vulnerability`.

Read: ``cveMetadata`` (``cveId``, ``state``, ``datePublished``, ``dateUpdated``, ``dateRejected``;
``REJECTED`` marks the record withdrawn), the CNA container and every ADP container: ``title``
(summary), English ``descriptions`` (details; the CNA's first), ``metrics`` (``cvssV4_0``,
``cvssV3_1``, ``cvssV3_0``, ``cvssV2_0`` vectors, scored again; ``other`` formats such as OpenSSL's
own "Low"/"Moderate" are not CVSS and are skipped), ``problemTypes`` (CWE ids), ``references`` and
``affected``.

An ``affected`` entry names its product by ``vendor``/``product`` (lowercased, spaces as ``_``;
``n/a`` dropped), by ``collectionURL`` + ``packageName`` (the ecosystem is read from the collection's
host: pypi.org is ``PyPI``, ...) and by ``cpes``. Its ``versions``: ``version`` with ``lessThan`` or
``lessThanOrEqual`` is a range (start ``0``/``*``: open; end ``*``: open), a lone ``version`` an exact
range, each with its ``status``; ``changes`` split a range at each ``at`` version into pieces with the
changed status. ``versionType: git`` entries are left out (``ignored`` warning). ``defaultStatus``
defaults to ``unknown`` as the schema says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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
    texts,
    timestamp,
    unique,
)
from stockade.vulns.model import (
    Affected,
    RangeKind,
    Reference,
    Score,
    Status,
    VersionRange,
    Vulnerability,
)
from stockade.vulns.ranges import comparable

__all__ = ["ecosystem_of_collection", "parse_cve5"]

_METRICS = (("cvssV4_0", "4.0"), ("cvssV3_1", "3.1"), ("cvssV3_0", "3.0"), ("cvssV2_0", "2.0"))
_OPEN = ("0", "*", "")
_COLLECTIONS = {
    "pypi.org": "PyPI",
    "pypi.python.org": "PyPI",
    "files.pythonhosted.org": "PyPI",
    "www.npmjs.com": "npm",
    "registry.npmjs.org": "npm",
    "crates.io": "crates.io",
    "rubygems.org": "RubyGems",
    "repo.maven.apache.org": "Maven",
    "repo1.maven.org": "Maven",
    "packagist.org": "Packagist",
    "www.nuget.org": "NuGet",
    "pkg.go.dev": "Go",
    "proxy.golang.org": "Go",
    "anaconda.org": "conda",
    "conda.anaconda.org": "conda",
    "github.com": "GitHub",
}
_KINDS = {"semver": RangeKind.SEMVER, "python": RangeKind.ECOSYSTEM, "pypi": RangeKind.ECOSYSTEM}
_SPACES = re.compile(r"\s+")


def ecosystem_of_collection(url: str) -> str | None:
    """The OSV ecosystem name of a CVE 5 ``collectionURL`` (``https://pypi.org`` -> ``PyPI``)."""
    host = (urlsplit(url.strip()).hostname or url.strip()).lower()
    return _COLLECTIONS.get(host)


def parse_cve5(
    data: FeedInput, *, warnings: list[FeedWarning] | None = None, strict: bool = False
) -> list[Vulnerability]:
    """Parse one CVE JSON 5 record or a list of them."""
    ctx = Context(warnings, strict=strict)
    doc = decode(data)
    records = doc if isinstance(doc, list) else [doc]
    return [_record(ctx, mapping(r, f"#{i}", "(record)")) for i, r in enumerate(records)]


def _record(ctx: Context, raw: Mapping[str, Any]) -> Vulnerability:
    meta = mapping(raw.get("cveMetadata"), "(no id)", "cveMetadata")
    rid = record_id(meta.get("cveId"), "cveMetadata.cveId")
    containers = mapping(raw.get("containers"), rid, "containers")
    cna = mapping(containers.get("cna"), rid, "containers.cna")
    adps = [mapping(a, rid, "containers.adp") for a in items(containers.get("adp"), rid, "adp")]
    named = [("containers.cna", cna)] + [(f"containers.adp[{i}]", a) for i, a in enumerate(adps)]
    rejected = text(meta.get("state"), rid, "cveMetadata.state").upper() == "REJECTED"
    updated = timestamp(ctx, meta.get("dateUpdated"), rid, "cveMetadata.dateUpdated")
    published = timestamp(ctx, meta.get("datePublished"), rid, "cveMetadata.datePublished")
    if published is None:
        published = timestamp(ctx, cna.get("datePublic"), rid, "containers.cna.datePublic")
    when_rejected = timestamp(ctx, meta.get("dateRejected"), rid, "cveMetadata.dateRejected")
    scores: list[Score] = []
    affected: list[Affected] = []
    cwes: list[str] = []
    refs: list[Reference] = []
    for where, container in named:
        scores += _scores(ctx, rid, where, container)
        affected += _affected_list(ctx, rid, where, container.get("affected"))
        cwes += _cwes(rid, where, container.get("problemTypes"))
        refs += _references(rid, where, container.get("references"))
    return Vulnerability(
        id=rid,
        source="cve5",
        summary=text(cna.get("title"), rid, "containers.cna.title"),
        details=english(items(cna.get("descriptions"), rid, "containers.cna.descriptions")),
        published=published,
        modified=updated,
        withdrawn=(when_rejected or updated or published) if rejected else None,
        scores=unique(scores),
        cwes=unique(cwes),
        references=unique(refs),
        affected=unique(affected),
    )


def _provider(container: Mapping[str, Any]) -> str:
    provider = container.get("providerMetadata")
    name = provider.get("shortName") if isinstance(provider, Mapping) else None
    return name if isinstance(name, str) else ""


def _scores(ctx: Context, rid: str, where: str, container: Mapping[str, Any]) -> list[Score]:
    scores: list[Score] = []
    for metric_field, metric in objects(container.get("metrics"), rid, f"{where}.metrics"):
        for key, version in _METRICS:
            if key not in metric:
                continue
            field = f"{metric_field}.{key}"
            data = mapping(metric[key], rid, field)
            vector = text(data.get("vectorString"), rid, f"{field}.vectorString", required=True)
            score = ctx.score(
                rid,
                field,
                vector,
                version=version,
                source=_provider(container),
                stated=data.get("baseScore"),
            )
            if score is not None:
                scores.append(score)
    return scores


def _cwes(rid: str, where: str, problem_types: Any) -> list[str]:
    found: list[str] = []
    for field, problem in objects(problem_types, rid, f"{where}.problemTypes"):
        for desc in items(problem.get("descriptions"), rid, f"{field}.descriptions"):
            if isinstance(desc, Mapping):
                found += cwe_ids([desc.get("cweId"), desc.get("description")])[:1]
    return found


def _references(rid: str, where: str, value: Any) -> list[Reference]:
    refs: list[Reference] = []
    for field, entry in objects(value, rid, f"{where}.references"):
        url = text(entry.get("url"), rid, f"{field}.url", required=True)
        refs.append(Reference(url=url, tags=texts(entry.get("tags"), rid, f"{field}.tags")))
    return refs


def _affected_list(ctx: Context, rid: str, where: str, value: Any) -> list[Affected]:
    found: list[Affected] = []
    for field, entry in objects(value, rid, f"{where}.affected"):
        parsed = _affected(ctx, rid, field, entry)
        if parsed is not None:
            found.append(parsed)
    return found


def _affected(ctx: Context, rid: str, where: str, entry: Mapping[str, Any]) -> Affected | None:
    vendor = _cpe_word(text(entry.get("vendor"), rid, f"{where}.vendor"))
    product = _cpe_word(text(entry.get("product"), rid, f"{where}.product"))
    name = text(entry.get("packageName"), rid, f"{where}.packageName") or None
    collection = text(entry.get("collectionURL"), rid, f"{where}.collectionURL")
    cpes = texts(entry.get("cpes"), rid, f"{where}.cpes")
    if not (product or name or cpes):
        ctx.warn(rid, where, "names no product, package or CPE; left out")
        return None
    default = _status(ctx, rid, f"{where}.defaultStatus", entry.get("defaultStatus", "unknown"))
    ranges: list[VersionRange] = []
    for field, version in objects(entry.get("versions"), rid, f"{where}.versions"):
        ranges += _versions(ctx, rid, field, version)
    ecosystem = ecosystem_of_collection(collection) if collection and name else None
    return Affected(
        ecosystem=ecosystem,
        name=name,
        vendor=vendor,
        product=product,
        cpes=cpes,
        ranges=tuple(ranges),
        default_status=default or Status.UNKNOWN,
    )


def _cpe_word(value: str) -> str | None:
    word = _SPACES.sub("_", value.strip().lower())
    return None if word in ("", "n/a", "unknown") else word


def _status(ctx: Context, rid: str, field: str, value: Any) -> Status | None:
    try:
        return Status(str(value).lower())
    except ValueError:
        ctx.warn(rid, field, f"unknown status {value!r}")
        return None


def _versions(ctx: Context, rid: str, where: str, entry: Mapping[str, Any]) -> list[VersionRange]:
    version = text(entry.get("version"), rid, f"{where}.version", required=True).strip()
    status = _status(ctx, rid, f"{where}.status", entry.get("status"))
    version_type = text(entry.get("versionType"), rid, f"{where}.versionType").lower()
    if status is None:
        return []
    if version_type == "git":
        ctx.warn(rid, where, "git commit versions left out", "ignored")
        return []
    kind = _KINDS.get(version_type, RangeKind.CUSTOM)
    less_than = entry.get("lessThan")
    at_most = entry.get("lessThanOrEqual")
    if less_than is None and at_most is None:
        return [VersionRange(kind, version, True, version, True, status)]
    end_field = "lessThan" if less_than is not None else "lessThanOrEqual"
    end = text(entry.get(end_field), rid, f"{where}.{end_field}", required=True).strip()
    whole = VersionRange(
        kind,
        None if version in _OPEN else version,
        True,
        None if end == "*" else end,
        at_most is not None and less_than is None,
        status,
    )
    return _split(ctx, rid, where, whole, entry.get("changes"))


def _split(
    ctx: Context, rid: str, where: str, whole: VersionRange, changes: Any
) -> list[VersionRange]:
    """Pieces of ``whole`` between ``changes[].at`` versions, each with its status."""
    points: list[tuple[Any, str, Status]] = []
    for field, change in objects(changes, rid, f"{where}.changes"):
        at = text(change.get("at"), rid, f"{field}.at", required=True).strip()
        status = _status(ctx, rid, f"{field}.status", change.get("status"))
        key = comparable(at)
        if key is None or status is None:
            ctx.warn(rid, field, f"change at {at!r} cannot be placed; left out")
            continue
        points.append((key, at, status))
    points.sort(key=lambda p: p[0])
    pieces: list[VersionRange] = []
    start, status = whole.start, whole.status
    for _, at, new_status in points:
        pieces.append(VersionRange(whole.kind, start, True, at, False, status))
        start, status = at, new_status
    pieces.append(VersionRange(whole.kind, start, True, whole.end, whole.end_inclusive, status))
    return pieces
