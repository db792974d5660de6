"""Alias groups: records of several feeds that describe one vulnerability (SPEC §7).

OSV's PyPI advisory ``PYSEC-2018-66`` lists ``CVE-2018-1000656`` and ``GHSA-562c-5r94-xh97`` among
its aliases; the NVD feed holds ``CVE-2018-1000656`` itself, with the CVSS vector the PYSEC record
lacks. Two stored records are one vulnerability when they share an id: one's id is among the
other's aliases, or both list the same alias; transitively. A withdrawn record stands alone.

Groups are computed when records are stored (``VulnStore.upsert`` calls :meth:`AliasIndex.update`),
never at read time. Each record keeps the merged view of its group:

- ``alias_group``: the group's primary id, which lists show: the smallest id that is not a
  ``CVE-`` id (the ecosystem advisory, whose ranges name the package), else the smallest id;
- ``group_score``: the highest best score of any member (each record's best score is its CVSS
  v4, else v3.1, v3.0, v2 score), ``group_severity`` its band, and ``score_source`` the id of the
  member it came from (on a tie, a ``CVE-`` record, then the smallest id).

Readers count a group once: an artifact matched by ``PYSEC-2018-66`` and ``CVE-2018-1000656`` has
one vulnerability, and a curation of either id decides the matches of both (``vulns.matcher``).
``vuln_alias_ids`` holds every id of each live record, the index a group's members are found by.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from stockade.vulns.model import Vulnerability, severity_band
from stockade.vulns.models import VulnAliasId, VulnMatch
from stockade.vulns.models import Vulnerability as VulnRow

__all__ = [
    "ID_MAX",
    "AliasIndex",
    "GroupFigures",
    "Member",
    "cvss_version",
    "group_ids",
    "group_members",
    "group_rows",
    "group_spellings",
    "ids_of",
    "merged_aliases",
    "once_per_group",
    "primary_rows",
    "source_versions",
]

ID_MAX = 128  # the length of ``vuln_id``: a longer alias cannot name a stored record
_CHUNK = 500


def ids_of(vuln_id: str, aliases: Iterable[str]) -> frozenset[str]:
    """The upper-cased ids a record answers to (its own and its aliases)."""
    found = {vuln_id.strip().upper()}
    found.update(a.strip().upper() for a in aliases if isinstance(a, str) and a.strip())
    return frozenset(i for i in found if i and len(i) <= ID_MAX)


@dataclass(frozen=True, slots=True)
class Member:
    row_id: int
    vuln_id: str
    ids: frozenset[str]
    score: float | None
    withdrawn: bool


@dataclass(frozen=True, slots=True)
class GroupFigures:
    alias_group: str
    group_score: float | None
    group_severity: str | None
    score_source: str | None

    def columns(self) -> dict[str, object]:
        return {
            "alias_group": self.alias_group,
            "group_score": self.group_score,
            "group_severity": self.group_severity,
            "score_source": self.score_source,
        }


def _is_cve(vuln_id: str) -> bool:
    return vuln_id.upper().startswith("CVE-")


def _figures(members: Sequence[Member]) -> GroupFigures:
    primary = min(members, key=lambda m: (_is_cve(m.vuln_id), m.vuln_id))
    scored = [m for m in members if m.score is not None]
    if not scored:
        return GroupFigures(primary.vuln_id, None, None, None)
    best = min(scored, key=lambda m: (-(m.score or 0.0), not _is_cve(m.vuln_id), m.vuln_id))
    assert best.score is not None
    return GroupFigures(primary.vuln_id, best.score, severity_band(best.score).value, best.vuln_id)


def group_members(members: Iterable[Member]) -> dict[int, GroupFigures]:
    """Row id -> the figures of its group, for members that share ids (union by shared id)."""
    listed = list(members)
    parent = {m.row_id: m.row_id for m in listed}

    def root(row_id: int) -> int:
        while parent[row_id] != row_id:
            parent[row_id] = parent[parent[row_id]]
            row_id = parent[row_id]
        return row_id

    owner: dict[str, int] = {}
    for member in listed:
        if member.withdrawn:
            continue
        for alias in member.ids:
            other = owner.setdefault(alias, member.row_id)
            parent[root(member.row_id)] = root(other)
    groups: dict[int, list[Member]] = {}
    for member in listed:
        groups.setdefault(root(member.row_id), []).append(member)
    found: dict[int, GroupFigures] = {}
    for group in groups.values():
        figures = _figures(group)
        found.update((m.row_id, figures) for m in group)
    return found


def group_rows(session: Session, row_ids: Iterable[int]) -> dict[int, list[int]]:
    """Row id -> the row ids of its alias group (itself included), as stored."""
    wanted = sorted(set(row_ids))
    keys: dict[int, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        query = select(VulnRow.id, VulnRow.alias_group).where(VulnRow.id.in_(part))
        for rid, key in session.execute(query):
            keys[rid] = key
    names = sorted(set(keys.values()))
    members: dict[str, list[int]] = {}
    for start in range(0, len(names), _CHUNK):
        named = select(VulnRow.alias_group, VulnRow.id).where(
            VulnRow.alias_group.in_(names[start : start + _CHUNK])
        )
        for group, member in session.execute(named):
            members.setdefault(group, []).append(member)
    return {rid: sorted(members.get(key, [rid])) for rid, key in keys.items()}


class AliasIndex:
    """Keeps ``vuln_alias_ids`` and each record's group figures up to date."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def update(self, records: Mapping[int, Vulnerability]) -> list[int]:
        """Index these stored records (new or changed) and regroup what they concern: their
        groups of before and of now. The row ids whose group figures changed."""
        if not records:
            return []
        ids = sorted(records)
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            self.session.execute(delete(VulnAliasId).where(VulnAliasId.vulnerability_id.in_(part)))
        rows = [
            {"vulnerability_id": rid, "alias": alias}
            for rid, vuln in sorted(records.items())
            if not vuln.is_withdrawn
            for alias in sorted(ids_of(vuln.id, vuln.aliases))
        ]
        for start in range(0, len(rows), 5000):
            self.session.execute(insert(VulnAliasId), rows[start : start + 5000])
        return self.regroup(ids)

    def regroup(self, row_ids: Sequence[int]) -> list[int]:
        """Recompute the groups of these rows (before and now); the rows whose figures moved."""
        rows = self._connected(set(row_ids) | self._old_group_rows(row_ids))
        members = self._members(rows)
        figures = group_members(members.values())
        current = self._current(rows)
        moved = [rid for rid, fig in sorted(figures.items()) if current.get(rid) != fig]
        changed = [{"id": rid, **figures[rid].columns()} for rid in moved]
        for start in range(0, len(changed), 1000):
            self.session.execute(update(VulnRow), changed[start : start + 1000])
        return moved

    def _old_group_rows(self, row_ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for rows in group_rows(self.session, row_ids).values():
            found.update(rows)
        return found

    def _connected(self, seeds: set[int]) -> set[int]:
        """Rows reachable from ``seeds`` through shared ids (every live record's own id is
        indexed too)."""
        rows, frontier = set(seeds), set(seeds)
        seen: set[str] = set()
        while frontier:
            aliases = self._aliases_of(frontier) - seen
            seen |= aliases
            frontier = self._rows_with(aliases) - rows
            rows |= frontier
        return rows

    def _aliases_of(self, rows: set[int]) -> set[str]:
        found: set[str] = set()
        ordered = sorted(rows)
        for start in range(0, len(ordered), _CHUNK):
            part = ordered[start : start + _CHUNK]
            query = select(VulnAliasId.alias).where(VulnAliasId.vulnerability_id.in_(part))
            found.update(self.session.scalars(query))
        return found

    def _rows_with(self, aliases: set[str]) -> set[int]:
        found: set[int] = set()
        ordered = sorted(aliases)
        for start in range(0, len(ordered), _CHUNK):
            part = ordered[start : start + _CHUNK]
            query = select(VulnAliasId.vulnerability_id).where(VulnAliasId.alias.in_(part))
            found.update(self.session.scalars(query))
        return found

    def _members(self, rows: set[int]) -> dict[int, Member]:
        found: dict[int, Member] = {}
        ordered = sorted(rows)
        for start in range(0, len(ordered), _CHUNK):
            query = select(
                VulnRow.id, VulnRow.vuln_id, VulnRow.aliases, VulnRow.best_score, VulnRow.withdrawn
            ).where(VulnRow.id.in_(ordered[start : start + _CHUNK]))
            for rid, vuln_id, aliases, score, withdrawn in self.session.execute(query):
                ids = ids_of(vuln_id, aliases or ())
                found[rid] = Member(rid, vuln_id, ids, score, withdrawn is not None)
        return found

    def _current(self, rows: set[int]) -> dict[int, GroupFigures]:
        found: dict[int, GroupFigures] = {}
        ordered = sorted(rows)
        for start in range(0, len(ordered), _CHUNK):
            query = select(
                VulnRow.id,
                VulnRow.alias_group,
                VulnRow.group_score,
                VulnRow.group_severity,
                VulnRow.score_source,
            ).where(VulnRow.id.in_(ordered[start : start + _CHUNK]))
            for rid, group, score, severity, source in self.session.execute(query):
                found[rid] = GroupFigures(group, score, severity, source)
        return found


def group_ids(session: Session, groups: Iterable[str]) -> dict[str, frozenset[str]]:
    """``alias_group`` -> every id of its live records (their own ids and aliases, upper-cased)."""
    wanted = sorted(set(groups))
    found: dict[str, set[str]] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = (
            select(VulnRow.alias_group, VulnAliasId.alias)
            .join(VulnAliasId, VulnAliasId.vulnerability_id == VulnRow.id)
            .where(VulnRow.alias_group.in_(wanted[start : start + _CHUNK]))
        )
        for group, alias in session.execute(query):
            found.setdefault(group, set()).add(alias)
    return {group: frozenset(ids) for group, ids in found.items()}


def primary_rows(session: Session, row_ids: Iterable[int]) -> dict[int, int]:
    """Row id -> the row id of its group's primary record (the one lists show)."""
    groups = group_rows(session, row_ids)
    every = sorted({r for rows in groups.values() for r in rows})
    group_of: dict[int, str] = {}
    primary: dict[str, int] = {}
    for start in range(0, len(every), _CHUNK):
        query = select(VulnRow.id, VulnRow.vuln_id, VulnRow.alias_group).where(
            VulnRow.id.in_(every[start : start + _CHUNK])
        )
        for rid, vuln_id, group in session.execute(query):
            group_of[rid] = group
            if vuln_id == group:
                primary[group] = rid
    return {rid: primary.get(group_of.get(rid, ""), rid) for rid in groups}


def once_per_group(
    session: Session, keys: Sequence[tuple[int, int]], *, skip_known: bool
) -> dict[tuple[int, int], int]:
    """``(row id, artifact id)`` keys to announce, one per alias group and artifact -> the row id
    of the group's primary to announce it under. With ``skip_known``, a key is dropped when the
    artifact already had a match of another record of its group (the vulnerability is known)."""
    primary = primary_rows(session, {vid for vid, _ in keys})
    seen: set[tuple[int, int]] = set()
    if skip_known and keys:
        groups = group_rows(session, primary)
        members = sorted({r for rows in groups.values() for r in rows})
        artifacts = sorted({aid for _, aid in keys})
        mine = set(keys)
        of_member = primary_rows(session, members)
        for start in range(0, len(artifacts), _CHUNK):
            query = select(VulnMatch.vulnerability_id, VulnMatch.artifact_id).where(
                VulnMatch.artifact_id.in_(artifacts[start : start + _CHUNK]),
                VulnMatch.vulnerability_id.in_(members),
            )
            for vid, aid in session.execute(query):
                if (vid, aid) not in mine:
                    seen.add((of_member.get(vid, vid), aid))
    found: dict[tuple[int, int], int] = {}
    for vid, aid in sorted(keys):
        key = (primary.get(vid, vid), aid)
        if key not in seen:
            seen.add(key)
            found[(vid, aid)] = key[0]
    return found


def group_spellings(session: Session, groups: Iterable[str]) -> dict[str, list[str]]:
    """``alias_group`` -> every id and alias of its records, as the feeds spell them (the first
    spelling of an id wins), the primary's first."""
    wanted = sorted(set(groups))
    found: dict[str, list[str]] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = (
            select(VulnRow.alias_group, VulnRow.vuln_id, VulnRow.aliases)
            .where(VulnRow.alias_group.in_(wanted[start : start + _CHUNK]))
            .order_by(VulnRow.alias_group, VulnRow.vuln_id != VulnRow.alias_group, VulnRow.vuln_id)
        )
        for group, vuln_id, aliases in session.execute(query):
            found.setdefault(group, []).extend([vuln_id, *(aliases or [])])
    return {group: _unique(ids) for group, ids in found.items()}


def merged_aliases(vuln_id: str, aliases: Iterable[str], spelled: Iterable[str]) -> list[str]:
    """A record's aliases followed by the other ids of its group, without its own id."""
    return [i for i in _unique([*aliases, *spelled]) if i.upper() != vuln_id.upper()]


def _unique(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in ids:
        if isinstance(value, str) and value.strip() and value.upper() not in seen:
            seen.add(value.upper())
            out.append(value)
    return out


_CVSS_PREFERENCE = ("4.0", "3.1", "3.0", "2.0")  # as ``Vulnerability.best_score`` picks


def cvss_version(scores: Iterable[dict[str, Any]] | None) -> str | None:
    """The CVSS version a record's best score comes from (v4, else v3.1, v3.0, v2)."""
    versions = {str(s.get("version")) for s in scores or [] if isinstance(s, dict)}
    return next((v for v in _CVSS_PREFERENCE if v in versions), None)


def source_versions(session: Session, rows: Sequence[VulnRow]) -> dict[int, str | None]:
    """Row id -> the CVSS version of its group's score (that of the record it came from)."""
    scores: dict[str, Any] = {r.vuln_id: r.scores for r in rows}
    others = sorted(
        {r.score_source for r in rows if r.score_source and r.score_source not in scores}
    )
    for start in range(0, len(others), _CHUNK):
        query = select(VulnRow.vuln_id, VulnRow.scores).where(
            VulnRow.vuln_id.in_(others[start : start + _CHUNK])
        )
        for vuln_id, found in session.execute(query):
            scores[vuln_id] = found
    return {r.id: cvss_version(scores.get(r.score_source or "")) for r in rows}
