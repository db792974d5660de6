"""CVE severity of what was downloaded, per day (SPEC §10 download reports).

Each day's downloads (``download_daily``) are split by the highest severity of the open
vulnerabilities (reported or active) of the file downloaded, as known now
(``artifact_vuln_summaries``): "none" when it has none, or it was cleared or mitigated, or the
file is no longer served in its channel (removed, or held since: the one ``servable`` rule). So
the chart answers "how much of what people fetched is vulnerable by today's knowledge".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from stockade.audit.downloads_models import DownloadDaily
from stockade.audit.downloads_reports import DownloadQuery, daily_filters
from stockade.channels.models import Artifact
from stockade.vulns.model import Severity
from stockade.vulns.models import ArtifactVulnSummary, MatchStatus

OPEN = (MatchStatus.REPORTED.value, MatchStatus.ACTIVE.value)
#: Bands from the most to the least severe, as the chart stacks and its legend lists them.
BANDS = [s.value for s in reversed(Severity)]


@dataclass
class ExposureDay:
    day: date
    downloads: dict[str, int] = field(default_factory=dict)  # severity band -> downloads

    @property
    def total(self) -> int:
        return sum(self.downloads.values())


def exposure_per_day(session: Session, query: DownloadQuery) -> list[ExposureDay]:
    """One entry per day with downloads, oldest first (a user filter is not applied: daily
    counts have no user)."""
    band: Any = case(
        (
            and_(
                ArtifactVulnSummary.worst_status.in_(OPEN),
                ArtifactVulnSummary.severity.is_not(None),
            ),
            ArtifactVulnSummary.severity,
        ),
        else_=Severity.NONE.value,
    )
    stmt = (
        select(DownloadDaily.day, band, func.sum(DownloadDaily.count))
        .outerjoin(
            Artifact,
            and_(
                Artifact.channel_id == DownloadDaily.channel_id,
                Artifact.subdir == DownloadDaily.subdir,
                Artifact.filename == DownloadDaily.filename,
                Artifact.servable.is_(True),  # the one rule: reports read what may be served
            ),
        )
        .outerjoin(ArtifactVulnSummary, ArtifactVulnSummary.artifact_id == Artifact.id)
        .where(*daily_filters(query))
        .group_by(DownloadDaily.day, band)
        .order_by(DownloadDaily.day)
    )
    days: dict[date, ExposureDay] = {}
    for day, severity, count in session.execute(stmt):
        entry = days.setdefault(day, ExposureDay(day))
        key = severity if severity in BANDS else Severity.NONE.value
        entry.downloads[key] = entry.downloads.get(key, 0) + int(count or 0)
    return list(days.values())
