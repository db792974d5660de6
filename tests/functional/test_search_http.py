"""Search over HTTP, the page and the CLI, on a live server with real packages (flask, quetz's
``test-package`` / ``other-package``, conda-forge's ``xtensor-io``) and ``aiohttp`` 3.7.3 matched
by the real OSV advisory PYSEC-2021-76 (tests/data/PROVENANCE.md). One server per backend."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import PG_URL, TESTDATA, backends
from tests.functional.test_ui import assert_html
from tests.support.cves import osv_folder, run_cli, sync_osv_folder, upload
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("search")]
API = "/api/v1"
REAL = (
    "flask-0.11.1-py_0.tar.bz2",
    "test-package-0.2-0.tar.bz2",
    "other-package-0.2-0.conda",
    "xtensor-io-0.10.3-hb585cf6_0.tar.bz2",
)


@dataclass(frozen=True)
class World:
    live: LiveServer
    open: str
    secret: str


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp(f"search-{request.param}")
    tmp = tmp_path_factory.mktemp("search-work")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url) as live,
    ):
        open_, secret = live.new_channel("public", "find"), live.new_channel("private", "hide")
        response = live.upload(open_, *(TESTDATA / "packages" / name for name in REAL))
        assert response.status_code == 201, response.text
        upload(live, open_, tmp, "aiohttp", "3.7.3", "0")
        upload(live, secret, tmp, "hiddenpkg", "1.0", "0")
        sync_osv_folder(live, osv_folder(tmp, "aiohttp"))
        live.wait_published(open_)
        live.wait_published(secret)
        yield World(live, open_, secret)


def found(world: World, token: str | None = None, **params: str | int) -> list[dict[str, object]]:
    response = world.live.client(token).get(f"{API}/search", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_api_ranks_real_names_typos_and_words(world: World) -> None:
    assert [h["name"] for h in found(world, q="flask")][:1] == ["flask"]
    assert found(world, q="flask")[0]["match"] == "exact"
    assert [h["name"] for h in found(world, q="aiohtp")] == ["aiohttp"]
    assert found(world, q="aiohtp")[0]["match"] == "fuzzy"
    assert {h["name"] for h in found(world, q="toolkit")} == {"test-package", "other-package"}
    assert [h["name"] for h in found(world, q="xtens")] == ["xtensor-io"]
    hit = found(world, q="microframework")[0]
    assert (hit["name"], hit["channel"], hit["latest_version"]) == ("flask", world.open, "0.11.1")


def test_filters_and_pages(world: World) -> None:
    assert [h["name"] for h in found(world, q="aiohttp", severity="high")] == ["aiohttp"]
    assert found(world, q="aiohttp", severity="critical") == []
    assert [h["name"] for h in found(world, q="flask", license="bsd")] == ["flask"]
    assert found(world, q="flask", subdir="linux-64") == []
    first = world.live.client().get(f"{API}/search", params={"q": "package", "limit": 1})
    assert first.status_code == 200 and len(first.json()) == 1
    cursor = first.headers["X-Next-Cursor"]
    second = world.live.client().get(
        f"{API}/search", params={"q": "package", "limit": 1, "cursor": cursor}
    )
    assert second.json() and second.json()[0]["name"] != first.json()[0]["name"]
    bad = world.live.client().get(f"{API}/search", params={"q": "x", "severity": "catastrophic"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert bad.json()["code"] == "search:bad-filter" and bad.json()["field"] == "severity"
    assert world.live.client().get(f"{API}/search", params={"q": "x" * 300}).status_code == 422


def test_where_is_every_build_with_its_state(world: World) -> None:
    response = world.live.client().get(f"{API}/search/where/aiohttp")
    assert response.status_code == 200, response.text
    [held] = response.json()
    assert (held["channel"], held["version"], held["scan_status"]) == (world.open, "3.7.3", "clean")
    assert held["cve_severity"] == "high" and held["open_vulnerabilities"] >= 1
    assert held["signature"] == "unsigned"


def test_private_package_only_for_readers(world: World) -> None:
    for q in ("hiddenpkg", "hiddenpk", "hidenpkg"):
        assert found(world, q=q) == [], q
        assert [h["channel"] for h in found(world, world.live.admin_token, q=q)] == [world.secret]
    assert world.live.client().get(f"{API}/search/where/hiddenpkg").json() == []
    assert world.live.admin.get(f"{API}/search/where/hiddenpkg").json()


def test_page_filters_work_without_javascript(world: World) -> None:
    web = world.live.client()
    page = web.get("/search", params={"q": "aiohtp", "severity": "high", "channel": world.open})
    assert_html(page, 200)
    assert re.findall(r'/packages/([\w.-]+)">', page.text) == ["aiohttp"]
    assert '<option value="high" selected>' in page.text
    bad = web.get("/search", params={"q": "flask", "scan": "bogus"})
    assert bad.status_code == 422 and "unknown scan" in bad.text
    where = web.get("/search/where/aiohttp")
    assert_html(where, 200)
    assert 'data-scan="clean"' in where.text and "high (" in where.text
    assert world.secret not in web.get("/search", params={"q": "hiddenpkg"}).text


def test_cli_search_and_where(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("STOCKADE_URL", world.live.url)
    monkeypatch.setenv("STOCKADE_TOKEN", world.live.admin_token)
    cli = CliRunner()
    assert "toolkit" in run_cli(cli, "search", "toolkit")  # a table (folded to the terminal)
    listed = json.loads(run_cli(cli, "search", "toolkit", "--json"))
    assert {h["name"] for h in listed} == {"test-package", "other-package"}
    typo = json.loads(run_cli(cli, "search", "hidenpkg", "--channel", world.secret, "--json"))
    assert [h["name"] for h in typo] == ["hiddenpkg"]
    held = json.loads(run_cli(cli, "search", "--where", "aiohttp", "--json"))
    assert [h["channel"] for h in held] == [world.open]
    assert "3.7.3" in run_cli(cli, "search", "--where", "aiohttp")
    bad = run_cli(cli, "search", "x", "--severity", "catastrophic", code=1)
    assert "severity" in bad
    run_cli(cli, "search", code=2)
