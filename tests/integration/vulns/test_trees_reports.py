"""Trees and reports on SQLite and PostgreSQL: solve against the database, pin lock files, paths,
reachable scores, curation statuses that do not count, repodata patches, per-channel rows.

Packages are built with the factory (``app -> mid -> aiohttp 3.7.3``) and uploaded through the
upload service; the real OSV advisories of ``aiohttp`` are synced as a feed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel, RepodataPatch
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.vulns.envfiles import LockedPackage, parse_environment_file
from stockade.vulns.models import VulnMatch
from stockade.vulns.reports import (
    channel_report,
    package_tree,
    render_csv,
    report_environment,
)
from stockade.vulns.trees import TreeBuilder, UnsatisfiableError
from tests.factories.packages import PackageSpec
from tests.integration.vulns.support import channel_with_advisories

ADVISORY = "PYSEC-2021-76"
PATH = ["app", "mid", "aiohttp"]


@pytest.fixture
def world(container: Container, admin: Principal, tmp_path: Path) -> str:
    specs = (
        PackageSpec(name="app", version="1.0", build="0", depends=("mid", "tool")),
        PackageSpec(name="mid", version="1.0", build="0", depends=("aiohttp 3.7.3",)),
        PackageSpec(name="tool", version="1.0", build="0", depends=("mid",)),
        PackageSpec(name="aiohttp", version="3.7.3", build="0"),
    )
    return channel_with_advisories(container, admin, tmp_path, "internal", specs, "aiohttp")


def test_solved_tree_paths_and_reachable_scores(
    container: Container, admin: Principal, world: str
) -> None:
    env = parse_environment_file(b"channels: [internal]\ndependencies: [app]\n", "environment.yml")
    with container.factory() as session:
        report = report_environment(session, admin, env)
    assert report.channels == [world] and report.roots == ["app"]
    hits = [f for f in report.findings if f.vuln_id == ADVISORY]
    assert len(hits) == 1 and hits[0].path == PATH  # shortest, not app -> tool -> mid -> …
    by_name = {p.name: p for p in report.packages}
    assert by_name["tool"].path == ["app", "tool"]
    assert by_name["tool"].reachable is not None
    assert by_name["tool"].reachable.path == ["tool", "mid", "aiohttp"]
    assert by_name["app"].score is None and by_name["aiohttp"].score is not None
    assert report.summary.highest is not None and report.summary.highest.path == PATH
    assert sum(report.summary.by_severity.values()) == sum(
        1 for f in report.findings if f.counts and f.score is not None
    ) + report.summary.by_severity.get("unscored", 0)


def test_cleared_and_mitigated_are_listed_but_do_not_count(
    container: Container, admin: Principal, world: str
) -> None:
    with transaction(container.factory) as session:
        aiohttp = session.scalar(select(Artifact.id).where(Artifact.name == "aiohttp"))
        session.execute(
            update(VulnMatch).where(VulnMatch.artifact_id == aiohttp).values(status="mitigated")
        )
    with container.factory() as session:
        tree = package_tree(session, admin, world, "app", "1.0", "0", "noarch")
    assert tree.report.findings and all(not f.counts for f in tree.report.findings)
    assert tree.reachable is None and tree.report.summary.highest is None
    assert tree.report.summary.by_status == {"mitigated": len(tree.report.findings)}


def test_a_repodata_patch_changes_the_tree(
    container: Container, admin: Principal, world: str
) -> None:
    with transaction(container.factory) as session:
        channel = session.scalar(select(Channel).where(Channel.name == world))
        assert channel is not None
        mid = session.scalar(select(Artifact).where(Artifact.name == "mid"))
        assert mid is not None
        session.add(
            RepodataPatch(
                channel_id=channel.id,
                subdir="noarch",
                filename=mid.filename,
                changes={"depends": []},
            )
        )
    with container.factory() as session:
        tree = package_tree(session, admin, world, "app", "1.0", "0", "noarch")
    assert "aiohttp" not in {p.name for p in tree.report.packages}
    assert tree.reachable is None


def test_unsatisfiable_and_pinned(container: Container, admin: Principal, world: str) -> None:
    with container.factory() as session:
        builder = TreeBuilder(session, admin)
        channels = [builder.readable(world)]
        with pytest.raises(UnsatisfiableError, match="app"):
            builder.solve(["app >=2"], channels, "linux-64")
        locked = [
            LockedPackage(name="app", version="1.0", build="0", subdir="noarch"),
            LockedPackage(name="mid", version="1.0", build="0", subdir="noarch", sha256="0" * 64),
            LockedPackage(name="aiohttp", version="3.7.3", build="0", subdir="noarch"),
            LockedPackage(name="ghost", version="1", build="0", depends=("aiohttp",)),
        ]
        tree = builder.pin(locked, channels, "linux-64")
    assert not tree.nodes["mid"].known and "sha256" in (tree.nodes["mid"].note or "")
    assert tree.nodes["app"].known and not tree.nodes["ghost"].known
    assert tree.edges["ghost"] == ["aiohttp"] and set(tree.roots) == {"app", "ghost"}


def test_channel_report_rows(container: Container, admin: Principal, world: str) -> None:
    with container.factory() as session:
        channel = TreeBuilder(session, admin).readable(world)
        report = channel_report(session, channel)
    assert ADVISORY in {r["vuln_id"] for r in report.rows}
    assert {r["package"] for r in report.rows} == {"aiohttp"} and report.artifacts == 1
    text = render_csv(report).decode()
    assert text.splitlines()[0].startswith("channel,subdir,filename")


def test_unscored_advisories_are_still_reachable(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """PyPI's own advisories carry no CVSS vector: a dependency on flask 0.12.2 (three such
    advisories of ``osv-pypi/flask``) still shows, unscored, with its path."""
    specs = (
        PackageSpec(name="site", version="1.0", build="0", depends=("flask 0.12.2",)),
        PackageSpec(name="flask", version="0.12.2", build="py_0"),
    )
    channel_with_advisories(container, admin, tmp_path, "web", specs, "flask")
    with container.factory() as session:
        tree = package_tree(session, admin, "web", "site", "1.0", "0", "noarch")
    assert tree.score is None
    assert tree.reachable is not None
    assert tree.reachable.score is None
    assert tree.reachable.path == ["site", "flask"]
    assert tree.reachable.vuln_id.startswith("PYSEC-")
    assert tree.report.summary.highest is not None
    assert tree.report.summary.highest.path == ["site", "flask"]
