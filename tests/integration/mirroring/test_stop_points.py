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
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.policies.service import PolicyService

STEPS = ["fetch", "evaluate", "plan", "download", "recheck", "publish"]


def _mirror(container: Container, admin: Principal, testdata: Path) -> int:
    source = (testdata / "channels" / "test-recipes").resolve().as_uri()
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).create(
            admin, "stoppable", MirrorSpec(source=source, mode="active", subdirs=["noarch"])
        )
        PolicyService(session).create(admin, "no-scripts", {"no_link_scripts": True})
        PolicyService(session).assign(admin, "no-scripts", mirror="stoppable")
        return RunService(session, container.secrets).request(admin, "stoppable").id


@pytest.mark.parametrize("step", STEPS)
def test_stop_before_a_step_applies_nothing(
    container: Container, admin: Principal, testdata: Path, step: str
) -> None:
    run_id = _mirror(container, admin, testdata)
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
    run_id = _mirror(container, admin, testdata)
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
    run_id = _mirror(container, admin, testdata)
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
