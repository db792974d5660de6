"""What a package page says of each build's scan: its state and, when it is served despite
findings (suspicious builds a channel serves, released ones), the rules that matched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact
from stockade.channels.scanstate import ScanStatus
from stockade.scanning.models import ArtifactScan

# States whose findings a reader is shown: served even though a rule matched.
SHOWN_RULES = frozenset({ScanStatus.SUSPICIOUS, ScanStatus.RELEASED})


@dataclass(frozen=True)
class BuildVerdict:
    status: str
    rules: list[str] = field(default_factory=list)


def build_verdicts(session: Session, artifacts: Sequence[Artifact]) -> dict[int, BuildVerdict]:
    """Each artifact's scan state by id; the distinct rules that matched for the states in
    :data:`SHOWN_RULES`."""
    wanted = [a.id for a in artifacts if a.scan_status in SHOWN_RULES]
    findings: dict[int, list[str]] = {}
    if wanted:
        rows = session.execute(
            select(ArtifactScan.artifact_id, ArtifactScan.findings).where(
                ArtifactScan.artifact_id.in_(wanted)
            )
        )
        for artifact_id, found in rows:
            rules = (str(f.get("rule", "")) for f in found or [] if isinstance(f, dict))
            findings[artifact_id] = [r for r in dict.fromkeys(rules) if r]
    return {a.id: BuildVerdict(a.scan_status, findings.get(a.id, [])) for a in artifacts}
