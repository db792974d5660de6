"""A passive mirror's first download: the file is fetched, then scanned before it is served.

The first client waits for the verdict (up to ``wait_s``); when the scan is taken by another
process, or takes longer, the client is told to come back (503 with Retry-After) and the file is
served once its verdict makes it servable. A malicious file is never served and leaves the index.
"""

from __future__ import annotations

import time
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.intake import admit_fetched
from stockade.channels.models import Artifact
from stockade.channels.scanstate import ScanStatus
from stockade.db.engine import transaction
from stockade.scanning.service import ScanRunner

POLL_S = 0.2


class FetchedOutcome(StrEnum):
    SERVE = "serve"
    WAIT = "wait"  # no verdict yet: 503, try again
    REFUSE = "refuse"  # held or quarantined: as if it did not exist


def verdict_for_fetched(
    factory: sessionmaker[Session], runner: ScanRunner, artifact_id: int, *, wait_s: float
) -> FetchedOutcome:
    with transaction(factory) as session:
        admit_fetched(session, artifact_id)
    runner.scan_now(artifact_id)
    deadline = time.monotonic() + wait_s
    while True:
        outcome = _outcome(factory, artifact_id)
        if outcome != FetchedOutcome.WAIT or time.monotonic() >= deadline:
            return outcome
        time.sleep(POLL_S)


def _outcome(factory: sessionmaker[Session], artifact_id: int) -> FetchedOutcome:
    with factory() as session:
        row = session.execute(
            select(Artifact.scan_status, Artifact.servable).where(Artifact.id == artifact_id)
        ).first()
    if row is None:
        return FetchedOutcome.REFUSE
    if row.scan_status in (ScanStatus.PENDING, ScanStatus.UNFETCHED):
        return FetchedOutcome.WAIT
    return FetchedOutcome.SERVE if row.servable else FetchedOutcome.REFUSE
