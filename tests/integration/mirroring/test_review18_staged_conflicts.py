"""Review of issue 18 (staged mirror rows): what others see and do while a run stages its rows.

A run now plans in a read-only session and writes its new rows in short transactions
(``mirroring.staging``), so an upload can land between the plan and a batch. Paused between two
batches (the run's ``between_batches`` hook, no timing):

- the channel's ``artifact_count`` must not count the run's staged rows ("listed nowhere");
- an upload of a file the run has not staged yet is accepted, and the run must still complete
  (a plan-time conflict is excluded as ``conflict``; here the next batch's insert breaks the
  unique constraint and the whole run fails, its staged rows discarded).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.channels.models import Artifact, Channel
from stockade.channels.scanstate import ScanStatus
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.models import RunState
from tests.conftest import own_server
from tests.integration.mirroring.test_staged_batches import _request_run, _sync
from tests.support.server import LiveServer

NOARCH = "channels/test-recipes/noarch"


def _staged_names(container: Container, channel: str) -> set[str]:
    with container.factory() as session:
        return set(
            session.scalars(
                select(Artifact.filename)
                .join(Channel, Channel.id == Artifact.channel_id)
                .where(Channel.name == channel, Artifact.scan_status == ScanStatus.STAGED)
            )
        )


def _admin(live: LiveServer) -> Principal:
    with transaction(live.container.factory) as session:
        users = UserService(session)
        return users.principal_for(users.get_by_name("admin"), via="password")


def test_staged_rows_are_not_counted_in_the_channel(
    backend: str, tmp_path_factory: pytest.TempPathFactory, testdata: Path
) -> None:
    with own_server(backend, tmp_path_factory, "review18-count", embedded_worker=False) as live:
        name = "staging-count"
        run_id = _request_run(live.container, _admin(live), testdata, name)
        counts: list[object] = []

        def count(rid: int, written: int) -> None:
            counts.append(live.admin.get(f"/api/v1/channels/{name}").json()["artifact_count"])

        outcome = _sync(live.container, count).execute(run_id)
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome
    assert counts, "the run never paused between batches"
    assert set(counts) == {0}, f"staged rows counted in the channel: {counts}"


def test_an_upload_during_staging_does_not_fail_the_run(
    backend: str, tmp_path_factory: pytest.TempPathFactory, testdata: Path
) -> None:
    with own_server(backend, tmp_path_factory, "review18-race", embedded_worker=False) as live:
        name = "staging-race"
        run_id = _request_run(live.container, _admin(live), testdata, name)
        uploads: list[int] = []

        def upload_once(rid: int, written: int) -> None:
            if uploads:
                return
            staged = _staged_names(live.container, name)
            later = sorted(p for p in (testdata / NOARCH).glob("*.conda") if p.name not in staged)[
                0
            ]  # a file of the plan that no batch has written yet
            uploads.append(live.upload(name, later).status_code)

        outcome = _sync(live.container, upload_once).execute(run_id)
    assert uploads == [201], uploads
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome
