"""Per-artifact vulnerability figures (SPEC §7), counting each alias group once.

An artifact's :class:`~stockade.vulns.models.ArtifactVulnSummary` holds the highest score among
its open matches, that score's band, the most severe status and the number of vulnerabilities per
status. Records that alias each other are one vulnerability (``vulns.aliases``): the matches of
one group on one artifact count once, in the most severe of their statuses, with the group's score.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from stockade.core.clock import utcnow
from stockade.vulns.model import severity_band
from stockade.vulns.models import ArtifactVulnSummary, MatchStatus, VulnMatch
from stockade.vulns.models import Vulnerability as VulnRow

__all__ = ["OPEN_STATUSES", "merged_matches", "refresh_summaries", "summary_row", "worse"]

#: Statuses whose score counts in an artifact's summary: the vulnerability (still) applies.
OPEN_STATUSES = frozenset({MatchStatus.REPORTED.value, MatchStatus.ACTIVE.value})
_CHUNK = 500


def worse(a: str, b: str) -> bool:
    """True when status ``a`` is more severe than ``b`` (unknown statuses rank lowest)."""
    known = {s.value: s.rank for s in MatchStatus}
    return known.get(a, -1) > known.get(b, -1)


def merged_matches(
    rows: Sequence[tuple[str, str, float | None]],
) -> list[tuple[str, float | None]]:
    """``(alias_group, status, score)`` of one artifact's matches -> one ``(status, score)`` per
    group: its most severe status."""
    by_group: dict[str, tuple[str, float | None]] = {}
    for group, status, score in rows:
        seen = by_group.get(group)
        if seen is None or worse(status, seen[0]):
            by_group[group] = (status, score)
    return list(by_group.values())


def refresh_summaries(session: Session, artifact_ids: Sequence[int]) -> None:
    """Recompute :class:`ArtifactVulnSummary` rows (none for an artifact without matches)."""
    ordered = sorted(set(artifact_ids))
    for start in range(0, len(ordered), _CHUNK):
        part = ordered[start : start + _CHUNK]
        query = (
            select(
                VulnMatch.artifact_id, VulnRow.alias_group, VulnMatch.status, VulnRow.group_score
            )
            .join(VulnRow, VulnRow.id == VulnMatch.vulnerability_id)
            .where(VulnMatch.artifact_id.in_(part))
        )
        gathered: dict[int, list[tuple[str, str, float | None]]] = defaultdict(list)
        for aid, group, status, score in session.execute(query):
            gathered[aid].append((group, status, score))
        gone = [aid for aid in part if aid not in gathered]
        if gone:
            session.execute(
                delete(ArtifactVulnSummary).where(ArtifactVulnSummary.artifact_id.in_(gone))
            )
        rows = [summary_row(aid, merged_matches(found)) for aid, found in gathered.items()]
        if rows:
            _upsert_summaries(session, rows)


def _upsert_summaries(session: Session, rows: list[dict[str, object]]) -> None:
    table: Any = ArtifactVulnSummary.__table__
    dialect = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement: Any = dialect(table)
    columns = ("max_score", "severity", "worst_status", "counts", "updated_at")
    statement = statement.on_conflict_do_update(
        index_elements=["artifact_id"], set_={c: statement.excluded[c] for c in columns}
    )
    session.connection().execute(statement, rows)


def summary_row(artifact_id: int, matches: list[tuple[str, float | None]]) -> dict[str, object]:
    """Highest score among open matches, its band, the most severe status, counts per status."""
    counts: dict[str, int] = defaultdict(int)
    for status, _ in matches:
        counts[status] += 1
    scores = [s for status, s in matches if status in OPEN_STATUSES and s is not None]
    best = max(scores) if scores else None
    worst = max((MatchStatus(s) for s in counts), key=lambda s: s.rank)
    return {
        "artifact_id": artifact_id,
        "max_score": best,
        "severity": severity_band(best).value if best is not None else None,
        "worst_status": worst.value,
        "counts": dict(counts),
        "updated_at": utcnow(),
    }
