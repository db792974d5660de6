"""Admins' edits of the name map: list, add, remove, import (SPEC §7).

The map in ``vuln_name_map`` has three origins: ``shipped`` (the curated table), ``metadata``
(learned from packages) and ``admin``. Every origin adds identifiers to a conda name. Shipped and
learned rows are never deleted (a later seed or upload would bring them back): removing one records
an admin *suppression* row ``!identifier``, which takes the identifier away from that conda name;
removing the suppression row brings it back. Admin rows are deleted outright.

Every change recomputes the targets of the advisories it can affect (those targeting the conda
names changed, and those that newly target them) and re-matches them in the same transaction, then
advances the data revision and writes a ``cve.name_map.*`` audit event. Reading needs ``cve:read``,
changing ``cve:manage``.

Import files (all or nothing; every bad row is named, with its line in a CSV or its index in JSON):

- CSV with a header ``conda,identifier[,note]``, one identifier per row;
- JSON: ``{"entries": [...]}`` or a list, each entry either ``{"conda", "identifier", "note"}`` or
  the shape of the shipped table ``{"conda", "purls": [...], "cpes": [...], "note"}``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.conda.names import is_valid_name
from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError
from stockade.db.engine import transaction
from stockade.vulns.errors import NameMapError
from stockade.vulns.matcher import MatchCounts, Matcher
from stockade.vulns.models import NameMapEntry, NameOrigin, VulnTarget
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.names import normalise_cpe, normalise_purl
from stockade.vulns.security import SecurityReader
from stockade.vulns.store import SUPPRESS, VulnStore, chunked, insert_ignore_many, load

__all__ = [
    "NameMapService",
    "NameRow",
    "apply_name_rows",
    "clean_conda_name",
    "clean_identifier",
    "name_row",
    "parse_name_rows",
]

NOTE_MAX = 1000
MAX_ERRORS_SHOWN = 20


class NameMapEntryNotFoundError(NotFoundError):
    code = "vulns:name-map-entry-not-found"


class NameMapEntryExistsError(ConflictError):
    code = "vulns:name-map-entry-exists"


@dataclass(frozen=True, slots=True)
class NameRow:
    """One admin row to add: ``identifier`` normalised (``!`` first for a suppression)."""

    conda: str
    identifier: str
    note: str = ""


def clean_conda_name(value: str) -> str:
    name = (value or "").strip().lower()
    if not is_valid_name(name):
        raise NameMapError(
            f"not a conda package name: {name[:80]!r} (lowercase letters, digits, '-', '.', '_')",
            field="conda_name",
        )
    return name


def clean_identifier(value: str) -> str:
    """A purl (``pkg:pypi/torch``) or ``vendor:product`` (``python:requests``), normalised; a
    leading ``!`` (a suppression) is kept."""
    text = (value or "").strip()
    hidden = text.startswith(SUPPRESS)
    body = text[len(SUPPRESS) :].strip() if hidden else text
    if not body or len(body) > 400:
        raise NameMapError("an identifier is a purl or a CPE vendor:product", field="identifier")
    clean = normalise_purl(body) if body.startswith("pkg:") else normalise_cpe(body)
    return SUPPRESS + clean if hidden else clean


def name_row(conda: Any, identifier: Any, note: Any) -> NameRow:
    """One admin row from untrusted values (an import file, a ``cve.zip``): names checked and
    normalised, the note at most :data:`NOTE_MAX` characters."""
    if not isinstance(conda, str) or not isinstance(identifier, str):
        raise NameMapError("needs 'conda' and 'identifier' strings")
    text = note if isinstance(note, str) else ""
    if len(text) > NOTE_MAX:
        raise NameMapError(f"the note is longer than {NOTE_MAX} characters")
    return NameRow(clean_conda_name(conda), clean_identifier(identifier), text.strip())


def parse_name_rows(data: bytes) -> list[NameRow]:
    """Rows of a CSV or JSON import file (module docstring); every bad row reported at once."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NameMapError(f"the name map file is not UTF-8 text: {exc}") from exc
    stripped = text.lstrip()
    rows, errors = _json_rows(stripped) if stripped[:1] in ("{", "[") else _csv_rows(text)
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
        more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > 20 else ""
        raise NameMapError(f"{len(errors)} bad row(s): {shown}{more}", errors=errors[:200])
    if not rows:
        raise NameMapError("the name map file has no entries")
    return rows


def _csv_rows(text: str) -> tuple[list[NameRow], list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    rows: list[NameRow] = []
    errors: list[str] = []
    try:
        fields = {f.strip().lower() for f in reader.fieldnames or ()}
        if not {"conda", "identifier"} <= fields:
            raise NameMapError("line 1: a CSV name map has a header with 'conda' and 'identifier'")
        for raw in reader:
            item = {(k or "").strip().lower(): v for k, v in raw.items()}
            try:
                rows.append(name_row(item.get("conda"), item.get("identifier"), item.get("note")))
            except NameMapError as exc:
                errors.append(f"line {reader.line_num}: {exc.detail}")
    except csv.Error as exc:  # a field over the csv module's limit, a NUL byte, ...
        line = max(reader.reader.line_num, 1)  # the DictReader's own count lags a failed row
        raise NameMapError(f"line {line}: not readable CSV: {exc}") from None
    return rows, errors


def _json_rows(text: str) -> tuple[list[NameRow], list[str]]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise NameMapError(f"the name map file is not JSON: {exc}") from exc
    listed = doc.get("entries") if isinstance(doc, Mapping) else doc
    if not isinstance(listed, list):
        raise NameMapError("a JSON name map is a list of entries or {'entries': [...]}")
    rows: list[NameRow] = []
    errors: list[str] = []
    for index, raw in enumerate(listed):
        try:
            rows += _json_entry(raw)
        except NameMapError as exc:
            errors.append(f"entry {index}: {exc.detail}")
    return rows, errors


def _json_entry(raw: Any) -> list[NameRow]:
    if not isinstance(raw, Mapping):
        raise NameMapError("an entry is an object")
    if "identifier" in raw:
        return [name_row(raw.get("conda"), raw.get("identifier"), raw.get("note"))]
    identifiers: list[Any] = []
    for key in ("purls", "cpes"):
        values = raw.get(key, [])
        if not isinstance(values, list):
            raise NameMapError(f"'{key}' must be a list of strings")
        identifiers += values
    if not identifiers:
        raise NameMapError("an entry has an 'identifier', or 'purls'/'cpes' lists")
    return [name_row(raw.get("conda"), i, raw.get("note")) for i in identifiers]


def apply_name_rows(
    session: Session, rows: Iterable[NameRow], *, store: VulnStore | None = None
) -> tuple[int, set[str]]:
    """Insert admin rows (ones already there are skipped); the number added, the names changed."""
    wanted = {(r.conda, r.identifier): r for r in rows}
    have: set[tuple[str, str]] = set()
    names = sorted({c for c, _ in wanted})
    for part in chunked(names):
        query = select(NameMapEntry.conda_name, NameMapEntry.identifier).where(
            NameMapEntry.conda_name.in_(part)
        )
        have.update((c, i) for c, i in session.execute(query))
    new = [
        {"conda_name": r.conda, "identifier": r.identifier, "origin": "admin", "note": r.note}
        for key, r in wanted.items()
        if key not in have
    ]
    insert_ignore_many(session, NameMapEntry, new, ["conda_name", "identifier"])
    if store is not None and new:
        store.invalidate_name_map()
    return len(new), {r["conda_name"] for r in new}


def retarget_names(
    session: Session, store: VulnStore, names: set[str], security: SecurityReader | None
) -> MatchCounts:
    """After the map of ``names`` changed: renew the targets of the advisories concerned (those
    targeting them now, those that newly do) and re-match them."""
    if not names:
        return MatchCounts()
    store.invalidate_name_map()
    current = store.name_map()
    ids: set[int] = set()
    for part in chunked(sorted(names)):
        ids.update(
            session.scalars(
                select(VulnTarget.vulnerability_id).where(VulnTarget.conda_name.in_(part))
            )
        )
    ids.update(store.retarget_for(names))
    for part in chunked(sorted(ids)):
        for row in session.scalars(select(VulnRow).where(VulnRow.id.in_(part))):
            store.set_targets(row.id, load(row), current)
    counts = Matcher(session, security=security, store=store).match_vulnerabilities(sorted(ids))
    store.bump()
    return counts


def ensure_shipped(factory: sessionmaker[Session], read_factory: sessionmaker[Session]) -> None:
    """The shipped rows are in the table before it is listed: a read once they are, and a
    write transaction only the first time (a listing otherwise never queues for the write lock)."""
    with read_factory() as session:
        if VulnStore(session).has_shipped():
            return
    with transaction(factory) as session:
        VulnStore(session).seed_shipped()


class NameMapService:
    def __init__(self, session: Session, *, security: SecurityReader | None = None) -> None:
        self.session = session
        self.security = security
        self.access = AccessService(session)
        self.store = VulnStore(session)

    def list(
        self,
        principal: Principal,
        *,
        conda_name: str | None = None,
        identifier: str | None = None,
        origin: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> Sequence[NameMapEntry]:
        """Rows by id; filters are exact (``identifier`` normalised first)."""
        self.access.require(principal, Permission.CVE_READ)
        query = select(NameMapEntry).where(NameMapEntry.id > after)
        if conda_name:
            query = query.where(NameMapEntry.conda_name == conda_name.strip().lower())
        if identifier:
            query = query.where(NameMapEntry.identifier == _maybe_clean(identifier))
        if origin:
            if origin not in {o.value for o in NameOrigin}:
                raise InvalidInputError("origin is shipped, metadata or admin", field="origin")
            query = query.where(NameMapEntry.origin == origin)
        return self.session.scalars(query.order_by(NameMapEntry.id).limit(limit)).all()

    def add(
        self, principal: Principal, conda_name: str, identifier: str, note: str = ""
    ) -> tuple[NameMapEntry, MatchCounts]:
        self.access.require(principal, Permission.CVE_MANAGE)
        row = name_row(conda_name, identifier, note)
        self.store.seed_shipped()
        existing = self._find(row.conda, row.identifier)
        if existing is not None:
            raise NameMapEntryExistsError(
                f"{row.conda} already maps {row.identifier} ({existing.origin}, id {existing.id})",
                field="identifier",
            )
        added = NameMapEntry(
            conda_name=row.conda, identifier=row.identifier, origin="admin", note=row.note
        )
        self.session.add(added)
        self.session.flush()
        counts = retarget_names(self.session, self.store, {row.conda}, self.security)
        self._audit("cve.name_map.add", principal, added, counts, after=_state(added))
        return added, counts

    def remove(self, principal: Principal, entry_id: int) -> tuple[NameMapEntry, MatchCounts]:
        """Delete an admin row; for a shipped or learned row, add its suppression (returned)."""
        self.access.require(principal, Permission.CVE_MANAGE)
        row = self.session.get(NameMapEntry, entry_id)
        if row is None:
            raise NameMapEntryNotFoundError(f"name map entry {entry_id} not found")
        if row.origin == NameOrigin.ADMIN.value:
            before = _state(row)
            self.session.delete(row)
            self.session.flush()
            counts = retarget_names(self.session, self.store, {row.conda_name}, self.security)
            self._audit("cve.name_map.remove", principal, row, counts, before=before)
            return row, counts
        hidden = SUPPRESS + row.identifier
        suppression = self._find(row.conda_name, hidden)
        if suppression is None:
            suppression = NameMapEntry(
                conda_name=row.conda_name,
                identifier=hidden,
                origin="admin",
                note=f"suppresses {row.origin} entry {row.id}",
            )
            self.session.add(suppression)
            self.session.flush()
        counts = retarget_names(self.session, self.store, {row.conda_name}, self.security)
        self._audit(
            "cve.name_map.suppress",
            principal,
            row,
            counts,
            before=_state(row),
            after=_state(suppression),
        )
        return suppression, counts

    def import_file(self, principal: Principal, data: bytes) -> tuple[int, int, MatchCounts]:
        """Add every row of a CSV or JSON file (all or nothing); (added, already there, matches)."""
        self.access.require(principal, Permission.CVE_MANAGE)
        rows = parse_name_rows(data)
        self.store.seed_shipped()
        added, names = apply_name_rows(self.session, rows, store=self.store)
        counts = retarget_names(self.session, self.store, names, self.security)
        AuditLog(self.session).record(
            "cve.name_map.import",
            principal,
            Target("vuln_name_map", "import"),
            details={
                "rows": len(rows),
                "added": added,
                "conda_names": sorted(names)[:100],
                "matches_added": counts.added,
                "matches_removed": counts.removed,
            },
        )
        return added, len(rows) - added, counts

    def _find(self, conda: str, identifier: str) -> NameMapEntry | None:
        return self.session.scalar(
            select(NameMapEntry).where(
                NameMapEntry.conda_name == conda, NameMapEntry.identifier == identifier
            )
        )

    def _audit(
        self,
        event: str,
        principal: Principal,
        row: NameMapEntry,
        counts: MatchCounts,
        *,
        before: dict[str, object] | None = None,
        after: dict[str, object] | None = None,
    ) -> None:
        AuditLog(self.session).record(
            event,
            principal,
            Target("vuln_name_map", f"{row.conda_name} {row.identifier}", row.id),
            before=before,
            after=after,
            details={"matches_added": counts.added, "matches_removed": counts.removed},
        )


def _maybe_clean(identifier: str) -> str:
    try:
        return clean_identifier(identifier)
    except NameMapError:
        return identifier.strip()


def _state(row: NameMapEntry) -> dict[str, object]:
    return {
        "conda_name": row.conda_name,
        "identifier": row.identifier,
        "origin": row.origin,
        "note": row.note,
    }
