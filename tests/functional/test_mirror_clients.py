"""Mirrors seen by conda clients: active and passive mirrors over HTTP, corrupt upstream files,
upstream changes between runs, the dependency-confusion guard, another Stockade as upstream.

Upstreams are HTTP servers (``tests/support/upstream.py``) over folders holding the real
``test-recipes`` channel (real files) and generated files for a subset of the real ``r`` repodata
(``tests/support/mirror_data.py``); py-rattler is the client.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from rattler import Version

from tests.conftest import PG_URL, backends
from tests.factories.packages import PackageSpec, build_conda
from tests.support.conda_client import install_records, solve_specs
from tests.support.mirror_api import (
    admin,
    assign,
    make_mirror,
    make_policy,
    published,
    run_logs,
    run_mirror,
    settled,
)
from tests.support.mirror_data import (
    R_LINUX_64,
    build_channel,
    copy_test_recipes,
    write_repodata,
)
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server
from tests.support.upstream import Upstream

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [
    pytest.mark.functional,
    pytest.mark.xdist_group("mirror-clients"),
    pytest.mark.one_config,
]

R_NAMES = {"r-ggplot2", "r-plyr", "r-reshape2"}


@pytest.fixture(scope="module", params=backends())
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp(f"mirror-clients-{request.param}")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, mirror={"heartbeat_s": 0.2}) as server,
    ):
        yield server


@pytest.fixture(scope="module", params=backends())
def blank(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server of its own for the tests that need files it has never stored: the blob store is
    content-addressed, so a file another test's mirror stored would be served without a fetch.
    The passive test (b) runs first; the corrupt file of (c) is never stored by anyone."""
    data_dir = tmp_path_factory.mktemp(f"mirror-clients-blank-{request.param}")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, mirror={"heartbeat_s": 0.2}) as server,
    ):
        yield server


def channel_folder(dest: Path) -> Path:
    """test-recipes (real files) plus ``linux-64`` built from r records of a few names."""
    copy_test_recipes(dest)
    build_channel(R_LINUX_64, dest, select=lambda _fn, rec: rec["name"] in R_NAMES, noarch=False)
    return dest


def repodata(root: Path, subdir: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((root / subdir / "repodata.json").read_bytes())
    return doc


def records(root: Path, subdir: str) -> dict[str, dict[str, Any]]:
    doc = repodata(root, subdir)
    return {**doc.get("packages", {}), **doc.get("packages.conda", {})}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def conda_url(live: LiveServer, channel: str) -> str:
    return f"{live.url}/conda/{channel}"


# --------------------------------------------------------------------------- (a) active mirror


def test_active_mirror_solve_and_install(live: LiveServer, tmp_path: Path) -> None:
    root = channel_folder(tmp_path / "up")
    with Upstream(root) as up:
        mirror = make_mirror(live, source=up.url, mode="active", subdirs=["linux-64", "noarch"])
        policy = make_policy(live, {"exclude_specs": ["dependent >=2", "r-ggplot2 <2.2"]})
        assign(live, policy, mirror=mirror["name"])
        run = run_mirror(live, mirror["name"], channel=mirror["channel"])
    channel = mirror["channel"]
    counts = run["counts"]
    up_noarch, up_linux = records(root, "noarch"), records(root, "linux-64")
    dropped_noarch = {"dependent-2.0-0.conda"}
    dropped_linux = {
        fn
        for fn, r in up_linux.items()
        if r["name"] == "r-ggplot2" and Version(r["version"]) < Version("2.2")
    }
    assert dropped_linux
    assert counts["excluded"] == len(dropped_noarch) + len(dropped_linux), counts
    assert counts["files_downloaded"] == counts["kept"] == counts["added"], counts
    assert counts.get("failed_files", 0) == 0
    assert set(published(live, channel, "noarch")) == set(up_noarch) - dropped_noarch
    assert set(published(live, channel, "linux-64")) == set(up_linux) - dropped_linux
    # Every kept file was downloaded (active): served without asking the upstream again.
    body = admin(live).get(f"/conda/{channel}/linux-64/{sorted(set(up_linux) - dropped_linux)[0]}")
    assert body.status_code == 200

    url = conda_url(live, channel)
    solved = solve_specs(url, ["another_dependent"], tmp_path / "cache", platforms=["noarch"])
    got = {r.name.normalized: str(r.version) for r in solved}
    assert got == {"another_dependent": "2.0", "dependent": "1.0", "dependency": "1.0"}
    with pytest.raises(Exception, match=r"(?i)dependent|unsolvable|cannot|nothing provides"):
        solve_specs(url, ["dependent >=2"], tmp_path / "cache2", platforms=["noarch"])
    prefix = tmp_path / "env"
    install_records(solved, prefix, tmp_path / "pkgs")
    installed = sorted(p.name for p in (prefix / "conda-meta").glob("*.json"))
    assert installed == sorted(f"{r.name.normalized}-{r.version}-{r.build}.json" for r in solved)


# -------------------------------------------------------------------------- (b) passive mirror


def test_passive_mirror_fetches_each_file_once(blank: LiveServer, tmp_path: Path) -> None:
    live = blank
    root = copy_test_recipes(tmp_path / "up")
    with Upstream(root) as up:
        mirror = make_mirror(live, source=up.url, mode="passive", subdirs=["noarch"])
        channel = mirror["channel"]
        run_mirror(live, mirror["name"], channel=channel)
        upstream = records(root, "noarch")
        assert set(published(live, channel, "noarch")) == set(upstream)
        assert not [p for p in up.downloaded_paths() if p.endswith(".conda")], (
            "a passive run publishes records without fetching their files"
        )

        url = conda_url(live, channel)
        solved = solve_specs(url, ["dependent 2.*"], tmp_path / "cache", platforms=["noarch"])
        install_records(solved, tmp_path / "env", tmp_path / "pkgs")
        fetched = [f"noarch/{r.file_name}" for r in solved]
        assert len(fetched) == 2
        for path in fetched:
            assert up.full_downloads(path) == 1, path

        # Eight clients at once ask for a file nobody fetched yet: one upstream download.
        target = "versioned-2.0-0.conda"
        assert up.full_downloads(f"noarch/{target}") == 0
        # One process (a cluster's first replica): the fetch is shared per process; between
        # processes a duplicate fetch is harmless (mirroring/passive.py).
        client = httpx.Client(base_url=live.process_url, timeout=60)

        def get(_: int) -> tuple[int, bytes]:
            response = client.get(f"/conda/{channel}/noarch/{target}")
            return response.status_code, response.content

        with client, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(get, range(8)))
        assert [status for status, _ in answers] == [200] * 8
        assert {sha256(body) for _, body in answers} == {upstream[target]["sha256"]}
        assert up.full_downloads(f"noarch/{target}") == 1


# ----------------------------------------------------------------------- (c) corrupt upstream


def test_corrupt_file_active(blank: LiveServer, tmp_path: Path) -> None:
    live = blank
    root = copy_test_recipes(tmp_path / "up")
    bad = "versioned-1.0-0.conda"
    expected_sha = records(root, "noarch")[bad]["sha256"]
    with Upstream(root, corrupt={f"noarch/{bad}"}) as up:
        mirror = make_mirror(live, source=up.url, mode="active", subdirs=["noarch"])
        run = run_mirror(live, mirror["name"], channel=mirror["channel"])
        assert up.full_downloads(f"noarch/{bad}") >= 1
    assert run["counts"]["failed_files"] == 1, run["counts"]
    errors = [ln["message"] for ln in run_logs(live, run["id"]) if ln["level"] == "error"]
    assert any(bad in msg and expected_sha in msg for msg in errors), errors
    channel = mirror["channel"]
    served = published(live, channel, "noarch")
    assert bad not in served
    assert "versioned-2.0-0.conda" in served
    assert admin(live).get(f"/conda/{channel}/noarch/{bad}").status_code == 404


def test_corrupt_file_passive(blank: LiveServer, tmp_path: Path) -> None:
    live = blank
    root = copy_test_recipes(tmp_path / "up")
    bad = "versioned-1.0-0.conda"
    expected_sha = records(root, "noarch")[bad]["sha256"]
    with Upstream(root, corrupt={f"noarch/{bad}"}) as up:
        mirror = make_mirror(live, source=up.url, mode="passive", subdirs=["noarch"])
        channel = mirror["channel"]
        run_mirror(live, mirror["name"], channel=channel)
        assert bad in published(live, channel, "noarch")
        for _ in range(2):
            response = admin(live).get(f"/conda/{channel}/noarch/{bad}")
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            problem = response.json()
            assert problem["status"] == 503
            assert bad in problem["detail"]
        assert up.full_downloads(f"noarch/{bad}") == 2, "nothing stored: asked again"
    assert not live.container.blobs.exists(expected_sha)


# ---------------------------------------------------------------------- (d) upstream changes


def test_upstream_changes_between_runs(live: LiveServer, tmp_path: Path) -> None:
    root = channel_folder(tmp_path / "up")
    doc = repodata(root, "linux-64")
    section = doc["packages"]
    names = sorted(section)
    removed, patched, added = names[0], names[1], names[2]
    held_back = section.pop(added)  # its file is there; the record comes with the next change
    write_repodata(root / "linux-64", doc)
    with Upstream(root) as up:
        mirror = make_mirror(live, source=up.url, mode="active", subdirs=["linux-64", "noarch"])
        channel = mirror["channel"]
        first = run_mirror(live, mirror["name"], channel=channel)
        assert first["counts"]["added"] == len(section) + len(records(root, "noarch"))
        assert set(published(live, channel, "linux-64")) == set(section)

        del section[removed]
        section[patched] = {**section[patched], "depends": [*section[patched]["depends"], "zlib"]}
        section[added] = held_back
        write_repodata(root / "linux-64", doc)
        second = run_mirror(live, mirror["name"], channel=channel)
        counts = second["counts"]
        assert (counts["added"], counts["removed"], counts["changed"]) == (1, 1, 1), counts
        assert settled(live, channel, ["linux-64"], {"linux-64": set(section)}) == {
            "linux-64": set(section)
        }
        now = published(live, channel, "linux-64")
        assert now[patched]["depends"] == section[patched]["depends"]
        assert up.full_downloads(f"linux-64/{patched}") == 1, "a hot-fix needs no new download"
        assert up.full_downloads(f"linux-64/{added}") == 1

        up.clear()
        third = run_mirror(live, mirror["name"], channel=channel)
        assert third["summary"] == "unchanged", third
        answered = {(r.path, r.status) for r in up.requests}
        assert ("linux-64/repodata.json.zst", 304) in answered, answered
        found = [r for r in up.requests if r.status != 404]  # noarch has no .zst: 404 first
        assert found and all(r.headers.get("if-none-match") for r in found), (
            "every repodata request that found a file was conditional"
        )
        assert {r.status for r in found} == {304}
        assert set(published(live, channel, "linux-64")) == set(section)


# -------------------------------------------------------------- (e) dependency-confusion guard


def local_package(tmp_path: Path, name: str, version: str = "9.9") -> Path:
    folder = tmp_path / f"local-{name}"
    folder.mkdir()
    return build_conda(folder, PackageSpec(name=name, version=version, build="0"))


def test_dependency_confusion_guard(live: LiveServer, tmp_path: Path) -> None:
    root = copy_test_recipes(tmp_path / "up")
    upstream = records(root, "noarch")
    with Upstream(root) as up:
        mirror = make_mirror(live, source=up.url, mode="passive", subdirs=["noarch"])
        name, channel = mirror["name"], mirror["channel"]
        response = live.upload(channel, local_package(tmp_path, "dependency"))
        assert response.status_code == 201, response.text
        run = run_mirror(live, name, channel=channel)
        guard = "guard: dependency_confusion"
        dependency = {fn for fn, r in upstream.items() if r["name"] == "dependency"}
        assert run["counts"]["excluded_by_reason"] == {guard: len(dependency)}, run["counts"]
        served = published(live, channel, "noarch")
        assert {fn for fn, r in served.items() if r["name"] == "dependency"} == {
            "dependency-9.9-0.conda"
        }
        exclusions = admin(live).get(f"/api/v1/mirrors/{name}/exclusions").json()
        assert {e["filename"] for e in exclusions} == dependency
        assert all(e["reasons"][0].startswith(guard) for e in exclusions)
        found = admin(live).get(
            "/api/v1/policies/explain",
            params={"channel": channel, "spec": "dependency 1.0", "subdir": "noarch"},
        )
        assert found.status_code == 200, found.text
        [entry] = found.json()
        assert entry["kept"] is False
        assert (entry["reasons"][0]["policy"], entry["reasons"][0]["criterion"]) == (
            "guard",
            "dependency_confusion",
        )

        # An admin allows the name: the upstream records are taken.
        patch = admin(live).patch(f"/api/v1/mirrors/{name}", json={"allowed_names": ["dependency"]})
        assert patch.status_code == 200, patch.text
        assert patch.json()["allowed_names"] == ["dependency"]
        run = run_mirror(live, name, channel=channel)
        assert run["counts"]["excluded"] == 0, run["counts"]
        assert dependency <= set(published(live, channel, "noarch"))

        # A companion channel's local packages are guarded too.
        companion = live.new_channel(prefix="companion")
        response = live.upload(companion, local_package(tmp_path, "versioned"))
        assert response.status_code == 201, response.text
        patch = admin(live).patch(f"/api/v1/mirrors/{name}", json={"companions": [companion]})
        assert patch.status_code == 200, patch.text
        run = run_mirror(live, name, channel=channel)
        versioned = {fn for fn, r in upstream.items() if r["name"] == "versioned"}
        assert run["counts"]["excluded_by_reason"] == {guard: len(versioned)}, run["counts"]
        served = published(live, channel, "noarch")
        assert not versioned & set(served)
        assert dependency <= set(served)


# ------------------------------------------------------------ (f) another Stockade as upstream


@pytest.fixture
def other_stockade(tmp_path: Path) -> Iterator[LiveServer]:
    data_dir = tmp_path / "other-stockade"
    data_dir.mkdir()
    with run_server(data_dir, f"sqlite:///{data_dir / 'stockade.db'}") as server:
        yield server


def test_another_stockade_as_upstream(
    live: LiveServer, other_stockade: LiveServer, testdata: Path
) -> None:
    other = other_stockade
    private = other.new_channel(privacy="private", prefix="private")
    files = sorted((testdata / "channels" / "test-recipes" / "noarch").glob("*.conda"))
    assert other.upload(private, *files).status_code == 201
    other.wait_published(private)
    basic = ("admin", ADMIN_PASSWORD)
    response = httpx.post(
        f"{other.url}/api/v1/tokens",
        json={
            "name": f"mirror-{uuid.uuid4().hex[:6]}",
            "expires_in_days": 7,
            "kind": "resource",
            "resources": {private: "read"},
        },
        auth=basic,
    )
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    source = f"{other.url}/conda/{private}"

    mirror = make_mirror(live, source=source, mode="active", subdirs=["noarch"], token=token)
    assert mirror["has_token"] is True
    run = run_mirror(live, mirror["name"], channel=mirror["channel"])
    assert run["counts"]["kept"] == len(files), run["counts"]
    assert set(published(live, mirror["channel"], "noarch")) == {f.name for f in files}

    # without the token the check at creation refuses it (401); created unchecked, its run fails
    anonymous = make_mirror(live, source=source, mode="active", subdirs=["noarch"], check=False)
    failed = run_mirror(live, anonymous["name"], expect="failed")
    message = (failed["summary"] or "") + " " + (failed["error"] or "")
    assert "401" in message or "unauthorized" in message.lower(), failed
    assert source.split("://", 1)[1] in message or "noarch" in message, failed

    client = admin(live)
    answers: list[str] = []
    for name in (mirror["name"], anonymous["name"]):
        answers.append(client.get(f"/api/v1/mirrors/{name}").text)
        runs = client.get(f"/api/v1/mirrors/{name}/runs")
        answers.append(runs.text)
        for entry in runs.json():
            answers.append(client.get(f"/api/v1/runs/{entry['id']}").text)
            answers.append(json.dumps(run_logs(live, entry["id"])))
    answers.append(client.get("/api/v1/mirrors").text)
    answers.append(client.get("/api/v1/audit", params={"limit": 200}).text)
    secret = token.split("_", 1)[-1]
    for text in answers:
        assert token not in text
        assert secret not in text
