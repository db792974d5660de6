"""A stop asked for a running run is honoured before every step that changes anything, however
short the run (issue 11 item 10): the run ends ``stopped`` and the channel is unchanged.

The stop is asked from a hook the run calls just before each step, so no timing is involved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring import runs
from stockade.mirroring.models import MirrorRun, MirrorSubdirState, RunState
from stockade.mirroring.runs import RunService
from tests.integration.mirroring.support import no_scripts_run

STEPS = ["fetch", "evaluate", "plan", "download", "recheck", "publish"]


@pytest.mark.parametrize("step", STEPS)
def test_stop_before_a_step_applies_nothing(
    container: Container, admin: Principal, testdata: Path, step: str
) -> None:
    run_id = no_scripts_run(container, admin, testdata, "stoppable")
    sync = container.mirror_sync()
    seen: list[str] = []

    def stop_at(rid: int, name: str) -> None:
        seen.append(name)
        if name == step:
            with transaction(container.factory) as session:
                answered = RunService(session, container.secrets).stop(admin, rid)
                assert answered.stop_requested

    sync.before_step = stop_at
    outcome = sync.execute(run_id)
    assert outcome is not None
    assert step in seen, f"the run never reached {step}: {seen}"
    assert seen[-1] == step, "the run went on after the stop"
    assert outcome.state == RunState.STOPPED, outcome.summary
    with container.factory() as session:
        assert session.scalars(select(Artifact.filename)).all() == []
        assert session.scalars(select(MirrorSubdirState.subdir)).all() == []
        row = session.get(MirrorRun, run_id)
        assert row is not None
        assert row.state == RunState.STOPPED.value


def test_without_a_stop_the_same_run_completes(
    container: Container, admin: Principal, testdata: Path
) -> None:
    run_id = no_scripts_run(container, admin, testdata, "stoppable")
    sync = container.mirror_sync()
    seen: list[str] = []
    sync.before_step = lambda rid, name: seen.append(name)
    outcome = sync.execute(run_id)
    assert outcome is not None
    assert outcome.state == RunState.COMPLETED, outcome.summary
    assert seen == STEPS
    with container.factory() as session:
        assert session.scalars(select(Artifact.filename)).all()


def test_the_switching_transaction_refuses_a_stopped_run(
    container: Container, admin: Principal, testdata: Path
) -> None:
    """The last check sits in the transaction that applies the result, on the run's row."""
    run_id = no_scripts_run(container, admin, testdata, "stoppable")
    with transaction(container.factory) as session:
        assert runs.claim(session, run_id, "me", stale_after=runs.timedelta(seconds=60))
    with transaction(container.factory) as session:
        assert runs.hold_for_apply(session, run_id, "me") is True
        assert runs.hold_for_apply(session, run_id, "someone-else") is None
    with transaction(container.factory) as session:
        RunService(session, container.secrets).stop(admin, run_id)
    with transaction(container.factory) as session:
        assert runs.hold_for_apply(session, run_id, "me") is False
        assert runs.stop_asked(session, run_id, "me") is True
