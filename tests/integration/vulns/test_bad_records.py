"""One bad record already stored (from before index.json was fully validated) breaks nothing.

A row is inserted straight into ``artifacts`` beside a good ``aiohttp`` (bypassing validation, as
rows stored by older versions were). Every reader of stored records must leave that one record
out and say so, never fail: package trees (of a dependent and of the bad artifact itself),
environment reports from specs and from a lock file in every format (JSON, CSV, CycloneDX, SPDX),
the channel report, ``channeldata.json`` and the publication of the subdir's repodata.
On the code before this fix each of the trees and reports raised (rattler refused the whole
subdir) and ``channeldata.json`` could not be built again for the channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel, RepodataPatch, SubdirIndex
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.vulns.envfiles import LockedPackage, parse_environment_file
from stockade.vulns.reports import (
    channel_report,
    package_tree,
    render_csv,
    render_json,
    report_environment,
)
from stockade.vulns.sbom import cyclonedx_json, spdx_json
from stockade.vulns.trees import TreeBuilder
from tests.factories.packages import PackageSpec
from tests.integration.vulns.support import channel_with_advisories
from tests.support.settle import settle

ADVISORY = "PYSEC-2021-76"
BAD_FILE = "aiohttp-9.0-bad.conda"

#: What a package could carry before this fix (each rejected by rattler or by our types).
BAD_RECORDS: dict[str, tuple[str, bytes]] = {
    "version 1..2": ("1..2", b'{"version": "1..2"}'),
    "noarch list": ("9.0", b'{"noarch": ["x"]}'),
    "license object": ("9.0", b'{"license": {}}'),
    "depends string": ("9.0", b'{"depends": "python"}'),
    "bad match spec": ("9.0", b'{"depends": ["foo >=>1"]}'),
    "timestamp 1e40": ("9.0", b'{"timestamp": 1e40}'),
    "not json": ("9.0", b"{not json"),
}


@pytest.fixture
def world(container: Container, admin: Principal, tmp_path: Path) -> str:
    specs = (
        PackageSpec(name="app", version="1.0", build="0", depends=("mid",)),
        PackageSpec(name="mid", version="1.0", build="0", depends=("aiohttp",)),
        PackageSpec(name="aiohttp", version="3.7.3", build="0"),
    )
    channel = channel_with_advisories(container, admin, tmp_path, "internal", specs, "aiohttp")
    settle(container)
    return channel


def insert_bad_row(container: Container, version: str, patch: bytes) -> None:
    """A copy of the good aiohttp row with a broken record, inserted without any validation."""
    with transaction(container.factory) as session:
        good = session.scalar(select(Artifact).where(Artifact.name == "aiohttp"))
        assert good is not None
        record = orjson.loads(good.record_json)
        try:
            record |= orjson.loads(patch)
            record_json = orjson.dumps(record)
        except orjson.JSONDecodeError:
            record_json = patch
        values: dict[str, Any] = {
            c.name: getattr(good, c.name) for c in Artifact.__table__.columns if c.name != "id"
        }
        values |= {"filename": BAD_FILE, "version": version, "build": "bad"}
        values |= {"record_json": record_json, "sha256": "f" * 64}
        session.add(Artifact(**values))
        index = session.scalar(select(SubdirIndex).where(SubdirIndex.subdir == "noarch"))
        assert index is not None
        index.requested_rev += 1


def said(notes: list[str]) -> bool:
    return any(BAD_FILE in note for note in notes)


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_one_bad_record_breaks_no_surface(
    container: Container, admin: Principal, world: str, case: str
) -> None:
    version, patch = BAD_RECORDS[case]
    insert_bad_row(container, version, patch)
    with container.factory() as session:
        tree = package_tree(session, admin, world, "app", "1.0", "0", "noarch")
        assert tree.solve_error is None and said(tree.report.notes)
        assert [f.path for f in tree.report.findings if f.vuln_id == ADVISORY] == [
            ["app", "mid", "aiohttp"]
        ]
        env = parse_environment_file(b"channels: [internal]\ndependencies: [app]\n", "env.yml")
        solved = report_environment(session, admin, env)
        locked = TreeBuilder(session, admin).pin(
            [LockedPackage(name="aiohttp", version="3.7.3", build="0", subdir="noarch")],
            [TreeBuilder(session, admin).readable(world)],
            "linux-64",
        )
        itself = package_tree(session, admin, world, "aiohttp", version, "bad", "noarch")
        channel = session.scalar(select(Channel).where(Channel.name == world))
        assert channel is not None
        rows = channel_report(session, channel)
    assert said(solved.notes) and {p.name for p in solved.packages} == {"app", "mid", "aiohttp"}
    assert said(locked.notes) and locked.nodes["aiohttp"].known
    assert itself.solve_error is not None and BAD_FILE in itself.solve_error
    assert said(itself.report.notes)
    for report in (solved, tree.report, itself.report):
        for render in (render_json, render_csv, cyclonedx_json, spdx_json):
            assert render(report)
    assert render_csv(rows) and render_json(rows)
    assert b"stockade:note" in cyclonedx_json(solved) and BAD_FILE.encode() in spdx_json(solved)


@pytest.mark.parametrize("case", ["version 1..2", "not json", "timestamp 1e40"])
def test_channeldata_and_repodata_publish_around_a_bad_record(
    container: Container, admin: Principal, world: str, case: str
) -> None:
    version, patch = BAD_RECORDS[case]
    insert_bad_row(container, version, patch)
    settle(container)
    with container.factory() as session:
        channel = session.scalar(select(Channel).where(Channel.name == world))
        assert channel is not None
        channel_id = channel.id
    container.publisher.publish_channeldata(channel_id)
    with container.factory() as session:
        channel = session.get(Channel, channel_id)
        index = session.scalar(select(SubdirIndex).where(SubdirIndex.subdir == "noarch"))
        assert channel is not None and channel.channeldata_sha256 and index is not None
        assert index.published_rev == index.requested_rev
        channeldata = orjson.loads(container.blobs.read_bytes(channel.channeldata_sha256))
        repodata = orjson.loads(container.blobs.read_bytes(index.repodata_sha256 or ""))
    assert channeldata["packages"]["aiohttp"]["version"] == "3.7.3"
    assert set(channeldata["packages"]) == {"app", "mid", "aiohttp"}
    assert BAD_FILE not in repodata["packages.conda"]  # never published to clients
    assert "aiohttp-3.7.3-0.conda" in repodata["packages.conda"]


@pytest.mark.parametrize(
    "changes", [{"version": "1..2"}, {"depends": ["foo >=>1"]}, {"license": {"x": 1}}]
)
def test_a_patch_that_would_break_a_record_is_not_applied(
    container: Container, admin: Principal, world: str, changes: dict[str, Any]
) -> None:
    """Stored before patch values were checked: publication and trees keep the unpatched record
    and say why (the published subdir's warnings, the tree's notes)."""
    with transaction(container.factory) as session:
        channel = session.scalar(select(Channel).where(Channel.name == world))
        good = session.scalar(select(Artifact).where(Artifact.name == "aiohttp"))
        index = session.scalar(select(SubdirIndex).where(SubdirIndex.subdir == "noarch"))
        assert channel is not None and good is not None and index is not None
        session.add(
            RepodataPatch(
                channel_id=channel.id, subdir="noarch", filename=good.filename, changes=changes
            )
        )
        index.requested_rev += 1
    settle(container)
    with container.factory() as session:
        index = session.scalar(select(SubdirIndex).where(SubdirIndex.subdir == "noarch"))
        assert index is not None and index.published_rev == index.requested_rev
        repodata = orjson.loads(container.blobs.read_bytes(index.repodata_sha256 or ""))
        warnings = list(index.warnings or [])
        tree = package_tree(session, admin, world, "app", "1.0", "0", "noarch")
    published = repodata["packages.conda"]["aiohttp-3.7.3-0.conda"]
    assert published["version"] == "3.7.3" and "foo >=>1" not in published.get("depends", [])
    assert any(said_patch(w) for w in warnings), warnings
    assert tree.solve_error is None and {p.name for p in tree.report.packages} >= {"aiohttp"}
    assert any(said_patch(n) for n in tree.report.notes), tree.report.notes


def said_patch(text: str) -> bool:
    """Publication and trees say the patch was left out ("skipped" when the patch itself no
    longer validates, "not applied" when it would make the record invalid)."""
    return "patch of" in text and "aiohttp-3.7.3-0.conda" in text
