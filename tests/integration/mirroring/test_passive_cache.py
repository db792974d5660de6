"""The passive fetcher's cache of a mirror's upstream settings never outlives the mirror's
settings: an edited mirror, or a new mirror that took a deleted one's id (SQLite reuses the
highest id), fetches through its own source at once, not through the cached one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import UnavailableError
from stockade.db.engine import transaction
from stockade.mirroring.models import Mirror
from stockade.mirroring.service import MirrorService, MirrorSpec
from tests.support.mirror_data import copy_test_recipes


def _records(root: Path) -> list[tuple[str, str, int]]:
    repodata = json.loads((root / "noarch" / "repodata.json").read_text())
    packages = {**repodata.get("packages", {}), **repodata.get("packages.conda", {})}
    return [(name, r["sha256"], r["size"]) for name, r in sorted(packages.items())]


def _create(container: Container, admin: Principal, name: str, source: Path) -> int:
    spec = MirrorSpec(source=source.as_uri(), subdirs=["noarch"], schedule="")
    with transaction(container.factory) as session:
        return MirrorService(session, container.secrets).create(admin, name, spec).id


def test_a_deleted_or_edited_mirror_never_fetches_through_cached_settings(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    full = copy_test_recipes(tmp_path / "full")
    empty = tmp_path / "empty"
    (empty / "noarch").mkdir(parents=True)
    (empty / "noarch" / "repodata.json").write_text('{"packages": {}}')
    (first_name, first_sha, first_size), (name, sha, size) = _records(full)[:2]
    passive = container.passive
    old_id = _create(container, admin, "first", full)
    passive.ensure(old_id, "noarch", first_name, first_sha, first_size)  # settings now cached
    assert container.blobs.exists(first_sha)
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).delete(admin, "first")
    new_id = _create(container, admin, "second", empty)
    if new_id != old_id:  # PostgreSQL does not reuse ids; SQLite does
        with transaction(container.factory) as session:
            session.execute(update(Mirror).where(Mirror.id == new_id).values(id=old_id))
    with pytest.raises(UnavailableError):  # not through the deleted mirror's source
        passive.ensure(old_id, "noarch", name, sha, size)
    assert not container.blobs.exists(sha)
    with transaction(container.factory) as session:  # edited back: the new source, at once
        MirrorService(session, container.secrets).update(
            admin, "second", MirrorSpec(source=full.as_uri())
        )
    passive.ensure(old_id, "noarch", name, sha, size)
    assert container.blobs.exists(sha)
