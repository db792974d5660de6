"""A mirror run end to end without HTTP: file:// upstream (the real test-recipes channel)."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from pathlib import Path

import zstandard
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.models import MirrorRun, RunState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.policies.service import PolicyService
from tests.integration.mirroring.support import no_scripts_run


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


def test_link_scripts_are_read_from_downloaded_files(
    container: Container, admin: Principal, testdata: Path
) -> None:
    """Repodata does not tell link scripts: an active run reads the files it downloaded."""
    run_id = no_scripts_run(container, admin, testdata, "scripted")
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None
    assert outcome.state == RunState.COMPLETED, outcome.summary
    with container.factory() as session:
        kept = set(session.scalars(select(Artifact.filename)).all())
    recipes = testdata / "channels" / "test-recipes" / "noarch"
    scripted = {p.name for p in recipes.glob("*.conda") if _has_link_script(p)}
    assert len(scripted) >= 3, "the test data changed: too few packages with link scripts"
    assert not scripted & kept
    assert "dependency-1.0-0.conda" in kept
    assert outcome.counts["excluded_by_reason"].get("no-scripts: no_link_scripts") == len(scripted)


LINK_SCRIPT = re.compile(r"(^|/)\.[^/]+-(pre-link|post-link|pre-unlink)\.(sh|bat)$")


def _has_link_script(path: Path) -> bool:
    """Independently of the product: list the payload members of a .conda file."""
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not (member.startswith("pkg-") and member.endswith(".tar.zst")):
                continue
            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(archive.read(member)))
            with tarfile.open(fileobj=raw, mode="r|") as tar:
                if any(LINK_SCRIPT.search(info.name) for info in tar):
                    return True
    return False
