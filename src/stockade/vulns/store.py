"""Advisories and the name map in the database: upsert by id, targets, the data revision.

:meth:`VulnStore.upsert` stores parsed :class:`~stockade.vulns.model.Vulnerability` values by
``vuln_id``; a record whose serialisation digest is unchanged is skipped (no write, no re-match).
For each new or changed record the conda names it can affect (:class:`VulnTarget`) are recomputed
from the name map. The name map is read from ``vuln_name_map``: the shipped table is seeded there on
first use, package metadata adds ``purls`` of ``info/index.json`` (and the PyPI name of a python
package's ``*.dist-info`` folder when it declares no purls and differs from the conda name), and an
admin's entries add to the others. An admin row whose identifier starts with ``!`` suppresses that
identifier of its conda name (how an admin overrides a shipped or learned mapping, without
deleting the row a later seed would bring back). Advisories take the KEV/EPSS figures known for
their ids when stored (``vulns.enrich``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact, PackageContent
from stockade.core.clock import utcnow
from stockade.vulns.aliases import AliasIndex
from stockade.vulns.enrich import Enrichments
from stockade.vulns.errors import NameMapError
from stockade.vulns.model import Vulnerability
from stockade.vulns.models import NameMapEntry, NameOrigin, VulnState, VulnTarget
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.names import (
    NameEntry,
    NameMap,
    entry_from_index,
    entry_from_python,
    load_shipped,
    python_dist_name,
)
from stockade.vulns.serial import digest, record_fields, vulnerability_from_fields

__all__ = ["SUPPRESS", "UpsertResult", "VulnStore", "chunked", "insert_ignore_many"]

CHUNK = 500
SUPPRESS = "!"  # an admin row ``!identifier`` takes that identifier away from its conda name
MAX_CONDA_NAME = 256  # VulnTarget.conda_name, NameMapEntry.conda_name (and Artifact.name)
# NameMapEntry.identifier holds 512; what metadata teaches keeps to the bound of an administrator's
# identifiers (``namemap.clean_identifier``), so that ``!`` and the identifier fit as well.
MAX_LEARNED_IDENTIFIER = 400


_LOCK_KEY = 0x5354_4B56  # "STKV"


def lock_writers(session: Session) -> None:
    """Writers of vulnerability data run one at a time on PostgreSQL.

    A transaction-scoped advisory lock (re-entrant, released at commit or rollback), taken
    before the first write: two transactions adding matches to one artifact would each recompute
    its summary without the other's match, and taking it before any row lock keeps writers from
    deadlocking on ``vuln_state``. SQLite serialises writers already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def chunked(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def insert_ignore_many(
    session: Session, model: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """INSERT … ON CONFLICT DO NOTHING for many rows, on SQLite and PostgreSQL."""
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for part in chunked(rows):
        session.execute(
            insert(model).values(list(part)).on_conflict_do_nothing(index_elements=keys)
        )


@dataclass
class UpsertResult:
    """Row ids of what an upsert changed; ``unchanged`` counts skipped records."""

    new: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    withdrawn: list[int] = field(default_factory=list)
    unchanged: int = 0
    #: Records stored before whose alias group's figures moved (a new alias, a better score)
    regrouped: list[int] = field(default_factory=list)

    @property
    def touched(self) -> list[int]:
        """Rows to re-match: new, changed, and regrouped (statuses and summaries follow groups)."""
        return [*self.new, *self.changed, *self.regrouped]


class VulnStore:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._name_map: NameMap | None = None

    # ------------------------------------------------------------------------------ name map

    def name_map(self) -> NameMap:
        """The merged name map from ``vuln_name_map`` (seeding the shipped table on first use)."""
        if self._name_map is None:
            self.seed_shipped()
            rows = self.session.execute(
                select(NameMapEntry.conda_name, NameMapEntry.identifier, NameMapEntry.origin)
            ).all()
            self._name_map = build_name_map(rows)
        return self._name_map

    def invalidate_name_map(self) -> None:
        """Forget the cached map (after the table changed in this session)."""
        self._name_map = None

    def has_shipped(self) -> bool:
        """Whether ``name_map.json`` was copied into the table (reads only)."""
        present = self.session.scalar(
            select(NameMapEntry.id).where(NameMapEntry.origin == NameOrigin.SHIPPED.value).limit(1)
        )
        return present is not None

    def seed_shipped(self) -> bool:
        """Copy ``name_map.json`` into the table when no shipped row is there; True if it did."""
        if self.has_shipped():
            return False
        rows = [
            {"conda_name": e.conda, "identifier": i, "origin": e.source, "note": e.note}
            for e in load_shipped().entries()
            for i in (*e.purls, *e.cpes)
        ]
        insert_ignore_many(self.session, NameMapEntry, rows, ["conda_name", "identifier"])
        return True

    def learn_from_metadata(self, artifact_ids: Sequence[int]) -> set[str]:
        """Add what the artifacts' metadata says: the ``purls`` of ``info/index.json``, else the
        PyPI name of a python package (its one ``*.dist-info``) when it differs from the conda
        name. The conda names that gained an identifier."""
        known = {(n, i) for n, i, _ in self._rows_for_artifacts(artifact_ids)}
        new_rows: list[dict[str, Any]] = []
        for part in chunked(list(artifact_ids)):
            query = (
                select(PackageContent.index_json, PackageContent.paths_json)
                .join(Artifact, Artifact.sha256 == PackageContent.sha256)
                .where(Artifact.id.in_(part))
            )
            for index, paths in self.session.execute(query):
                for conda, purl, note in _learned(index, paths):
                    if (conda, purl) in known or not _fits(conda, purl):
                        continue
                    known.add((conda, purl))
                    new_rows.append(
                        {
                            "conda_name": conda,
                            "identifier": purl,
                            "origin": NameOrigin.METADATA.value,
                            "note": note,
                        }
                    )
        insert_ignore_many(self.session, NameMapEntry, new_rows, ["conda_name", "identifier"])
        if new_rows:
            self._name_map = None
        return {r["conda_name"] for r in new_rows}

    def _rows_for_artifacts(self, artifact_ids: Sequence[int]) -> list[tuple[str, str, str]]:
        names: set[str] = set()
        for part in chunked(list(artifact_ids)):
            names.update(self.session.scalars(select(Artifact.name).where(Artifact.id.in_(part))))
        found: list[tuple[str, str, str]] = []
        for part in chunked(sorted(names)):
            found += [
                (r[0], r[1], r[2])
                for r in self.session.execute(
                    select(
                        NameMapEntry.conda_name, NameMapEntry.identifier, NameMapEntry.origin
                    ).where(NameMapEntry.conda_name.in_(part))
                )
            ]
        return found

    # ---------------------------------------------------------------------------- advisories

    def upsert(self, vulns: Iterable[Vulnerability], *, feed_id: int | None = None) -> UpsertResult:
        """Store records by id (the last of a repeated id wins); targets of changed ones renewed."""
        lock_writers(self.session)
        by_id = {v.id: v for v in vulns}
        result = UpsertResult()
        existing: dict[str, tuple[int, str]] = {}
        for part in chunked(sorted(by_id)):
            query = select(VulnRow.id, VulnRow.vuln_id, VulnRow.digest).where(
                VulnRow.vuln_id.in_(part)
            )
            for row_id, vuln_id, old_digest in self.session.execute(query):
                existing[vuln_id] = (row_id, old_digest)
        names = self.name_map()
        new_rows: list[dict[str, Any]] = []
        new_vulns: list[Vulnerability] = []
        changed_rows: list[dict[str, Any]] = []
        targets: dict[int, set[str]] = {}
        stored: dict[int, Vulnerability] = {}
        for vuln_id, vuln in by_id.items():
            fields = record_fields(vuln)
            new_digest = digest(fields)
            known = existing.get(vuln_id)
            if known is not None and known[1] == new_digest:
                result.unchanged += 1
                continue
            row = {**fields, "digest": new_digest, "feed_id": feed_id}
            if known is None:
                new_rows.append(row)
                new_vulns.append(vuln)
                continue
            row_id = known[0]
            stored[row_id] = vuln
            changed_rows.append({"id": row_id, **row, "updated_at": utcnow()})
            result.changed.append(row_id)
            if vuln.is_withdrawn:
                result.withdrawn.append(row_id)
            targets[row_id] = set() if vuln.is_withdrawn else targets_of(vuln, names)
        for part in chunked(changed_rows):  # ORM bulk UPDATE by primary key: one executemany
            self.session.execute(update(VulnRow), list(part))
        for row_id, vuln in zip(self._insert_new(new_rows), new_vulns, strict=True):
            result.new.append(row_id)
            stored[row_id] = vuln
            if vuln.is_withdrawn:
                result.withdrawn.append(row_id)
            targets[row_id] = set() if vuln.is_withdrawn else targets_of(vuln, names)
        self._replace_targets(targets, fresh=set(result.new))
        mine = set(stored)
        result.regrouped = [r for r in AliasIndex(self.session).update(stored) if r not in mine]
        if result.new or result.changed:
            Enrichments(self.session).apply_rows(result.touched)
            self.bump()
        return result

    def _insert_new(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert advisories in bulk; their row ids in the order given."""
        if not rows:
            return []
        now = utcnow()
        statement = insert(VulnRow).returning(VulnRow.id, sort_by_parameter_order=True)
        ids: list[int] = []
        for part in chunked(rows, 1000):
            values = [
                {**_alone(r), "kev": False, "created_at": now, "updated_at": now, **r} for r in part
            ]
            ids += list(self.session.scalars(statement, values))
        return ids

    def _replace_targets(self, targets: dict[int, set[str]], *, fresh: set[int]) -> None:
        """Targets of these advisories become ``targets`` (new advisories have none to delete)."""
        old = sorted(row_id for row_id in targets if row_id not in fresh)
        for part in chunked(old):
            self.session.execute(delete(VulnTarget).where(VulnTarget.vulnerability_id.in_(part)))
        rows = [
            {"vulnerability_id": row_id, "conda_name": name}
            for row_id, names in targets.items()
            for name in sorted(names)
        ]
        for part in chunked(rows, 5000):
            self.session.execute(insert(VulnTarget), list(part))

    def set_targets(self, row_id: int, vuln: Vulnerability, names: NameMap) -> set[str]:
        """Replace the advisory's targets; a withdrawn advisory targets nothing."""
        self.session.execute(delete(VulnTarget).where(VulnTarget.vulnerability_id == row_id))
        targets = set() if vuln.is_withdrawn else targets_of(vuln, names)
        if targets:
            self.session.add_all(
                VulnTarget(vulnerability_id=row_id, conda_name=n) for n in sorted(targets)
            )
        return targets

    def retarget_for(self, conda_names: set[str]) -> list[int]:
        """Advisories that newly target one of ``conda_names`` (after the name map grew)."""
        if not conda_names:
            return []
        names = self.name_map()
        gained: list[int] = []
        query = select(VulnRow).where(VulnRow.withdrawn.is_(None)).execution_options(yield_per=500)
        tokens = _tokens(conda_names, names)
        if tokens:  # a cheap superset first: the affected entries must mention one of them
            text = func.lower(cast(VulnRow.affected, Text))
            query = query.where(or_(*(text.contains(t, autoescape=True) for t in tokens)))
        for row in self.session.scalars(query):
            vuln = load(row)
            wanted = targets_of(vuln, names) & conda_names
            if not wanted:
                continue
            have = set(
                self.session.scalars(
                    select(VulnTarget.conda_name).where(
                        VulnTarget.vulnerability_id == row.id,
                        VulnTarget.conda_name.in_(sorted(wanted)),
                    )
                )
            )
            for name in sorted(wanted - have):
                self.session.add(VulnTarget(vulnerability_id=row.id, conda_name=name))
                gained.append(row.id)
        return sorted(set(gained))

    def bump(self) -> None:
        """Advance the data revision (``VulnState``), creating its row on first use."""
        lock_writers(self.session)
        changed = self.session.execute(
            update(VulnState).where(VulnState.id == 1).values(revision=VulnState.revision + 1)
        )
        if not getattr(changed, "rowcount", 0):
            insert_ignore_many(self.session, VulnState, [{"id": 1, "revision": 1}], ["id"])


def _alone(fields: dict[str, Any]) -> dict[str, Any]:
    """Group figures of a record on its own (``AliasIndex.update`` then merges it)."""
    scored = fields.get("best_score") is not None
    return {
        "alias_group": fields["vuln_id"],
        "group_score": fields.get("best_score"),
        "group_severity": fields.get("severity"),
        "score_source": fields["vuln_id"] if scored else None,
    }


def revision(session: Session) -> int:
    return session.scalar(select(VulnState.revision).where(VulnState.id == 1)) or 0


def load(row: VulnRow) -> Vulnerability:
    """The model value of a stored row."""
    return vulnerability_from_fields(
        {c: getattr(row, c) for c in ("vuln_id", "source", *_MODEL_COLUMNS)}
    )


_MODEL_COLUMNS = (
    "aliases",
    "summary",
    "details",
    "published",
    "modified",
    "withdrawn",
    "scores",
    "cwes",
    "references",
    "affected",
)


def targets_of(vuln: Vulnerability, names: NameMap) -> set[str]:
    """The conda names the advisory is about; a name longer than any package's (a feed's own
    package name, spelled for conda) targets nothing and is left out."""
    found: set[str] = set()
    for affected in vuln.affected:
        found |= names.conda_names_for(affected)
    return {name for name in found if len(name) <= MAX_CONDA_NAME}


def build_name_map(rows: Iterable[Any]) -> NameMap:
    """A :class:`NameMap` from ``(conda_name, identifier, origin)`` rows: every origin adds, an
    admin ``!identifier`` row takes ``identifier`` away from its conda name."""
    grouped: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for conda, identifier, origin in rows:
        grouped[conda][origin].append(identifier)
    entries: list[NameEntry] = []
    for conda, by_origin in grouped.items():
        admin = by_origin.get(NameOrigin.ADMIN.value, [])
        hidden = {i[len(SUPPRESS) :] for i in admin if i.startswith(SUPPRESS)}
        identifiers = [
            i
            for values in by_origin.values()
            for i in values
            if not i.startswith(SUPPRESS) and i not in hidden
        ]
        source = NameOrigin.ADMIN.value if admin else next(iter(by_origin))
        try:
            entries.append(NameEntry.build(conda, identifiers, source=source))
        except NameMapError:  # one bad stored row must not hide the others
            continue
    return NameMap(entries)


def _tokens(conda_names: Iterable[str], names: NameMap) -> list[str]:
    """Words one of which an advisory's ``affected`` JSON must contain to map to a name: the
    longest part of the conda name and of each identifier's name or product. Empty (no
    filtering) when one is not plain ASCII (JSON may escape it)."""
    found: set[str] = set()
    for conda in conda_names:
        entry = names.identifiers(conda)
        words = [conda, *(p.rsplit("/", 1)[-1] for p in entry.purls)]
        words += [c.split(":", 1)[-1] for c in entry.cpes]
        for word in words:
            parts = [p for p in re.split(r"[-_.:/@]+", word.lower()) if p]
            if not parts or not word.isascii():
                return []
            found.add(max(parts, key=len))
    return sorted(found)


def _fits(conda: str, identifier: str) -> bool:
    """Whether a learned row fits the name map (an administrator's identifiers are refused above
    400 characters: the same bound, so that a suppression of it fits too)."""
    return len(conda) <= MAX_CONDA_NAME and len(identifier) <= MAX_LEARNED_IDENTIFIER


def _learned(index: Any, paths: Any) -> list[tuple[str, str, str]]:
    """``(conda_name, purl, note)`` the metadata of one package gives."""
    if not isinstance(index, dict):
        return []
    entry = entry_from_index(index)
    if entry is not None:
        return [(entry.conda, p, "purls of info/index.json") for p in entry.purls]
    dist = python_dist_name(index, paths if isinstance(paths, list) else [])
    conda = index.get("name")
    # declared purls, even unreadable ones, rule out a guess beside them
    if dist is None or not isinstance(conda, str) or index.get("purls"):
        return []
    try:
        python = entry_from_python(conda, dist)
    except NameMapError:
        python = None
    return (
        [(python.conda, p, "PyPI name of its *.dist-info") for p in python.purls] if python else []
    )
