"""Helpers of the mirroring integration tests."""

from __future__ import annotations

from pathlib import Path

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.policies.service import PolicyService


def no_scripts_run(container: Container, admin: Principal, testdata: Path, name: str) -> int:
    """An active mirror ``name`` of ``test-recipes`` (noarch) under a policy refusing link
    scripts, and a run of it requested; the run's id."""
    source = (testdata / "channels" / "test-recipes").resolve().as_uri()
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).create(
            admin, name, MirrorSpec(source=source, mode="active", subdirs=["noarch"])
        )
        PolicyService(session).create(admin, "no-scripts", {"no_link_scripts": True})
        PolicyService(session).assign(admin, "no-scripts", mirror=name)
        return RunService(session, container.secrets).request(admin, name).id
