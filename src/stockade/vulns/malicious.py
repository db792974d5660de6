"""The known-bad list the hash scanner reads, fed from the vulnerability feeds (SPEC §8).

OSV ``MAL-`` records (OpenSSF malicious packages) are stored like every advisory, with their conda
names already mapped (``vuln_targets``, through the name map); here they become the immutable
:class:`~stockade.scanning.scanners.hashes.KnownBadList` snapshot. :func:`list_key` is a cheap
fingerprint of those rows, so the scanners are rebuilt (and everything rescanned) only when a
feed sync changed them.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stockade.scanning.scanners.hashes import (
    KnownBadList,
    MaliciousRecord,
    OsvRecordError,
    known_bad_list,
    parse_osv_malicious,
)
from stockade.vulns.models import Vulnerability, VulnTarget

MALICIOUS_PREFIX = "MAL-"


def _malicious(session: Session) -> list[Vulnerability]:
    return list(
        session.scalars(
            select(Vulnerability).where(
                Vulnerability.vuln_id.startswith(MALICIOUS_PREFIX),
                Vulnerability.withdrawn.is_(None),
            )
        ).all()
    )


def list_key(session: Session) -> str:
    count, newest = session.execute(
        select(func.count(Vulnerability.id), func.max(Vulnerability.updated_at)).where(
            Vulnerability.vuln_id.startswith(MALICIOUS_PREFIX)
        )
    ).one()
    return f"{count}:{newest.isoformat() if newest else ''}"


def known_bad_from_feeds(session: Session) -> KnownBadList:
    rows = _malicious(session)
    if not rows:
        return KnownBadList()
    targets: dict[int, set[str]] = defaultdict(set)
    for vid, name in session.execute(
        select(VulnTarget.vulnerability_id, VulnTarget.conda_name).where(
            VulnTarget.vulnerability_id.in_([r.id for r in rows])
        )
    ).all():
        targets[vid].add(name)
    records: list[MaliciousRecord] = []
    names: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        try:
            parsed = parse_osv_malicious(
                {"id": row.vuln_id, "summary": row.summary, "affected": row.affected or []}
            )
        except OsvRecordError:
            continue  # a record the feed stored but this reader cannot place: not fatal
        for record in parsed:
            records.append(record)
            names[(record.ecosystem, record.name)] = targets[row.id]
    return known_bad_list(records, lambda eco, name: names.get((eco, name), set()))
