"""``cve.zip``: Stockade's CVE bundle (verified import; export in ``bundle_export``), and zips of
feed files.

The format is documented in ``docs/formats.md`` ("CVE bundle (cve.zip)"). In short, a zip with:

- ``manifest.json``: ``{"format": "stockade-cve-bundle", "format_version": 1, "created",
  "producer", "files": {path: {"sha256", "size"}}, "counts": {...}}``;
- ``vulnerabilities/NNNNNN.jsonl``: one advisory per line in the ``vulns.serial`` representation
  (``vuln_id``, ``source``, ``aliases``, ..., ``affected`` with NVD CPE ranges or OSV ranges), or
  ``vulnerabilities/*.json`` holding one advisory object or a list of them;
- ``enrichment.json`` (optional): ``{"rows": [{"cve_id", "kev", "kev_date_added", "kev_due_date",
  "kev_ransomware", "epss", "epss_percentile"}]}``, a snapshot that replaces the KEV/EPSS known;
- ``name_map.json`` (optional): ``{"entries": [{"conda", "identifier", "note"}]}``, admin entries
  (``!identifier`` suppressions included), added to the map;
- ``curations.json`` (optional): the curation decisions (``vulns.bundle_curations``).

An import checks every member before it touches the database: no absolute path, ``..``,
backslash or drive letter, no symlink, no duplicate or encrypted member, only stored or deflate
members, at most
``max_members`` members and ``max_total`` bytes unpacked, a known ``format_version``, every file
listed in the manifest present with its size and sha256 and nothing unlisted. It then stores
everything in the caller's transaction and matches what changed; any error leaves the database as
it was (the caller rolls back). Records are not trusted: :func:`_vulnerability` checks every field
of an advisory (types, enum values, dates with an offset) and recomputes each score from its
vector, refusing a record that states another; enrichment rows and name-map entries (notes at most
``NOTE_MAX``) are checked likewise. Any error in reading a record is a :class:`BundleError` naming
the member, line (index) and record.

A zip of feed files (``osv``, ``nvd``, ``cve5``, the CLI's folder import) goes through the same
member checks, and every document must parse.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.errors import InvalidInputError
from stockade.vulns.bundle_curations import CURATIONS, import_decisions
from stockade.vulns.bundle_export import ExportCounts, export_bundle
from stockade.vulns.bundlefile import (
    ENRICHMENT,
    MANIFEST,
    NAME_MAP,
    BundleError,
    BundleLimits,
    BundleTooLargeError,
    listed_in,
    members,
    open_zip,
    read_manifest,
    read_member,
    verified,
)
from stockade.vulns.cvss import score_vector
from stockade.vulns.enrich import EPSS_COLUMNS, KEV_COLUMNS, Enrichments, is_cve
from stockade.vulns.errors import FeedError, InvalidVectorError, NameMapError
from stockade.vulns.feeds import parse_cve5, parse_nvd, parse_osv
from stockade.vulns.matcher import Matcher
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
from stockade.vulns.namemap import NameRow, apply_name_rows, name_row, retarget_names
from stockade.vulns.security import SecurityReader
from stockade.vulns.store import UpsertResult, VulnStore

__all__ = [
    "BundleError",
    "BundleLimits",
    "BundleService",
    "BundleTooLargeError",
    "ExportCounts",
    "ImportCounts",
    "detect_format",
    "export_bundle",
    "import_bundle",
    "import_zip",
]

FEED_PARSERS: dict[str, Callable[[bytes], list[Vulnerability]]] = {
    "osv": parse_osv,
    "nvd": parse_nvd,
    "cve5": parse_cve5,
}
FEED_SUFFIXES = {"osv": (".json", ".yaml", ".yml"), "nvd": (".json",), "cve5": (".json",)}
_DATES = ("published", "modified", "withdrawn")


@dataclass
class ImportCounts:
    format: str = "bundle"
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    files: int = 0
    enrichment: int = 0
    name_map: int = 0
    curations: int = 0
    matches_added: int = 0
    matches_removed: int = 0
    matches_restatused: int = 0
    touched: list[int] = field(default_factory=list, repr=False)
    curated_by: list[str | None] = field(default_factory=list, repr=False)  # for the audit

    def add(self, result: UpsertResult) -> None:
        self.added += len(result.new)
        self.updated += len(result.changed)
        self.unchanged += result.unchanged
        self.withdrawn += len(result.withdrawn)
        self.touched += result.touched

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("touched")
        out.pop("curated_by")
        return out


# ------------------------------------------------------------------------------------- import


def import_zip(
    session: Session,
    path: Path,
    fmt: str | None = None,
    *,
    feed_id: int | None = None,
    security: SecurityReader | None = None,
    limits: BundleLimits | None = None,
) -> ImportCounts:
    """A ``cve.zip`` (``fmt`` ``bundle``, or None with a manifest) or a zip of feed files."""
    limits = limits or BundleLimits()
    with open_zip(path) as archive:
        found = members(archive, limits)
        if fmt is None:
            fmt = "bundle" if MANIFEST in found else _detect(archive, found)
        if fmt == "bundle":
            return _import_bundle(session, archive, found, feed_id, security)
        if fmt not in FEED_PARSERS:
            raise InvalidInputError(
                "format is bundle, osv, nvd or cve5", field="format", code="vulns:bad-format"
            )
        return _import_feed_files(session, archive, found, fmt, feed_id, security)


def import_bundle(
    session: Session,
    path: Path,
    *,
    feed_id: int | None = None,
    security: SecurityReader | None = None,
    limits: BundleLimits | None = None,
) -> ImportCounts:
    """Verify a ``cve.zip`` whole, then store it in ``session`` (the caller commits)."""
    return import_zip(session, path, "bundle", feed_id=feed_id, security=security, limits=limits)


def _import_bundle(
    session: Session,
    archive: zipfile.ZipFile,
    found: dict[str, zipfile.ZipInfo],
    feed_id: int | None,
    security: SecurityReader | None,
) -> ImportCounts:
    manifest = read_manifest(archive, found)
    for path in manifest.files:  # every hash, before the database is touched
        verified(archive, found, manifest, path)
    counts = ImportCounts(files=len(manifest.files))
    store = VulnStore(session)
    names: set[str] = set()
    if NAME_MAP in manifest.files:
        rows = _name_rows(verified(archive, found, manifest, NAME_MAP))
        counts.name_map, names = apply_name_rows(session, rows, store=store)
    for path in sorted(p for p in manifest.files if p.startswith("vulnerabilities/")):
        vulns = _vulnerabilities(path, verified(archive, found, manifest, path))
        counts.add(store.upsert(vulns, feed_id=feed_id))
    if ENRICHMENT in manifest.files:
        rows_e = _enrichment_rows(verified(archive, found, manifest, ENRICHMENT))
        counts.enrichment = len(rows_e)
        _replace_enrichment(session, store, rows_e)
    matcher = _match(session, store, counts, names, security)
    if CURATIONS in manifest.files:
        data = verified(archive, found, manifest, CURATIONS)
        counts.curations, restatused, counts.curated_by = import_decisions(session, data, matcher)
        counts.matches_restatused += restatused.restatused
    return counts


def _import_feed_files(
    session: Session,
    archive: zipfile.ZipFile,
    found: dict[str, zipfile.ZipInfo],
    fmt: str,
    feed_id: int | None,
    security: SecurityReader | None,
) -> ImportCounts:
    counts = ImportCounts(format=fmt)
    vulns: list[Vulnerability] = []
    for path in sorted(found):
        base = path.rsplit("/", 1)[-1]
        if base.startswith(".") or not base.lower().endswith(FEED_SUFFIXES[fmt]):
            continue
        try:
            vulns += FEED_PARSERS[fmt](read_member(archive, found[path]))
        except FeedError as exc:
            raise BundleError(f"not a valid {fmt} document: {exc.detail}", member=path) from None
        counts.files += 1
    if not counts.files:
        raise BundleError(f"the zip holds no {fmt} feed file ({', '.join(FEED_SUFFIXES[fmt])})")
    store = VulnStore(session)
    counts.add(store.upsert(vulns, feed_id=feed_id))
    _match(session, store, counts, set(), security)
    return counts


def _match(
    session: Session,
    store: VulnStore,
    counts: ImportCounts,
    names: set[str],
    security: SecurityReader | None,
) -> Matcher:
    if names:  # advisories already stored that the new entries concern
        renamed = retarget_names(session, store, names, security)
        counts.matches_added += renamed.added
        counts.matches_removed += renamed.removed
    matcher = Matcher(session, security=security, store=store)
    matched = matcher.match_vulnerabilities(counts.touched)
    counts.matches_added += matched.added
    counts.matches_removed += matched.removed
    counts.matches_restatused += matched.restatused
    return matcher


def _vulnerabilities(path: str, data: bytes) -> list[Vulnerability]:
    found: list[Vulnerability] = []
    if path.endswith(".jsonl"):
        lines = [(n, line) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
    else:
        lines = [(1, data)]
    for number, line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BundleError(f"line {number}: not JSON: {exc}", member=path) from None
        listed = doc if isinstance(doc, list) else [doc]
        for index, raw in enumerate(listed):
            try:
                found.append(_vulnerability(raw))
            except Exception as exc:  # noqa: BLE001 - whatever a record breaks, it is the bundle's
                where = index if len(listed) > 1 else None
                raise _record_error(path, number, where, raw, exc) from None
    return found


def _record_error(path: str, line: int, index: int | None, raw: Any, exc: Exception) -> BundleError:
    """The bundle error for a bad record: the member, its line (and index in a list), its id."""
    where = f"line {line}" + (f", record [{index}]" if index is not None else "")
    vuln_id = raw.get("vuln_id") if isinstance(raw, dict) else None
    named = isinstance(vuln_id, str) and 0 < len(vuln_id) <= 128 and vuln_id.isprintable()
    reason = str(exc) if isinstance(exc, _RecordError) else f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, InvalidVectorError):
        reason = exc.detail
    error = BundleError(
        f"{where}: not an advisory record" + (f" ({vuln_id})" if named else "") + f": {reason}",
        member=path,
    )
    error.extra["line"] = line
    if index is not None:
        error.extra["index"] = index
    if named:
        error.extra["record"] = vuln_id
    return error


# ---------------------------------------------------------------------- advisory record checks


class _RecordError(ValueError):
    """A record that breaks the advisory representation; the message names the field."""


_RECORD_KEYS = frozenset(
    {"vuln_id", "source", "aliases", "summary", "details", *_DATES}
    | {"scores", "cwes", "references", "affected"}
)
_DERIVED_KEYS = frozenset({"best_score", "severity"})  # recomputed from the scores, ignored
_SCORE_KEYS = frozenset({"version", "vector", "base_score", "source", "stated_score"})
_REFERENCE_KEYS = frozenset({"url", "tags"})
_AFFECTED_TEXTS = ("ecosystem", "name", "purl", "vendor", "product")
_AFFECTED_KEYS = frozenset({*_AFFECTED_TEXTS, "cpes", "ranges", "versions", "default_status"})
_RANGE_KEYS = frozenset({"kind", "start", "start_inclusive", "end", "end_inclusive", "status"})
_SCORE_TOLERANCE = 0.05  # scores are written with one decimal
_E = TypeVar("_E", bound=StrEnum)


def _vulnerability(raw: Any) -> Vulnerability:
    """A :class:`Vulnerability` from one bundle record, every field checked (``docs/formats.md``):
    no unknown key, each value of its type, dates with an offset, and every score's base score
    recomputed from its vector (a record stating another score is refused)."""
    record = _object(raw, "the record")
    _known_keys(record, _RECORD_KEYS | _DERIVED_KEYS, "the record")
    vuln_id, source = record.get("vuln_id"), record.get("source")
    if not isinstance(vuln_id, str) or not vuln_id.strip() or len(vuln_id) > 128:
        raise _RecordError("vuln_id must be a string of 1-128 characters")
    if not isinstance(source, str) or not source.strip() or len(source) > 16:
        raise _RecordError("source must be a string of 1-16 characters")
    return Vulnerability(
        id=vuln_id,
        source=source,
        aliases=_texts(record, "aliases", ""),
        summary=_text(record, "summary", "") or "",
        details=_text(record, "details", "") or "",
        published=_date(record, "published"),
        modified=_date(record, "modified"),
        withdrawn=_date(record, "withdrawn"),
        scores=tuple(
            _score(item, f"scores[{i}]") for i, item in enumerate(_list(record, "scores", ""))
        ),
        cwes=_texts(record, "cwes", ""),
        references=tuple(
            _reference(item, f"references[{i}]")
            for i, item in enumerate(_list(record, "references", ""))
        ),
        affected=tuple(
            _affected(item, f"affected[{i}]")
            for i, item in enumerate(_list(record, "affected", ""))
        ),
    )


def _score(raw: Any, where: str) -> Score:
    item = _object(raw, where)
    _known_keys(item, _SCORE_KEYS, where)
    version, vector = item.get("version"), item.get("vector")
    if not isinstance(version, str) or version not in {v.value for v in CvssVersion}:
        raise _RecordError(f"{where}.version must be one of 2.0, 3.0, 3.1, 4.0")
    if not isinstance(vector, str) or not vector.strip():
        raise _RecordError(f"{where}.vector must be a CVSS vector string")
    stated_base = _number(item, "base_score", where, required=True)
    stated = _number(item, "stated_score", where)
    score = score_vector(
        vector, version=version, source=_text(item, "source", where) or "", stated_score=stated
    )
    if score.version.value != version:
        raise _RecordError(f"{where}.version {version} but the vector is CVSS {score.version}")
    if stated_base is None or abs(stated_base - score.base_score) > _SCORE_TOLERANCE:
        raise _RecordError(
            f"{where}.base_score {stated_base} is not the {score.base_score} its vector gives"
        )
    return score


def _reference(raw: Any, where: str) -> Reference:
    item = _object(raw, where)
    _known_keys(item, _REFERENCE_KEYS, where)
    url = _text(item, "url", where)
    if not url:
        raise _RecordError(f"{where}.url must be a non-empty string")
    return Reference(url, _texts(item, "tags", where))


def _affected(raw: Any, where: str) -> Affected:
    item = _object(raw, where)
    _known_keys(item, _AFFECTED_KEYS, where)
    texts = {key: _text(item, key, where) for key in _AFFECTED_TEXTS}
    return Affected(
        ecosystem=texts["ecosystem"],
        name=texts["name"],
        purl=texts["purl"],
        vendor=texts["vendor"],
        product=texts["product"],
        cpes=_texts(item, "cpes", where),
        ranges=tuple(
            _range(r, f"{where}.ranges[{i}]") for i, r in enumerate(_list(item, "ranges", where))
        ),
        versions=_texts(item, "versions", where, versions=True),
        default_status=_choice(item, "default_status", where, Status, Status.UNAFFECTED),
    )


def _range(raw: Any, where: str) -> VersionRange:
    item = _object(raw, where)
    _known_keys(item, _RANGE_KEYS, where)
    return VersionRange(
        kind=_choice(item, "kind", where, RangeKind, RangeKind.ECOSYSTEM),
        start=_version(item, "start", where),
        start_inclusive=_flag(item, "start_inclusive", where, default=True),
        end=_version(item, "end", where),
        end_inclusive=_flag(item, "end_inclusive", where, default=False),
        status=_choice(item, "status", where, Status, Status.AFFECTED),
    )


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _object(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _RecordError(f"{where} must be an object")
    return raw


def _known_keys(item: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        raise _RecordError(f"{where} has unknown key(s): {', '.join(unknown[:5])}")


def _text(item: dict[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise _RecordError(f"{_path(where, key)} must be a string or null")
    return value


def _list(item: dict[str, Any], key: str, where: str) -> list[Any]:
    value = item.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _RecordError(f"{_path(where, key)} must be a list")
    return value


def _texts(
    item: dict[str, Any], key: str, where: str, *, versions: bool = False
) -> tuple[str, ...]:
    values = _list(item, key, where)
    for index, value in enumerate(values):
        if not isinstance(value, str) or (versions and not value.strip()):
            kind = "version strings" if versions else "strings"
            raise _RecordError(f"{_path(where, key)}[{index}]: the list holds {kind} only")
    return tuple(values)


def _version(item: dict[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _RecordError(f"{_path(where, key)} must be a version string or null")
    return value


def _flag(item: dict[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        raise _RecordError(f"{_path(where, key)} must be true or false")
    return value


def _number(item: dict[str, Any], key: str, where: str, *, required: bool = False) -> float | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise _RecordError(f"{_path(where, key)} must be a number between 0 and 10")
    return float(value)


def _choice(item: dict[str, Any], key: str, where: str, kind: type[_E], default: _E) -> _E:
    value = item.get(key, default.value)
    if not isinstance(value, str) or value not in {v.value for v in kind}:
        allowed = ", ".join(v.value for v in kind)
        raise _RecordError(f"{_path(where, key)} must be one of {allowed}")
    return kind(value)


def _date(item: dict[str, Any], key: str) -> datetime | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _RecordError(f"{key} must be an ISO 8601 date string or null")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _RecordError(f"{key} is not an ISO 8601 date: {value[:40]!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _RecordError(f"{key} needs a timezone offset: {value[:40]!r}")
    return parsed


# ------------------------------------------------------------------------ name map, enrichment


def _name_rows(data: bytes) -> list[NameRow]:
    listed = listed_in(data, NAME_MAP, "entries")
    rows: list[NameRow] = []
    for index, raw in enumerate(listed):
        try:
            if not isinstance(raw, dict):
                raise NameMapError("an entry is an object")
            note = raw.get("note")
            if note is not None and not isinstance(note, str):
                raise NameMapError("'note' must be a string")
            rows.append(name_row(raw.get("conda"), raw.get("identifier"), note))
        except NameMapError as exc:
            raise BundleError(f"entries[{index}]: {exc.detail}", member=NAME_MAP) from None
    return rows


def _enrichment_rows(data: bytes) -> list[dict[str, Any]]:
    listed = listed_in(data, ENRICHMENT, "rows")
    rows: list[dict[str, Any]] = []
    for index, raw in enumerate(listed):
        cve = raw.get("cve_id") if isinstance(raw, dict) else None
        ok = isinstance(cve, str) and is_cve(cve)
        for key in EPSS_COLUMNS:
            value = raw.get(key) if isinstance(raw, dict) else None
            number = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and (value is None or (number and 0 <= value <= 1))
        kev = raw.get("kev") if isinstance(raw, dict) else None
        ok = ok and (kev is None or isinstance(kev, bool))
        for key in KEV_COLUMNS[1:]:
            value = raw.get(key) if isinstance(raw, dict) else None
            ok = ok and (value is None or (isinstance(value, str) and len(value) <= 32))
        if not ok or not isinstance(raw, dict):
            raise BundleError(f"rows[{index}] is not an enrichment row", member=ENRICHMENT)
        rows.append({"cve_id": cve, **{k: raw.get(k) for k in (*KEV_COLUMNS, *EPSS_COLUMNS)}})
    return rows


def _replace_enrichment(session: Session, store: VulnStore, rows: list[dict[str, Any]]) -> None:
    enrich = Enrichments(session)
    kev = {r["cve_id"]: r for r in rows if r.get("kev")}
    epss = {r["cve_id"]: r for r in rows if r.get("epss") is not None}
    changed = enrich.replace(KEV_COLUMNS, kev) | enrich.replace(EPSS_COLUMNS, epss)
    if enrich.apply(changed):
        store.bump()


def _detect(archive: zipfile.ZipFile, found: dict[str, zipfile.ZipInfo]) -> str:
    for path in sorted(found):
        base = path.rsplit("/", 1)[-1]
        if base.startswith(".") or not base.lower().endswith((".json", ".yaml", ".yml")):
            continue
        fmt = detect_format(base, read_member(archive, found[path]))
        if fmt is not None:
            return fmt
    raise BundleError("cannot tell the feed format of these files: pass format=osv|nvd|cve5")


def detect_format(name: str, data: bytes) -> str | None:
    """``osv``, ``nvd``, ``cve5``, ``kev`` or ``bundle`` from a file's name and first bytes."""
    lower = name.lower()
    if lower.endswith((".zip", ".yaml", ".yml")):
        return "bundle" if lower.endswith(".zip") else "osv"
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    first = doc[0] if isinstance(doc, list) and doc else doc
    if not isinstance(first, dict):
        return None
    tests: list[tuple[str, bool]] = [
        ("cve5", "cveMetadata" in first or first.get("dataType") == "CVE_RECORD"),
        ("kev", "catalogVersion" in first),
        (
            "nvd",
            isinstance(first.get("vulnerabilities"), list)
            and ("resultsPerPage" in first or str(first.get("format", "")).startswith("NVD")),
        ),
        ("osv", "id" in first and ("affected" in first or "modified" in first)),
    ]
    return next((fmt for fmt, hit in tests if hit), None)


class BundleService:
    """Imports and exports by a principal: ``cve:manage``, audited ``cve.import``/``cve.export``."""

    def __init__(self, session: Session, *, security: SecurityReader | None = None) -> None:
        self.session = session
        self.security = security
        self.access = AccessService(session)

    def require(self, principal: Principal) -> None:
        self.access.require(principal, Permission.CVE_MANAGE)

    def import_file(
        self,
        principal: Principal,
        path: Path,
        fmt: str | None = None,
        *,
        limits: BundleLimits | None = None,
    ) -> ImportCounts:
        self.require(principal)
        counts = import_zip(self.session, path, fmt, security=self.security, limits=limits)
        AuditLog(self.session).record(
            "cve.import",
            principal,
            Target("cve_import", counts.format),
            details={
                **counts.public(),
                # who decided, on the side the bundle came from (no account here)
                "curated_by": sorted({b for b in counts.curated_by if b}),
            },
        )
        return counts

    def export(self, principal: Principal, out_path: Path) -> ExportCounts:
        self.require(principal)
        counts = export_bundle(self.session, out_path)
        AuditLog(self.session).record(
            "cve.export",
            principal,
            Target("cve_export", "cve.zip"),
            details={**asdict(counts), "files": counts.files},
        )
        return counts
