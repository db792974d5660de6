"""Vulnerabilities over HTTP and the CLI: feeds, sync as a job, matches, curation, visibility.

A ``file://`` folder of real OSV PyPI advisories (``aiohttp`` and ``bleach`` of
``tests/data/vulns/osv-pypi``) is a feed; packages named and versioned as the advisories
say are built with the package factory and uploaded to a public and a private channel. The
expected matches are read from the advisories' own explicit ``versions`` lists here (the matcher
is never asked): a version listed is matched, the version an advisory names as ``fixed`` is not.
A private channel's artifacts never show to a caller who cannot read the channel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import PG_URL, backends
from tests.functional.test_identity_api import is_problem, make_user, token_for
from tests.support.cves import (
    OSV_PYPI,
    cli_for,
    grant_cves,
    osv_folder,
    sync_osv_folder,
    unique,
    upload,
    wait_sync,
)
from tests.support.cves import run_cli as run
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("cves-api")]

PACKAGES = ("aiohttp", "bleach")
ADVISORY = "PYSEC-2021-76"  # aiohttp: introduced 0, fixed 3.7.4


def advisories() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for package in PACKAGES:
        for path in sorted((OSV_PYPI / package).glob("*.yaml")):
            doc = yaml.safe_load(path.read_text())
            found[doc["id"]] = doc
    return found


def listed(name: str, version: str) -> set[str]:
    """Advisories whose explicit ``versions`` name ``version`` of PyPI ``name``."""
    return {
        vid
        for vid, doc in advisories().items()
        if not doc.get("withdrawn")
        and any(
            a["package"]["name"].lower() == name and version in (a.get("versions") or [])
            for a in doc.get("affected", [])
        )
    }


@dataclass
class World:
    live: LiveServer
    open: str
    secret: str
    feed: str
    folder: Path
    analyst: str  # cve:read, no grant on the private channel
    curator: str  # cve:write
    nobody: str  # signed in, no cve permission
    tmp: Path

    def client(self, token: str | None) -> httpx.Client:
        return self.live.client(token)


def role_user(live: LiveServer, level: str | None) -> str:
    user = make_user(live)
    if level is not None:
        grant_cves(live, user, level)
    return token_for(live, user)


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp(f"cves-{request.param}")
    tmp = tmp_path_factory.mktemp("cves-work")
    folder = osv_folder(tmp, *PACKAGES)
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url) as live,
    ):
        open_, secret = live.new_channel("public", "cve-open"), live.new_channel("private", "cve-x")
        upload(live, open_, tmp, "aiohttp", "3.7.3", "0")
        upload(live, open_, tmp, "aiohttp", "3.7.4", "0")
        upload(live, secret, tmp, "aiohttp", "3.7.3", "1")
        feed = sync_osv_folder(live, folder)["name"]
        yield World(
            live,
            open_,
            secret,
            feed,
            folder,
            analyst=role_user(live, "read"),
            curator=role_user(live, "write"),
            nobody=role_user(live, None),
            tmp=tmp,
        )


def rows(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/cves", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


def matched_ids(found: list[dict[str, Any]], version: str) -> set[str]:
    return {r["id"] for r in found if any(p["version"] == version for p in r["packages"])}


# ------------------------------------------------------------------------------------- feeds


def test_the_feed_stored_every_advisory(world: World) -> None:
    feed = world.live.admin.get(f"/api/v1/cve/feeds/{world.feed}").json()
    assert feed["advisories"] == len(advisories())
    assert feed["format"] == "osv" and feed["last_error"] is None
    names = [f["name"] for f in world.live.admin.get("/api/v1/cve/feeds").json()]
    assert world.feed in names
    # a sync of the same content again is "unchanged"
    r = world.live.admin.post(f"/api/v1/cve/feeds/{world.feed}/sync")
    assert r.status_code == 202
    assert wait_sync(world.live.admin, r.headers["location"])["last_status"] == "unchanged"


def test_feed_update_and_delete(world: World) -> None:
    name = unique("spare")
    body = {"name": name, "url": world.folder.as_uri(), "format": "osv", "enabled": False}
    assert world.live.admin.post("/api/v1/cve/feeds", json=body).status_code == 201
    r = world.live.admin.patch(f"/api/v1/cve/feeds/{name}", json={"schedule": "*/5 * * * *"})
    assert r.status_code == 200, r.text
    assert r.json()["schedule"] == "*/5 * * * *" and r.json()["next_run_at"] is None
    r = world.live.admin.patch(f"/api/v1/cve/feeds/{name}", json={"enabled": True})
    assert r.json()["next_run_at"] is not None
    assert world.live.admin.delete(f"/api/v1/cve/feeds/{name}").status_code == 204
    is_problem(world.live.admin.get(f"/api/v1/cve/feeds/{name}"), 404, "vulns:feed-not-found")


# ----------------------------------------------------------------------------------- matches


def test_listed_versions_match_and_fixed_ones_do_not(world: World) -> None:
    expected = listed("aiohttp", "3.7.3")
    assert ADVISORY in expected
    found = rows(world.live.admin, channel=world.open, package="aiohttp")
    assert expected <= matched_ids(found, "3.7.3")
    assert ADVISORY not in matched_ids(found, "3.7.4")
    assert listed("aiohttp", "3.7.4") <= matched_ids(found, "3.7.4")
    row = next(r for r in found if r["id"] == ADVISORY)
    assert row["packages"] == [{"name": "aiohttp", "version": "3.7.3", "status": "reported"}]
    # without a match filter, every advisory, no package column
    everything = rows(world.live.admin)
    assert {r["id"] for r in everything} == set(advisories())
    assert all(r["packages"] is None for r in everything)


def test_pages_follow_the_cursor(world: World) -> None:
    seen: list[str] = []
    after = "0"
    while True:
        r = world.live.admin.get("/api/v1/cves", params={"after": after, "limit": 7})
        assert r.status_code == 200
        seen += [row["id"] for row in r.json()]
        if "x-next-cursor" not in r.headers:
            break
        after = r.headers["x-next-cursor"]
    assert seen == [row["id"] for row in rows(world.live.admin)]


def test_filters(world: World) -> None:
    admin = world.live.admin
    high = rows(admin, severity=["high", "critical"])
    assert high and all(r["severity"] in ("high", "critical") for r in high)
    assert {r["id"] for r in rows(admin, q=ADVISORY.lower())} == {ADVISORY}
    assert rows(admin, kev=True) == []
    reported = rows(admin, status="reported", package="aiohttp")
    assert ADVISORY in {r["id"] for r in reported}


def test_a_private_channel_never_shows_to_non_readers(world: World) -> None:
    admin = world.live.admin.get(f"/api/v1/cves/{ADVISORY}").json()
    assert {(a["channel"], a["version"], a["build"]) for a in admin["artifacts"]} == {
        (world.open, "3.7.3", "0"),
        (world.secret, "3.7.3", "1"),
    }
    assert admin["scores"] is not None and admin["affected"]
    analyst = world.client(world.analyst)
    seen = analyst.get(f"/api/v1/cves/{ADVISORY}").json()
    assert {a["channel"] for a in seen["artifacts"]} == {world.open}
    assert world.secret not in analyst.get("/api/v1/cves", params={"package": "aiohttp"}).text
    is_problem(analyst.get("/api/v1/cves", params={"channel": world.secret}), 404)
    is_problem(world.client(None).get("/api/v1/cves"), 401)
    is_problem(world.client(world.nobody).get("/api/v1/cves"), 403)
    is_problem(world.client(world.nobody).get(f"/api/v1/cves/{ADVISORY}"), 403)


def test_a_cve_id_finds_the_advisory_aliasing_it(world: World) -> None:
    """Users speak CVE ids; the OSV PyPI record is ``PYSEC-2021-76`` with that CVE as an alias."""
    by_alias = world.live.admin.get("/api/v1/cves/cve-2021-21330")
    assert by_alias.status_code == 200, by_alias.text
    assert by_alias.json()["id"] == ADVISORY
    history = world.live.admin.get("/api/v1/cves/CVE-2021-21330/curations")
    assert history.status_code == 200, history.text
    is_problem(world.live.admin.get("/api/v1/cves/CVE-1999-0000"), 404)


def test_a_new_upload_and_a_copy_are_matched(world: World) -> None:
    expected = listed("aiohttp", "3.7.2")
    assert ADVISORY in expected
    upload(world.live, world.open, world.tmp, "aiohttp", "3.7.2", "0")
    target = world.live.new_channel("public", "cve-copy")
    r = world.live.admin.post(
        "/api/v1/copy",
        json={"source": world.open, "target": target, "name": "aiohttp", "version": "3.7.2"},
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while True:
        here = matched_ids(rows(world.live.admin, channel=world.open, package="aiohttp"), "3.7.2")
        there = matched_ids(rows(world.live.admin, channel=target, package="aiohttp"), "3.7.2")
        if expected <= here and expected <= there:
            break
        assert time.monotonic() < deadline, (expected - here, expected - there)
        time.sleep(0.1)


# ---------------------------------------------------------------------------------- curation


def test_curation_for_a_version_and_for_chosen_builds(world: World) -> None:
    curator = world.client(world.curator)
    body = {"package": "aiohttp", "version": "3.7.3", "status": "cleared", "note": "not used"}
    r = curator.post(f"/api/v1/cves/{ADVISORY}/curations", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "cleared" and r.json()["created_by"]
    narrowed = {**body, "builds": "1", "status": "active", "note": "the private build is"}
    assert curator.post(f"/api/v1/cves/{ADVISORY}/curations", json=narrowed).status_code == 201
    shown = world.live.admin.get(f"/api/v1/cves/{ADVISORY}").json()["artifacts"]
    by_build = {(a["version"], a["build"]): (a["status"], a["status_origin"]) for a in shown}
    assert by_build[("3.7.3", "0")] == ("cleared", "curation")
    assert by_build[("3.7.3", "1")] == ("active", "curation")
    history = world.client(world.analyst).get(f"/api/v1/cves/{ADVISORY}/curations").json()
    assert [(h["status"], h["builds"]) for h in history][-2:] == [
        ("cleared", None),
        ("active", "1"),
    ]
    is_problem(
        world.client(world.analyst).post(f"/api/v1/cves/{ADVISORY}/curations", json=body), 403
    )


# --------------------------------------------------------------------------------- bad input


def test_bad_input_is_a_problem(world: World) -> None:
    admin = world.live.admin
    url = world.folder.as_uri()
    is_problem(
        admin.post("/api/v1/cve/feeds", json={"name": "x", "url": url, "format": "rss"}), 422
    )
    is_problem(
        admin.post("/api/v1/cve/feeds", json={"name": "x", "url": "ftp://a/b", "format": "osv"}),
        422,
    )
    bad_cron = {"name": "x", "url": url, "format": "osv", "schedule": "every day"}
    is_problem(admin.post("/api/v1/cve/feeds", json=bad_cron), 422)
    dup = {"name": world.feed, "url": url, "format": "osv"}
    is_problem(admin.post("/api/v1/cve/feeds", json=dup), 409, "vulns:feed-exists")
    is_problem(admin.post("/api/v1/cve/feeds/nope/sync"), 404, "vulns:feed-not-found")
    is_problem(admin.get("/api/v1/cves/CVE-0000-0000"), 404, "vulns:not-found")
    body = {"package": "aiohttp", "version": "3.7.3", "status": "fixed", "note": "n"}
    is_problem(admin.post(f"/api/v1/cves/{ADVISORY}/curations", json=body), 422)
    body = {"package": "aiohttp", "version": "3.7.3", "status": "cleared", "note": "   "}
    is_problem(admin.post(f"/api/v1/cves/{ADVISORY}/curations", json=body), 422)
    is_problem(admin.get("/api/v1/cves", params={"severity": "huge"}), 422)
    is_problem(admin.get("/api/v1/cves", params={"channel": "no-such-channel"}), 404)


# ------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return cli_for(monkeypatch, tmp_path, world.live)


def test_the_cli(world: World, cli: CliRunner) -> None:
    import json

    name = unique("cli-feed")
    out = run(cli, "cve", "feed", "add", name, "--url", world.folder.as_uri(), "--format", "osv")
    assert name in out
    assert name in {f["name"] for f in json.loads(run(cli, "cve", "feed", "list", "--json"))}
    assert "format" in run(cli, "cve", "feed", "list")
    out = run(cli, "cve", "sync", name, "--follow")
    assert "ok" in out or "unchanged" in out
    listing = json.loads(
        run(cli, "cve", "list", "--channel", world.open, "--package", "aiohttp", "--json")
    )
    assert listed("aiohttp", "3.7.3") <= matched_ids(listing, "3.7.3")
    assert all({"id", "aliases", "packages"} <= set(r) for r in listing)
    with_status = run(
        cli, "cve", "list", "--package", "aiohttp", "--status", "reported,active,cleared", "--json"
    )
    assert ADVISORY in {r["id"] for r in json.loads(with_status)}
    assert ADVISORY in run(cli, "cve", "show", ADVISORY)
    shown = json.loads(run(cli, "cve", "show", ADVISORY, "--json"))
    assert world.open in {a["channel"] for a in shown["artifacts"]}
    out = run(
        cli,
        "cve",
        "curate",
        ADVISORY,
        "--package",
        "aiohttp",
        "--version",
        "3.7.4",
        "--status",
        "disputed",
        "--note",
        "not our reading",
    )
    assert "disputed" in out
    assert "disputed" in run(cli, "cve", "history", ADVISORY)
    decisions = json.loads(run(cli, "cve", "history", ADVISORY, "--json"))
    assert decisions[-1]["note"] == "not our reading"
    out = " ".join(
        run(
            cli,
            "cve",
            "curate",
            ADVISORY,
            "--package",
            "aiohttp",
            "--version",
            "1",
            "--status",
            "nope",
            "--note",
            "x",
            code=1,
        ).split()
    )
    assert out.startswith("error:") and "HTTP 422" in out
    run(cli, "cve", "feed", "delete", name)
