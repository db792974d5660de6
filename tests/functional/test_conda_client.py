"""A real conda client (py-rattler) solves and installs from a live Stockade over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.conda_client import install_records, solve_specs
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def recipes_channel(live_server: LiveServer, testdata: Path) -> str:
    name = live_server.new_channel(prefix="recipes")
    files = sorted((testdata / "channels" / "test-recipes").glob("*/*.conda"))
    response = live_server.upload(name, *files)
    assert response.status_code == 201, response.text
    live_server.wait_published(name)
    return name


@pytest.mark.parametrize("sharded", [True, False], ids=["shards", "repodata-json"])
def test_solve_and_install(
    live_server: LiveServer, recipes_channel: str, tmp_path: Path, sharded: bool
) -> None:
    url = f"{live_server.url}/conda/{recipes_channel}"
    specs = ["another_dependent", "dependent 1.*", "small-executable"]
    records = solve_specs(url, specs, tmp_path / "cache", sharded=sharded)
    names = {r.name.normalized: str(r.version) for r in records}
    assert set(names) == {"another_dependent", "dependent", "dependency", "small-executable"}
    assert names["dependent"] == "1.0"
    assert all(r.url.startswith(url + "/noarch/") for r in records)
    prefix = tmp_path / "env"
    install_records(records, prefix, tmp_path / "pkgs")
    installed = sorted(p.name for p in (prefix / "conda-meta").glob("*.json"))
    assert installed == sorted(f"{r.name.normalized}-{r.version}-{r.build}.json" for r in records)
    linked = [
        path
        for meta in (prefix / "conda-meta").glob("*.json")
        for path in json.loads(meta.read_text())["files"]
    ]
    assert "bin/small" in linked, "the packages' files were linked into the prefix"
    for path in linked:
        assert (prefix / path).exists(), path


def test_private_channel_with_token_in_url(
    live_server: LiveServer, testdata: Path, tmp_path: Path
) -> None:
    name = live_server.new_channel(privacy="private", prefix="private")
    files = sorted((testdata / "channels" / "test-recipes" / "noarch").glob("depend*.conda"))
    assert live_server.upload(name, *files).status_code == 201
    live_server.wait_published(name)
    token = live_server.admin_token
    for form in (
        f"{live_server.url}/t/{token}/conda/{name}",
        f"{live_server.url}/conda/t/{token}/{name}",
    ):
        records = solve_specs(form, ["dependent 2.*"], tmp_path / "c1")
        assert {r.name.normalized for r in records} == {"dependent", "dependency"}
        install_records(records, tmp_path / f"env-{len(form)}", tmp_path / "pkgs")
    anonymous = live_server.client().get(f"/conda/{name}/noarch/repodata.json")
    assert anonymous.status_code == 401
    assert "www-authenticate" in anonymous.headers
    with pytest.raises(Exception, match=r"401|Unauthorized|unauthorized"):
        solve_specs(
            f"{live_server.url}/conda/{name}", ["dependent"], tmp_path / "c2", sharded=False
        )


def test_tar_bz2_packages(live_server: LiveServer, testdata: Path, tmp_path: Path) -> None:
    name = live_server.new_channel(prefix="bz2")
    files = sorted((testdata / "packages").glob("clobber-nested-*.tar.bz2"))
    assert live_server.upload(name, *files).status_code == 201
    live_server.wait_published(name)
    url = f"{live_server.url}/conda/{name}"
    for sharded in (True, False):
        records = solve_specs(
            url, ["clobber-nested-2"], tmp_path / f"cache-{sharded}", sharded=sharded
        )
        assert {r.name.normalized for r in records} == {f"clobber-nested-{i}" for i in (1, 2, 3)}
        assert all(r.url.endswith(".tar.bz2") for r in records)
    install_records(records, tmp_path / "env", tmp_path / "pkgs")
    assert len(list((tmp_path / "env" / "conda-meta").glob("clobber-nested-*.json"))) == 3
