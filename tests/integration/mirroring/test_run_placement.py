"""Which mirror runs execute in a process of their own (``mirroring/placement.py``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.models import MirrorSubdirState, RunState
from stockade.mirroring.placement import last_upstream_records, runs_apart
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.settings import MirrorSettings


def _request(container: Container, admin: Principal) -> int:
    with transaction(container.factory) as session:
        return RunService(session, container.secrets).request(admin, "placed").id


def test_auto_runs_unknown_and_big_mirrors_apart(
    container: Container, admin: Principal, testdata: Path
) -> None:
    source = (testdata / "channels" / "test-recipes").resolve().as_uri()
    with transaction(container.factory) as session:
        mirror = MirrorService(session, container.secrets).create(
            admin, "placed", MirrorSpec(source=source, subdirs=["noarch", "linux-fake"])
        )
        mirror_id = mirror.id
    auto = MirrorSettings(run_apart="auto", apart_from_records=100)
    first = _request(container, admin)
    with container.factory() as session:
        assert last_upstream_records(session, mirror_id) is None
        assert runs_apart(session, first, auto), "a mirror never run is of unknown size"
        assert not runs_apart(session, first, MirrorSettings(run_apart="never"))
        assert not runs_apart(session, 10_000, auto), "a run that is gone"
    outcome = container.mirror_sync().execute(first)
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome

    second = _request(container, admin)
    with container.factory() as session:
        seen = last_upstream_records(session, mirror_id)
        assert seen is not None and 0 < seen < 100
        assert not runs_apart(session, second, auto)
        assert runs_apart(session, second, MirrorSettings(run_apart="always"))
    with transaction(container.factory) as session:
        session.execute(
            update(MirrorSubdirState)
            .where(MirrorSubdirState.mirror_id == mirror_id)
            .values(upstream_count=50)
        )
    with container.factory() as session:
        assert last_upstream_records(session, mirror_id) == 100  # two subdirs
        assert runs_apart(session, second, auto), "its last run saw apart_from_records"
