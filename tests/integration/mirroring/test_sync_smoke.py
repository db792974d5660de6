"""A mirror run end to end without HTTP: file:// upstream (the real test-recipes channel)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.models import MirrorRun, RunState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.policies.service import PolicyService


def test_active_file_mirror(container: Container, admin: Principal, testdata: Path) -> None:
    source = (testdata / "channels" / "test-recipes").resolve().as_uri()
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).create(
            admin,
            "recipes",
            MirrorSpec(source=source, mode="active", subdirs=["noarch", "linux-fake"]),
        )
        PolicyService(session).create(admin, "no-python", {"exclude_specs": ["python"]})
        PolicyService(session).assign(admin, "no-python", channel="recipes")
        run = RunService(session, container.secrets).request(admin, "recipes")
        run_id = run.id
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None, "not claimed"
    assert outcome.state == RunState.COMPLETED, outcome.summary
    with container.factory() as session:
        names = set(session.scalars(select(Artifact.name)).all())
        row = session.get(MirrorRun, run_id)
        assert row is not None
        print(row.counts, row.steps)
    assert "python" not in names
    assert "dependent" in names
    # second run: unchanged
    with transaction(container.factory) as session:
        run_id = RunService(session, container.secrets).request(admin, "recipes").id
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None
    assert outcome.summary == "unchanged"
