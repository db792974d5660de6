"""A verdict and a forced upload of the same file take their locks in one order (PostgreSQL).

A forced upload locks the subdir row (asking for a publication), then deletes the old artifact
row. A verdict used to lock the artifact row first (``SELECT … FOR UPDATE``, or the update of its
status) and the subdir row second (its own publication request): with both at once, PostgreSQL
found a deadlock and failed one of them (the upload answered 503). Now the verdict takes the
subdir row first, waits for the upload, and then sees its artifact replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel
from stockade.channels.publishing import request_publications
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.scanning.engine import ScanReport
from stockade.scanning.recording import ScannerSet, record_missing, record_report
from tests.integration.conftest import add_package, make_channel

PACKAGE = Path(__file__).parents[2] / "data/channels/test-recipes/noarch/dependency-1.0-0.conda"


def _artifact(container: Container, channel: str) -> tuple[int, int, str]:
    with container.read_factory() as session:
        row = session.execute(
            select(Artifact.id, Artifact.channel_id, Artifact.sha256)
            .join(Channel, Channel.id == Artifact.channel_id)
            .where(Channel.name == channel)
        ).one()
        return row[0], row[1], row[2]


def _race(
    container: Container, channel_id: int, artifact_id: int, verdict: Callable[[Session], object]
) -> list[BaseException]:
    """The upload's order in one thread (subdir, a pause, then the artifact), the verdict in
    another, started while the upload holds the subdir row."""
    locked, errors = threading.Event(), []

    def upload() -> None:
        try:
            with transaction(container.factory) as session:
                request_publications(session, [(channel_id, "noarch")])
                session.flush()
                locked.set()
                threading.Event().wait(0.6)  # the verdict reaches its first lock meanwhile
                session.delete(session.get(Artifact, artifact_id))
                session.flush()
        except BaseException as exc:
            errors.append(exc)
            locked.set()

    def judge() -> None:
        locked.wait(10)
        try:
            with transaction(container.factory) as session:
                verdict(session)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload), threading.Thread(target=judge)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


@pytest.mark.parametrize("path", ["report", "missing"])
def test_a_verdict_waits_for_a_forced_upload_instead_of_deadlocking(
    container: Container, admin: Principal, path: str
) -> None:
    if container.settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time; the lock order is PostgreSQL's")
    make_channel(container, admin, "race")
    add_package(container, admin, "race", PACKAGE)
    artifact_id, channel_id, sha256 = _artifact(container, "race")

    def verdict(session: Session) -> object:
        if path == "missing":
            return record_missing(session, artifact_id, sha256)
        report = ScanReport()
        return record_report(session, artifact_id, sha256, report, ScannerSet.of([]), duration_ms=1)

    errors = _race(container, channel_id, artifact_id, verdict)
    assert errors == [], errors
    with container.read_factory() as session:
        assert session.get(Artifact, artifact_id) is None  # the upload's change went through
