"""Writers of a channel's files take their locks in one order: subdir rows, then files (PostgreSQL).

``channels/lockorder.py``. A forced upload locks the subdir row (its publication request), then
deletes the old file row; a verdict used to lock the file row first and the subdir row second (its
own publication request): with both at once, PostgreSQL found a deadlock and failed one of them
(the upload answered 503, seen in CI). A move or a removal did the same the other way round (the
file rows, then the subdir). Each pair below runs in two threads, the first holding what it locked
first while the second starts; in one order they queue, and the one that waited sees what the
other did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.principal import Principal
from stockade.channels.artifacts import ArtifactService, Selection
from stockade.channels.lockorder import lock_subdirs_of
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
    container: Container,
    first: Callable[[Session, threading.Event], object],
    then: Callable[[Session], object],
) -> list[BaseException]:
    """``first`` in one thread; once it sets the event (it holds its first lock and pauses),
    ``then`` in another. Neither may fail (a deadlock fails one), nor hang."""
    locked, errors = threading.Event(), []

    def one() -> None:
        try:
            with transaction(container.factory) as session:
                first(session, locked)
        except BaseException as exc:
            errors.append(exc)
        finally:
            locked.set()

    def two() -> None:
        locked.wait(10)
        try:
            with transaction(container.factory) as session:
                then(session)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one), threading.Thread(target=two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    return errors


@pytest.fixture
def pg_only(container: Container) -> None:
    if container.settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time; the lock order is PostgreSQL's")


def _verdict(kind: str, artifact_id: int, sha256: str) -> Callable[[Session], object]:
    def run(session: Session) -> object:
        if kind == "missing":
            return record_missing(session, artifact_id, sha256)
        report = ScanReport()
        return record_report(session, artifact_id, sha256, report, ScannerSet.of([]), duration_ms=1)

    return run


@pytest.mark.parametrize("kind", ["report", "missing"])
def test_a_verdict_waits_for_a_forced_upload(
    container: Container, admin: Principal, pg_only: None, kind: str
) -> None:
    make_channel(container, admin, "race")
    add_package(container, admin, "race", PACKAGE)
    artifact_id, channel_id, sha256 = _artifact(container, "race")

    def upload(session: Session, locked: threading.Event) -> None:  # subdir row, then the file
        request_publications(session, [(channel_id, "noarch")])
        session.flush()
        locked.set()
        threading.Event().wait(0.6)  # the verdict reaches its first lock meanwhile
        session.delete(session.get(Artifact, artifact_id))
        session.flush()

    errors = _race(container, upload, _verdict(kind, artifact_id, sha256))
    assert errors == [], errors
    with container.read_factory() as session:
        assert session.get(Artifact, artifact_id) is None  # the upload's change went through


@pytest.mark.parametrize("operation", ["move", "remove"])
def test_a_move_or_removal_waits_for_a_verdict(
    container: Container, admin: Principal, pg_only: None, operation: str
) -> None:
    make_channel(container, admin, "race-src")
    make_channel(container, admin, "race-dst")
    add_package(container, admin, "race-src", PACKAGE)
    artifact_id, _, sha256 = _artifact(container, "race-src")
    record = _verdict("report", artifact_id, sha256)

    def verdict(session: Session, locked: threading.Event) -> None:  # subdir row, then file
        lock_subdirs_of(session, [artifact_id])
        locked.set()
        threading.Event().wait(0.6)  # the move reaches its first lock meanwhile
        record(session)

    def bulk(session: Session) -> None:
        service = ArtifactService(session)
        selection = Selection(files=[f"noarch/{PACKAGE.name}"])
        if operation == "move":
            service.copy(admin, "race-src", "race-dst", selection, move=True)
        else:
            service.remove(admin, "race-src", selection)

    errors = _race(container, verdict, bulk)
    assert errors == [], errors
    with container.read_factory() as session:
        assert session.get(Artifact, artifact_id) is None  # the move or removal went through
