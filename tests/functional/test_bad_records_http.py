"""Issue 11 item 8 over HTTP: hostile ``index.json`` uploads are 4xx problems naming the field, and
bad records already stored (inserted straight into the database, as older versions stored them)
break none of the surfaces that read records: package trees and SBOMs, environment reports in
every format (specs and an explicit lock file), the channel report, ``channeldata.json``, the
package page and the published ``repodata.json`` (which leaves them out and says so on the
subdir). Before the fix each of the trees, SBOMs and reports answered 500.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.db.engine import transaction
from tests.conftest import PG_URL, TESTDATA, backends
from tests.factories.packages import PackageSpec, build_conda
from tests.support.cves import unique, upload_package
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("bad-records-http")]

#: Stored rows that bypassed validation: (filename, version column, record bytes or a change).
BAD_ROWS: list[tuple[str, str, bytes]] = [
    ("aiohttp-1..2-bad.conda", "1..2", b'{"version": "1..2", "noarch": ["x"]}'),
    ("aiohttp-9.0-bad.conda", "9.0", b'{"license": {}, "depends": ["foo >=>1"]}'),
    ("aiohttp-9.1-bad.conda", "9.1", b"{not json"),
]
#: Uploads refused naming the field (values the old checks let through).
HOSTILE_UPLOADS: list[tuple[PackageSpec, str]] = [
    (PackageSpec(name="evil", version="1..2"), "version"),
    (PackageSpec(name="evil", index_extra={"noarch": ["x"]}), "noarch"),
    (PackageSpec(name="evil", index_extra={"license": {}}), "license"),
    (PackageSpec(name="evil", index_extra={"depends": ["foo >=>1"]}), "depends"),
    (PackageSpec(name="evil", index_extra={"build_number": 2**40}), "build_number"),
    (PackageSpec(name="evil", index_extra={"timestamp": 1e40}), "timestamp"),
]
TESTDATA_BAD = TESTDATA / "bad"


@dataclass
class World:
    live: LiveServer
    channel: str
    tmp: Path


def insert_bad_rows(live: LiveServer, channel: str) -> None:
    with transaction(live.container.factory) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == channel))
        good = session.scalar(
            select(Artifact).where(Artifact.channel_id == channel_id, Artifact.name == "aiohttp")
        )
        assert good is not None
        columns = [c.name for c in Artifact.__table__.columns if c.name != "id"]
        for filename, version, change in BAD_ROWS:
            try:
                record_json = orjson.dumps(orjson.loads(good.record_json) | orjson.loads(change))
            except orjson.JSONDecodeError:
                record_json = change
            values: dict[str, Any] = {c: getattr(good, c) for c in columns}
            values |= {"filename": filename, "version": version, "build": "bad"}
            values |= {"record_json": record_json, "sha256": unique("f").ljust(64, "f")[:64]}
            session.add(Artifact(**values))
        index = session.scalar(
            select(SubdirIndex).where(
                SubdirIndex.channel_id == channel_id, SubdirIndex.subdir == "noarch"
            )
        )
        assert index is not None
        index.requested_rev += 1
    live.container.notify_changes()


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp(f"bad-records-{request.param}")
    tmp = tmp_path_factory.mktemp("bad-records-work")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url) as live,
    ):
        channel = live.new_channel("public", "badrec")
        for spec in (
            PackageSpec(name="app", version="1.0", build="0", depends=("mid",)),
            PackageSpec(name="mid", version="1.0", build="0", depends=("aiohttp",)),
            PackageSpec(name="aiohttp", version="3.7.3", build="0"),
        ):
            upload_package(live, channel, tmp, spec)
        live.wait_published(channel)
        insert_bad_rows(live, channel)
        live.wait_published(channel)
        yield World(live, channel, tmp)


def not_a_server_error(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 500, response.text
    return response


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize(("spec", "field"), HOSTILE_UPLOADS)
def test_hostile_uploads_are_problems_naming_the_field(
    world: World, spec: PackageSpec, field: str
) -> None:
    folder = world.tmp / unique("evil")
    folder.mkdir()
    response = world.live.upload(world.channel, build_conda(folder, spec))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["field"] == field and body["code"].startswith("package:"), body
    listed = ok(world.live.client().get(f"/api/v1/channels/{world.channel}/files")).text
    assert "evil" not in listed


@pytest.mark.parametrize("path", sorted(TESTDATA_BAD.glob("*.*")), ids=lambda p: p.name)
def test_real_broken_packages_are_problems(world: World, path: Path) -> None:
    response = world.live.upload(world.channel, path)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_trees_and_sboms_skip_the_bad_records(world: World) -> None:
    client = world.live.client()
    base = f"/api/v1/channels/{world.channel}/packages"
    params = {"version": "1.0", "build": "0"}
    tree = ok(client.get(f"{base}/app/tree", params=params)).json()
    assert tree["solve_error"] is None
    assert {p["name"] for p in tree["report"]["packages"]} == {"app", "mid", "aiohttp"}
    notes = " ".join(tree["report"]["notes"])
    assert all(filename in notes for filename, _, _ in BAD_ROWS)
    for fmt in ("cyclonedx", "spdx"):
        sbom = ok(client.get(f"{base}/app/sbom", params=params | {"format": fmt}))
        assert "aiohttp-9.1-bad.conda" in sbom.text  # the note
    for _, version, _ in BAD_ROWS:  # the bad artifact itself: alone, with the reason
        itself = ok(client.get(f"{base}/aiohttp/tree", params={"version": version, "build": "bad"}))
        assert "invalid record" in itself.json()["solve_error"]
        ok(client.get(f"{base}/aiohttp/sbom", params={"version": version, "build": "bad"}))


@pytest.mark.parametrize("fmt", ["json", "csv", "cyclonedx", "spdx"])
def test_environment_reports_skip_the_bad_records(world: World, fmt: str) -> None:
    client = world.live.client()
    body = {"specs": ["app"], "channels": [world.channel]}
    ok(client.post("/api/v1/reports/env", json=body, params={"format": fmt}))
    url = f"{world.live.url}/conda/{world.channel}/noarch/aiohttp-3.7.3-0.conda"
    explicit = f"@EXPLICIT\n{url}\n".encode()
    files = {"file": ("explicit.txt", explicit, "text/plain")}
    response = ok(
        client.post(
            "/api/v1/reports/env", files=files, params={"format": fmt, "channel": world.channel}
        )
    )
    if fmt == "json":
        assert any("aiohttp-9.0-bad.conda" in note for note in response.json()["notes"])


def test_channel_documents_and_pages(world: World) -> None:
    client = world.live.client()
    for fmt in ("json", "csv"):
        ok(client.get(f"/api/v1/channels/{world.channel}/vulnerabilities", params={"format": fmt}))
    repodata = ok(client.get(f"/conda/{world.channel}/noarch/repodata.json")).json()
    assert "aiohttp-3.7.3-0.conda" in repodata["packages.conda"]
    assert not {f for f, _, _ in BAD_ROWS} & set(repodata["packages.conda"])
    subdirs = ok(world.live.admin.get(f"/api/v1/channels/{world.channel}/subdirs")).json()
    warnings = " ".join(w for s in subdirs for w in s.get("warnings", []))
    assert all(filename in warnings for filename, _, _ in BAD_ROWS)
    # channeldata.json is built after the subdirs' indexes (wait_published sees only those)
    deadline = time.monotonic() + 30
    while True:
        channeldata = ok(client.get(f"/conda/{world.channel}/channeldata.json")).json()
        if "aiohttp" in channeldata["packages"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert channeldata["packages"]["aiohttp"]["version"] == "3.7.3"
    page = ok(client.get(f"/channels/{world.channel}/packages/aiohttp"))
    assert "3.7.3" in page.text
    for filename, _, _ in BAD_ROWS:
        not_a_server_error(
            client.get(
                f"/channels/{world.channel}/packages/aiohttp",
                params={"build": f"noarch/{filename}"},
            )
        )


def test_ui_pages_around_the_bad_records(world: World) -> None:
    """The channel page, search, the package's vulnerability tab (which resolves the trees of the
    newest builds: the bad ones among them) and the environment report page."""
    client = world.live.client()
    ok(client.get(f"/channels/{world.channel}"))
    ok(client.get("/search", params={"q": "aiohttp"}))
    tab = ok(world.live.admin.get(f"/channels/{world.channel}/packages/aiohttp/vulnerabilities"))
    assert "cannot resolve" in tab.text  # the bad builds, alone, with the reason as the title
    page = ok(
        client.post(
            "/reports/env",
            data={"specs": "app\n", "channel": world.channel, "format": "page"},
            files={"file": ("", b"", "application/octet-stream")},
        )
    )
    assert "aiohttp-9.0-bad.conda" in page.text  # the note


HOSTILE_LOCKS: dict[str, bytes] = {
    "explicit.txt": b"@EXPLICIT\nhttps://example.invalid/conda/x/noarch/we%20ird-1..2-0.conda\n"
    b"https://example.invalid/conda/x/noarch/a-b-c-d-e.tar.bz2#" + b"0" * 32 + b"\n",
    "conda-lock.yml": b"version: 1\nmetadata: {platforms: [linux-64], channels: []}\npackage:\n"
    b"- {name: x, version: '1..2', manager: conda, platform: linux-64,"
    b" url: 'https://example.invalid/noarch/x-1..2-0.conda', hash: {md5: '" + b"0" * 32 + b"'},"
    b" dependencies: {y: {a: 1}, z: '>=>1'}}\n",
}


@pytest.mark.parametrize("fmt", ["json", "csv", "cyclonedx", "spdx"])
@pytest.mark.parametrize("name", sorted(HOSTILE_LOCKS))
def test_hostile_lock_files_never_fail_a_report(world: World, name: str, fmt: str) -> None:
    """Locked packages we do not hold carry what the file says (odd versions, odd dependency
    values): every format renders them."""
    files = {"file": (name, HOSTILE_LOCKS[name], "text/plain")}
    params = {"format": fmt, "channel": world.channel, "platform": "linux-64"}
    ok(world.live.client().post("/api/v1/reports/env", files=files, params=params))
