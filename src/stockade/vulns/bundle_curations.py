"""Curation decisions in a ``cve.zip`` (``curations.json``): curated knowledge crosses the gap.

SPEC §9: a CVE bundle carries vulnerabilities, name mappings *and curation decisions*. The member
is ``{"decisions": [{"vuln_id", "package", "version", "builds", "status", "note", "by", "at"}]}``,
the history in the order it was made. On import, each decision is checked like one made here
(status, selector, a note of at most ``NOTE_MAX`` characters, ``at`` an ISO 8601 time with an
offset) and must name an advisory stored here (or in the same bundle). Who decided is not carried
over as an account (users differ across the gap): the decision is stored without one, and ``by``
is kept in the audit record of the import. A decision already imported (same advisory, selector,
status, note and time) is skipped, so importing a bundle twice adds nothing.

A decision keeps the time it was made, and statuses follow the latest decision by that time
(``vulns.matcher``), so an older decision imported later does not override a newer local one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.models import User
from stockade.vulns.bundlefile import CURATIONS, BundleError, listed_in
from stockade.vulns.curation import CURATED_STATUSES, GLOB_MAX, NOTE_MAX
from stockade.vulns.matcher import MatchCounts, Matcher
from stockade.vulns.models import Curation
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.store import chunked

__all__ = ["CURATIONS", "export_decisions", "import_decisions"]

_KEYS = frozenset({"vuln_id", "package", "version", "builds", "status", "note", "by", "at"})


def export_decisions(session: Session) -> list[dict[str, Any]]:
    """Every decision, oldest first, as ``curations.json`` lists them."""
    query = (
        select(Curation, VulnRow.vuln_id, User.username)
        .join(VulnRow, VulnRow.id == Curation.vulnerability_id)
        .outerjoin(User, User.id == Curation.created_by_id)
        .order_by(Curation.created_at, Curation.id)
    )
    return [
        {
            "vuln_id": vuln_id,
            "package": row.package,
            "version": row.version,
            "builds": row.builds,
            "status": row.status,
            "note": row.note,
            "by": username,
            "at": row.created_at.isoformat(),
        }
        for row, vuln_id, username in session.execute(query)
    ]


def import_decisions(
    session: Session, data: bytes, matcher: Matcher
) -> tuple[int, MatchCounts, list[str | None]]:
    """Store the decisions not yet here and re-status what they cover.

    Returns (decisions added, the re-statusing counts, who made the added ones).
    """
    decisions = _decisions(data)
    ids = _advisory_ids(session, {d["vuln_id"] for d in decisions})
    added = 0
    by: list[str | None] = []
    covered: set[tuple[int, str, str]] = set()
    for index, decision in enumerate(decisions):
        row_id = ids.get(decision["vuln_id"])
        if row_id is None:
            raise BundleError(
                f"decisions[{index}]: no advisory {decision['vuln_id']!r} here or in the bundle",
                member=CURATIONS,
            )
        if _known(session, row_id, decision):
            continue
        session.add(
            Curation(
                vulnerability_id=row_id,
                package=decision["package"],
                version=decision["version"],
                builds=decision["builds"],
                status=decision["status"],
                note=decision["note"],
                created_by_id=None,
                created_at=decision["at"],
            )
        )
        added += 1
        by.append(decision["by"])
        covered.add((row_id, decision["package"], decision["version"]))
    session.flush()
    counts = MatchCounts()
    for row_id, package, version in sorted(covered):
        counts += matcher.restatus(row_id, package, version)
    if added:
        matcher.store.bump()
    return added, counts, by


def _decisions(data: bytes) -> list[dict[str, Any]]:
    listed = listed_in(data, CURATIONS, "decisions")
    return [_decision(item, index) for index, item in enumerate(listed)]


def _decision(item: Any, index: int) -> dict[str, Any]:
    where = f"decisions[{index}]"

    def fail(why: str) -> BundleError:
        return BundleError(f"{where}: {why}", member=CURATIONS)

    if not isinstance(item, dict):
        raise fail("not an object")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise fail(f"unknown field(s) {', '.join(unknown)}")
    texts: dict[str, str] = {}
    for key, limit in (("vuln_id", 128), ("package", 256), ("version", 128), ("note", NOTE_MAX)):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise fail(f"{key} must be a non-empty string of at most {limit} characters")
        texts[key] = value.strip() if key != "note" else value
    builds = item.get("builds")
    if builds is not None and (not isinstance(builds, str) or not builds or len(builds) > GLOB_MAX):
        raise fail(f"builds must be null or a glob of at most {GLOB_MAX} characters")
    status = item.get("status")
    if status not in CURATED_STATUSES:
        raise fail(f"status must be one of {', '.join(sorted(CURATED_STATUSES))}")
    by = item.get("by")
    if by is not None and (not isinstance(by, str) or len(by) > 256):
        raise fail("by must be null or a user name")
    at = _time(item.get("at"))
    if at is None:
        raise fail("at must be an ISO 8601 time with an offset")
    return {**texts, "builds": builds, "status": status, "by": by, "at": at}


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _advisory_ids(session: Session, vuln_ids: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunked(sorted(set(vuln_ids))):
        query = select(VulnRow.vuln_id, VulnRow.id).where(VulnRow.vuln_id.in_(part))
        found.update({str(vuln_id): int(row_id) for vuln_id, row_id in session.execute(query)})
    return found


def _known(session: Session, row_id: int, decision: dict[str, Any]) -> bool:
    query = select(Curation.id, Curation.created_at).where(
        Curation.vulnerability_id == row_id,
        Curation.package == decision["package"],
        Curation.version == decision["version"],
        Curation.builds.is_(None)
        if decision["builds"] is None
        else Curation.builds == decision["builds"],
        Curation.status == decision["status"],
        Curation.note == decision["note"],
    )
    return any(_same_instant(at, decision["at"]) for _, at in session.execute(query))


def _same_instant(stored: datetime | None, wanted: datetime) -> bool:
    if stored is None:
        return False
    return abs((stored - wanted).total_seconds()) < 1e-3
