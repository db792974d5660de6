"""SPEC §2, CEP 47: a mirrored record gets ``indexed_timestamp`` once, when it enters the channel."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, update

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.models import MirrorSubdirState, RunState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from tests.support.settle import settle


def _run(container: Container, admin: Principal, mirror: str) -> None:
    with transaction(container.factory) as session:
        run_id = RunService(session, container.secrets).request(admin, mirror).id
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome


def _rows(container: Container) -> dict[str, tuple[int, dict[str, object]]]:
    with container.read_factory() as session:
        return {
            fn: (indexed, orjson.loads(rec))
            for fn, indexed, rec in session.execute(
                select(Artifact.filename, Artifact.indexed_timestamp, Artifact.record_json)
            ).all()
        }


@pytest.mark.parametrize("mode", ["active", "passive"])
def test_mirrored_records_carry_a_stable_indexed_timestamp(
    container: Container, admin: Principal, testdata: Path, mode: str
) -> None:
    source = (testdata / "channels" / "test-recipes").resolve().as_uri()
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).create(
            admin, "recipes", MirrorSpec(source=source, mode=mode, subdirs=["noarch"])
        )
    _run(container, admin, "recipes")
    first = _rows(container)
    assert first
    for indexed, record in first.values():
        assert record["indexed_timestamp"] == indexed > 1_600_000_000_000  # ms, set by us
    settle(container)
    with container.read_factory() as session:
        sha = session.scalar(
            select(SubdirIndex.repodata_sha256)
            .join(Channel, Channel.id == SubdirIndex.channel_id)
            .where(Channel.name == "recipes", SubdirIndex.subdir == "noarch")
        )
    assert sha is not None
    published = orjson.loads(container.blobs.read_bytes(sha))["packages.conda"]
    assert {fn: r["indexed_timestamp"] for fn, r in published.items()} == {
        fn: indexed for fn, (indexed, _) in first.items() if fn.endswith(".conda")
    }
    # A record written before this fix (no indexed_timestamp in it): the next full run adds
    # the channel's own value to the record, and every other record keeps its value.
    legacy = next(iter(first))
    legacy_record = {k: v for k, v in first[legacy][1].items() if k != "indexed_timestamp"}
    with transaction(container.factory) as session:
        session.execute(
            update(Artifact)
            .where(Artifact.filename == legacy)
            .values(record_json=orjson.dumps(legacy_record), indexed_timestamp=123_000)
        )
        session.execute(update(MirrorSubdirState).values(fingerprint=None))
    _run(container, admin, "recipes")
    second = _rows(container)
    assert second[legacy][0] == second[legacy][1]["indexed_timestamp"] == 123_000
    assert {fn: v for fn, v in second.items() if fn != legacy} == {
        fn: v for fn, v in first.items() if fn != legacy
    }
