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
  (``!identifier`` suppressions included), added to the map.

An import checks every member before it touches the database: no absolute path, ``..``,
backslash or drive letter, no symlink, no duplicate or encrypted member, at most
``max_members`` members and ``max_total`` bytes unpacked, a known ``format_version``, every file
listed in the manifest present with its size and sha256 and nothing unlisted. It then stores
everything in the caller's transaction and matches what changed; any error leaves the database as
it was (the caller rolls back). A zip of feed files (``osv``, ``nvd``, ``cve5``, the CLI's folder
import) goes through the same member checks, and every document must parse.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.errors import InvalidInputError
from stockade.vulns.bundle_export import ExportCounts, export_bundle
from stockade.vulns.bundlefile import (
    ENRICHMENT,
    MANIFEST,
    NAME_MAP,
    BundleError,
    BundleLimits,
    BundleTooLargeError,
    members,
    open_zip,
    read_manifest,
    read_member,
    verified,
)
from stockade.vulns.enrich import EPSS_COLUMNS, KEV_COLUMNS, Enrichments, is_cve
from stockade.vulns.errors import FeedError, NameMapError
from stockade.vulns.feeds import parse_cve5, parse_nvd, parse_osv
from stockade.vulns.matcher import Matcher
from stockade.vulns.model import Vulnerability
from stockade.vulns.namemap import (
    NameRow,
    apply_name_rows,
    clean_conda_name,
    clean_identifier,
    retarget_names,
)
from stockade.vulns.security import SecurityReader
from stockade.vulns.serial import record_fields, vulnerability_from_fields
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
    matches_added: int = 0
    matches_removed: int = 0
    matches_restatused: int = 0
    touched: list[int] = field(default_factory=list, repr=False)

    def add(self, result: UpsertResult) -> None:
        self.added += len(result.new)
        self.updated += len(result.changed)
        self.unchanged += result.unchanged
        self.withdrawn += len(result.withdrawn)
        self.touched += result.touched

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("touched")
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
    _match(session, store, counts, names, security)
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
) -> None:
    if names:  # advisories already stored that the new entries concern
        renamed = retarget_names(session, store, names, security)
        counts.matches_added += renamed.added
        counts.matches_removed += renamed.removed
    matched = Matcher(session, security=security, store=store).match_vulnerabilities(counts.touched)
    counts.matches_added += matched.added
    counts.matches_removed += matched.removed
    counts.matches_restatused += matched.restatused


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
        for raw in doc if isinstance(doc, list) else [doc]:
            try:
                found.append(_vulnerability(raw))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise BundleError(
                    f"line {number}: not an advisory record ({exc.__class__.__name__}: {exc})",
                    member=path,
                ) from None
    return found


def _vulnerability(raw: Any) -> Vulnerability:
    if not isinstance(raw, dict):
        raise TypeError("a record is an object")
    vuln_id, source = raw.get("vuln_id"), raw.get("source")
    if not isinstance(vuln_id, str) or not vuln_id.strip() or len(vuln_id) > 128:
        raise ValueError("vuln_id must be 1-128 characters")
    if not isinstance(source, str) or len(source) > 16:
        raise ValueError("source must be a short string")
    fields = dict(raw)
    for key in _DATES:
        value = fields.get(key)
        fields[key] = datetime.fromisoformat(value) if isinstance(value, str) else None
    vuln = vulnerability_from_fields(fields)
    record_fields(vuln)  # every score and range must serialise back
    return vuln


def _name_rows(data: bytes) -> list[NameRow]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"not JSON: {exc}", member=NAME_MAP) from None
    listed = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        raise BundleError("needs an 'entries' list", member=NAME_MAP)
    rows: list[NameRow] = []
    for index, raw in enumerate(listed):
        try:
            if not isinstance(raw, dict):
                raise NameMapError("an entry is an object")
            note = raw.get("note")
            rows.append(
                NameRow(
                    clean_conda_name(str(raw.get("conda", ""))),
                    clean_identifier(str(raw.get("identifier", ""))),
                    note if isinstance(note, str) else "",
                )
            )
        except NameMapError as exc:
            raise BundleError(f"entries[{index}]: {exc.detail}", member=NAME_MAP) from None
    return rows


def _enrichment_rows(data: bytes) -> list[dict[str, Any]]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"not JSON: {exc}", member=ENRICHMENT) from None
    listed = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        raise BundleError("needs a 'rows' list", member=ENRICHMENT)
    rows: list[dict[str, Any]] = []
    for index, raw in enumerate(listed):
        cve = raw.get("cve_id") if isinstance(raw, dict) else None
        ok = isinstance(cve, str) and is_cve(cve)
        for key in EPSS_COLUMNS:
            value = raw.get(key) if isinstance(raw, dict) else None
            ok = ok and (value is None or (isinstance(value, int | float) and 0 <= value <= 1))
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
            "cve.import", principal, Target("cve_import", counts.format), details=counts.public()
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
