"""Enrichment of advisories: the CISA KEV flag and the FIRST EPSS score (SPEC §7).

Two feed formats carry it:

- ``kev``: the CISA Known Exploited Vulnerabilities catalogue
  (``known_exploited_vulnerabilities.json``: ``{"catalogVersion", "dateReleased", "count",
  "vulnerabilities": [{"cveID", "dateAdded", "dueDate", "knownRansomwareCampaignUse", ...}]}``);
- ``epss``: the FIRST EPSS scores, CSV, plain or gzip (``epss_scores-YYYY-MM-DD.csv.gz``): a
  comment line ``#model_version:...,score_date:...``, the header ``cve,epss,percentile``, one row
  per CVE.

A sync replaces the feed's whole set in ``vuln_enrichments`` (a CVE dropped from the catalogue
loses its flag; a CVE gone from the EPSS file loses its score), then applies the figures to the
advisories whose ``vuln_id`` or an alias names the CVE: ``vulnerabilities.kev`` is true when any of
those ids is in the catalogue, ``vulnerabilities.epss`` is the highest score among them.
Advisories stored later pick the figures up when they are stored (``VulnStore.upsert``). A
document that does not parse changes nothing: the sync fails with the line or entry named.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from stockade.vulns.errors import FeedError
from stockade.vulns.models import VulnEnrichment
from stockade.vulns.models import Vulnerability as VulnRow

__all__ = [
    "EPSS_COLUMNS",
    "KEV_COLUMNS",
    "EnrichCounts",
    "Enrichments",
    "is_cve",
    "parse_epss",
    "parse_kev",
]

# At most 128 characters in all, what ``vuln_enrichments.cve_id`` holds.
CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,119}$")
KEV_COLUMNS = ("kev", "kev_date_added", "kev_due_date", "kev_ransomware")
EPSS_COLUMNS = ("epss", "epss_percentile")
MAX_UNPACKED = 1 << 30  # a gzip EPSS file unpacks to ~15 MB today; refuse a bomb
_SCAN = 1000
_TEXT_MAX = 32


def is_cve(value: str) -> bool:
    return bool(CVE_ID.match(value))


@dataclass
class EnrichCounts:
    rows: int = 0  # entries in the document
    changed: int = 0  # enrichment rows added, changed or cleared
    advisories: int = 0  # advisories whose kev/epss changed


# ------------------------------------------------------------------------------------ parsing


def parse_kev(data: bytes) -> dict[str, dict[str, Any]]:
    """``cve_id -> {kev, kev_date_added, kev_due_date, kev_ransomware}`` of a KEV catalogue."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FeedError(f"the KEV catalogue is not JSON: {exc}") from exc
    listed = doc.get("vulnerabilities") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        raise FeedError("a KEV catalogue is an object with a 'vulnerabilities' list")
    found: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(listed):
        where = f"vulnerabilities[{index}]"
        cve = entry.get("cveID") if isinstance(entry, dict) else None
        if not isinstance(cve, str) or not is_cve(cve.strip().upper()):
            raise FeedError("needs a 'cveID' like CVE-2024-1234", field=f"{where}.cveID")
        found[cve.strip().upper()] = {
            "kev": True,
            "kev_date_added": _text(entry, "dateAdded", where),
            "kev_due_date": _text(entry, "dueDate", where),
            "kev_ransomware": _text(entry, "knownRansomwareCampaignUse", where),
        }
    return found


def _text(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FeedError("must be a string", field=f"{where}.{key}")
    return value.strip()[:_TEXT_MAX] or None


def parse_epss(data: bytes) -> dict[str, dict[str, Any]]:
    """``cve_id -> {epss, epss_percentile}`` of an EPSS CSV (plain or gzip)."""
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedError(f"the EPSS file is not UTF-8 text: {exc}") from exc
    found: dict[str, dict[str, Any]] = {}
    columns: dict[str, int] | None = None
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
            continue
        if columns is None:
            columns = {name.strip().lower(): i for i, name in enumerate(row)}
            if not {"cve", "epss", "percentile"} <= set(columns):
                raise FeedError(f"line {number}: the EPSS header is cve,epss,percentile")
            continue
        cve, score, percentile = (_cell(row, columns[k]) for k in ("cve", "epss", "percentile"))
        cve = cve.upper()
        if not is_cve(cve):
            raise FeedError(f"line {number}: not a CVE id: {cve[:40]!r}")
        found[cve] = {
            "epss": _fraction(score, number, "epss"),
            "epss_percentile": _fraction(percentile, number, "percentile"),
        }
    if columns is None:
        raise FeedError("the EPSS file has no header line (cve,epss,percentile)")
    return found


def _cell(row: list[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


def _fraction(value: str, number: int, name: str) -> float:
    try:
        parsed = float(value)
    except ValueError:
        raise FeedError(f"line {number}: {name} is not a number: {value[:40]!r}") from None
    if not 0.0 <= parsed <= 1.0:
        raise FeedError(f"line {number}: {name} must be between 0 and 1, not {value[:40]}")
    return parsed


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_UNPACKED + 1)
    except zlib.error as exc:
        raise FeedError(f"the EPSS file is not valid gzip: {exc}") from exc
    if len(out) > MAX_UNPACKED or inflater.unconsumed_tail:
        raise FeedError(f"the EPSS file unpacks to more than {MAX_UNPACKED} bytes")
    return out


# ------------------------------------------------------------------------------------ storing


class Enrichments:
    """``vuln_enrichments`` and the ``kev``/``epss`` columns of the advisories it applies to."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def replace(self, columns: tuple[str, ...], rows: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """Make ``columns`` of every row equal ``rows`` (absent CVEs cleared); the CVEs changed."""
        cleared = {c: (False if c == "kev" else None) for c in columns}
        key = VulnEnrichment.kev.is_(True) if "kev" in columns else VulnEnrichment.epss.is_not(None)
        have: dict[str, tuple[Any, ...]] = {
            r[0]: tuple(r[1:])
            for r in self.session.execute(
                select(VulnEnrichment.cve_id, *(getattr(VulnEnrichment, c) for c in columns)).where(
                    key
                )
            )
        }
        changes = [{"cve_id": cve, **cleared} for cve in sorted(set(have) - set(rows))] + [
            {"cve_id": cve, **{c: values.get(c) for c in columns}}
            for cve, values in sorted(rows.items())
            if have.get(cve) != tuple(values.get(c) for c in columns)
        ]
        self._write(changes)
        self._drop_empty()
        return {c["cve_id"] for c in changes}

    def rows(self) -> list[dict[str, Any]]:
        query = select(VulnEnrichment).order_by(VulnEnrichment.cve_id)
        return [
            {"cve_id": r.cve_id, **{c: getattr(r, c) for c in _ALL}}
            for r in self.session.scalars(query)
        ]

    def _write(self, changes: list[dict[str, Any]]) -> None:
        if not changes:
            return
        present: set[str] = set()
        ids = [c["cve_id"] for c in changes]
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            present.update(
                self.session.scalars(
                    select(VulnEnrichment.cve_id).where(VulnEnrichment.cve_id.in_(part))
                )
            )
        updates = [c for c in changes if c["cve_id"] in present]
        inserts = [c for c in changes if c["cve_id"] not in present]
        for start in range(0, len(updates), 1000):
            self.session.execute(update(VulnEnrichment), updates[start : start + 1000])
        for start in range(0, len(inserts), 1000):
            self.session.execute(insert(VulnEnrichment), inserts[start : start + 1000])

    def _drop_empty(self) -> None:
        self.session.execute(
            delete(VulnEnrichment).where(
                VulnEnrichment.kev.is_(False), VulnEnrichment.epss.is_(None)
            )
        )

    def apply(self, cve_ids: set[str] | None = None) -> list[int]:
        """Set ``kev``/``epss`` of advisories naming one of ``cve_ids`` (None: every advisory);
        the row ids of advisories that changed."""
        if cve_ids is not None and not cve_ids:
            return []
        changed: list[dict[str, Any]] = []
        last = 0
        while True:
            query = (
                select(VulnRow.id, VulnRow.vuln_id, VulnRow.aliases, VulnRow.kev, VulnRow.epss)
                .where(VulnRow.id > last)
                .order_by(VulnRow.id)
                .limit(_SCAN)
            )
            batch = self.session.execute(query).all()
            if not batch:
                break
            last = batch[-1][0]
            changed += self._desired(batch, cve_ids)
        for start in range(0, len(changed), 1000):
            self.session.execute(update(VulnRow), changed[start : start + 1000])
        return [c["id"] for c in changed]

    def apply_rows(self, row_ids: Iterable[int]) -> list[int]:
        """Set ``kev``/``epss`` of the given advisories from the enrichment known now."""
        changed: list[dict[str, Any]] = []
        wanted = sorted(set(row_ids))
        for start in range(0, len(wanted), 500):
            query = select(
                VulnRow.id, VulnRow.vuln_id, VulnRow.aliases, VulnRow.kev, VulnRow.epss
            ).where(VulnRow.id.in_(wanted[start : start + 500]))
            changed += self._desired(self.session.execute(query).all(), None)
        for start in range(0, len(changed), 1000):
            self.session.execute(update(VulnRow), changed[start : start + 1000])
        return [c["id"] for c in changed]

    def _desired(self, batch: Iterable[Any], only: set[str] | None) -> list[dict[str, Any]]:
        ids_of: dict[int, set[str]] = {}
        current: dict[int, tuple[bool, float | None]] = {}
        for row_id, vuln_id, aliases, kev, epss in batch:
            ids = {i.strip().upper() for i in [vuln_id, *(aliases or [])] if isinstance(i, str)}
            ids = {i for i in ids if is_cve(i)}
            if only is not None and not ids & only:
                continue
            ids_of[row_id] = ids
            current[row_id] = (bool(kev), epss)
        wanted = sorted(set().union(*ids_of.values())) if ids_of else []
        known: dict[str, tuple[bool, float | None]] = {}
        for start in range(0, len(wanted), 500):
            query = select(VulnEnrichment.cve_id, VulnEnrichment.kev, VulnEnrichment.epss).where(
                VulnEnrichment.cve_id.in_(wanted[start : start + 500])
            )
            known.update({c: (bool(k), e) for c, k, e in self.session.execute(query)})
        out: list[dict[str, Any]] = []
        for row_id, ids in ids_of.items():
            figures = [known[i] for i in ids if i in known]
            kev = any(k for k, _ in figures)
            scores = [e for _, e in figures if e is not None]
            epss = max(scores) if scores else None
            if (kev, epss) != current[row_id]:
                out.append({"id": row_id, "kev": kev, "epss": epss})
        return out


_ALL = (*KEV_COLUMNS, *EPSS_COLUMNS)
