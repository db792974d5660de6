"""Upstream repodata records are untrusted: each hostile one is excluded with a reason and the run
completes with the others (before this fix they entered the channel, broke its trees and reports
and made rattler clients drop the subdir). Keys that would send clients elsewhere are dropped and
null fields left out (rattler refuses a null ``depends``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.models import RunState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec

HOSTILE: dict[str, dict[str, Any]] = {
    "v-1..2": {"version": "1..2"},
    "noarch-list": {"noarch": ["x"]},
    "license-object": {"license": {}},
    "bad-spec": {"depends": ["foo >=>1"]},
    "build-number": {"build_number": 2**40},
    "timestamp-float": {"timestamp": 1.5},
}


def upstream(tmp_path: Path, testdata: Path) -> Path:
    folder = tmp_path / "upstream"
    shutil.copytree(testdata / "channels" / "test-recipes" / "noarch", folder / "noarch")
    path = folder / "noarch" / "repodata.json"
    doc = orjson.loads(path.read_bytes())
    records = doc["packages.conda"]
    template = records["dependency-1.0-0.conda"]
    for name, change in HOSTILE.items():
        record = template | {"name": name} | change
        records[f"{name}-1.0-0.conda"] = record
    records["dependency-1.0-0.conda"] = template | {
        "url": "https://elsewhere.example/dependency-1.0-0.conda",
        "channel": "https://elsewhere.example",
        "depends": None,
    }
    path.write_bytes(orjson.dumps(doc))
    return folder


def test_hostile_upstream_records_are_excluded_with_a_reason(
    container: Container, admin: Principal, testdata: Path, tmp_path: Path
) -> None:
    source = upstream(tmp_path, testdata).resolve().as_uri()
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).create(
            admin, "untrusted", MirrorSpec(source=source, mode="passive", subdirs=["noarch"])
        )
        run_id = RunService(session, container.secrets).request(admin, "untrusted").id
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome
    assert outcome.counts["excluded_by_reason"].get("integrity: record") == len(HOSTILE)
    with container.factory() as session:
        rows = {a.filename: a for a in session.scalars(select(Artifact)).all()}
    assert not {f"{name}-1.0-0.conda" for name in HOSTILE} & rows.keys()
    kept = orjson.loads(rows["dependency-1.0-0.conda"].record_json)
    assert "url" not in kept and "channel" not in kept and "depends" not in kept
    assert kept["sha256"] and kept["version"] == "1.0"
