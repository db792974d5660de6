"""Reports and advisories in the CLI: a Rich summary for people by default, ``--json`` for scripts
(issue 12, items 9 and 10), against a live server with real OSV PyPI advisories.

``PYSEC-2021-76`` (aiohttp) has ``details`` and no ``summary``, as most OSV PyPI records: lists and
reports show the start of its details, as the UI does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockade.vulns.display import display_summary
from tests.conftest import own_server
from tests.factories.packages import PackageSpec
from tests.support.cli import admin_cli, run
from tests.support.cves import osv_folder, sync_osv_folder, upload_package
from tests.support.server import LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("cli-output-reports")]

ADVISORY = "PYSEC-2021-76"  # aiohttp: introduced 0, fixed 3.7.4; no summary in the record
DETAILS_START = "aiohttp is an asynchronous HTTP client/server framework"
PACKAGES = (
    PackageSpec(name="app", version="1.0", build="0", depends=("mid",)),
    PackageSpec(name="mid", version="1.0", build="0", depends=("aiohttp 3.7.3",)),
    PackageSpec(name="aiohttp", version="3.7.3", build="0"),
)
PACKAGE = ("report", "package", "CHANNEL", "app", "--version", "1.0", "--build", "0")


@dataclass
class World:
    live: LiveServer
    channel: str
    feed: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("cli-output")
    with own_server("sqlite", tmp_path_factory, "cli-output") as live:
        channel = live.new_channel("public", "out")
        for spec in PACKAGES:
            upload_package(live, channel, tmp, spec)
        feed = sync_osv_folder(live, osv_folder(tmp, "aiohttp"))
        yield World(live, channel, feed["name"])


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return admin_cli(world.live, monkeypatch, tmp_path, columns=80)


def package_args(world: World) -> list[str]:
    return [world.channel if a == "CHANNEL" else a for a in PACKAGE]


def fits(out: str, width: int = 80) -> None:
    """Every line fits the terminal, and no line is JSON."""
    assert all(len(line) <= width for line in out.splitlines()), out
    assert not out.lstrip().startswith(("{", "[")), out


# ----------------------------------------------------------------------------- item 9


def test_report_env_is_a_summary_with_a_findings_table(world: World, cli: CliRunner) -> None:
    out = run(cli, "report", "env", "--spec", "app", "-c", world.channel)
    fits(out)
    header = " ".join(out.split("\n\n")[0].split())
    assert "3 packages" in header and "findings" in header and "highest" in header, out
    flat = " ".join(out.split())
    for column in ("advisory", "score", "severity", "status", "package", "path"):
        assert column in flat
    assert ADVISORY in out and "aiohttp 3.7.3" in out
    assert "app → mid → aiohttp" in flat
    assert len(out.splitlines()) < 60  # the old default was 200 lines of JSON


def test_report_env_of_a_file_names_its_ignored_channels(
    world: World, cli: CliRunner, tmp_path: Path
) -> None:
    env = tmp_path / "environment.yml"
    channels = [f"{world.live.url}/conda/{world.channel}", "conda-forge", "[red]x[/red]"]
    env.write_text(json.dumps({"name": "demo", "channels": channels, "dependencies": ["app"]}))
    out = run(cli, "report", "env", str(env))
    flat = " ".join(out.split())
    assert flat.startswith("demo linux-64") and ADVISORY in flat
    assert "ignored channels: conda-forge, [red]x[/red]" in flat  # shown as text, not markup


def test_report_env_json_is_the_api_json_indented(world: World, cli: CliRunner) -> None:
    out = run(cli, "report", "env", "--spec", "app", "-c", world.channel, "--json")
    assert out.startswith("{\n  ")
    report = json.loads(out)
    assert (
        json.loads(run(cli, "report", "env", "--spec", "app", "-c", world.channel, "-f", "json"))[
            "findings"
        ]
        == report["findings"]
    )
    finding = next(f for f in report["findings"] if f["vuln_id"] == ADVISORY)
    assert finding["path"] == ["app", "mid", "aiohttp"]
    assert finding["summary"].startswith(DETAILS_START)  # item 10: the details' start
    run(cli, "report", "env", "--spec", "app", "--json", "-f", "csv", code=1)


def test_report_env_to_a_file_stays_json(world: World, cli: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    run(cli, "report", "env", "--spec", "app", "-c", world.channel, "-o", str(target))
    assert json.loads(target.read_text())["summary"]["packages"] == 3
    out = run(cli, "report", "env", "--spec", "app", "-o", str(target), "-f", "table", code=1)
    assert "--output" in out


def test_report_package_is_a_summary_not_minified_json(world: World, cli: CliRunner) -> None:
    out = run(cli, *package_args(world))
    fits(out)
    flat = " ".join(out.split())
    assert flat.startswith("app 1.0 0") and "highest reachable" in flat and ADVISORY in flat
    assert "app → mid → aiohttp" in flat
    shown = run(cli, *package_args(world), "--json")
    assert shown.startswith("{\n  ")
    assert json.loads(shown)["reachable"]["path"] == ["app", "mid", "aiohttp"]


def test_report_channel_is_a_table(world: World, cli: CliRunner) -> None:
    out = run(cli, "report", "channel", world.channel)
    fits(out)
    assert ADVISORY in out and "matched artifacts" in out
    rows = json.loads(run(cli, "report", "channel", world.channel, "--json"))["rows"]
    assert {r["vuln_id"] for r in rows} >= {ADVISORY}
    assert "vuln_id" in run(cli, "report", "channel", world.channel, "-f", "csv")


# ---------------------------------------------------------------------------- item 10


def test_cve_list_falls_back_to_the_details(world: World, cli: CliRunner) -> None:
    rows = json.loads(run(cli, "cve", "list", "--package", "aiohttp", "--json"))
    row = next(r for r in rows if r["id"] == ADVISORY)
    assert row["summary"].startswith(DETAILS_START)
    out = run(cli, "cve", "list", "--package", "aiohttp")
    assert "aiohttp is an" in " ".join(out.split())
    fits(out)


def test_cve_show_prints_details_references_dates_ranges(world: World, cli: CliRunner) -> None:
    data = json.loads(run(cli, "cve", "show", ADVISORY, "--json"))
    out = run(cli, "cve", "show", ADVISORY)
    flat = " ".join(out.split())
    assert "normalize_path_middleware" in flat  # from the details, beyond the first sentence
    assert "published" in flat and data["published"][:10] in flat
    assert "modified" in flat
    for ref in data["references"][:3]:
        assert ref["url"].split("//")[1][:30] in out.replace("\n", ""), ref
    assert "PyPI aiohttp: <3.7.4" in flat  # the ECOSYSTEM range, spelled as on the UI page
    assert world.channel in out  # the matched artifacts still follow
    assert display_summary(data["summary"], data["details"]).startswith(DETAILS_START)


def test_cve_feed_show_is_a_panel(world: World, cli: CliRunner) -> None:
    out = run(cli, "cve", "feed", "show", world.feed)
    assert "format" in out and "osv" in out and not out.lstrip().startswith("{")
    assert json.loads(run(cli, "cve", "feed", "show", world.feed, "--json"))["name"] == world.feed
