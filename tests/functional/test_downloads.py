"""Download tracking through a live server (SPEC §10): conda GETs are recorded with who, what,
status and bytes; the API lists them and reports them by package, channel and user, as JSON and
CSV; owners see their channels only; the admin page shows tables and charts without JavaScript.

The server's flusher runs every 50 ms; tests flush the buffer themselves (``flush``) so that they
never wait for it.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
import pytest

from stockade.audit.downloads import Download, write_batch
from stockade.db.engine import transaction
from tests.conftest import PG_URL, backends
from tests.functional.test_identity_api import PASSWORD, grant, make_user
from tests.functional.test_ui import assert_html, sign_in
from tests.support.conda_client import install_records, solve_specs
from tests.support.cves import cli_for, run_cli, upload
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("downloads")]


@dataclass
class World:
    live: LiveServer
    open: str  # public channel: dlpkg
    secret: str  # private channel: secretpkg
    owner_open: str  # manages ``open``
    owner_secret: str  # manages ``secret``
    nobody: str  # signed in, manages nothing
    secret_token: str  # owner_secret's token
    secret_token_id: int
    size: int  # bytes of dlpkg's file
    statuses: list[int]

    def api(self, username: str | None) -> httpx.Client:
        if username is None:
            return self.live.client()
        if username == "admin":
            return self.live.admin
        return self.live.client(auth=(username, PASSWORD))


def flush(live: LiveServer) -> None:
    def write(batch: list[Download]) -> None:
        with transaction(live.container.factory) as session:
            write_batch(session, batch)

    live.container.downloads.flush(write, drain=True)


def servable(live: LiveServer, path: str, timeout: float = 60) -> None:
    """Wait for an upload's verdict (HEAD requests are not downloads)."""
    deadline = time.monotonic() + timeout
    while live.admin.head(path).status_code != 200:
        assert time.monotonic() < deadline, f"{path} was not served within {timeout}s"
        time.sleep(0.05)


def _token(live: LiveServer, username: str) -> tuple[str, int]:
    r = live.client().post(
        "/api/v1/tokens", json={"name": "dl", "expires_in_days": 5}, auth=(username, PASSWORD)
    )
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["id"]


def _download(world_live: LiveServer, open_: str, secret: str, token: str) -> tuple[int, list[int]]:
    conda = world_live.client()
    conda.headers["user-agent"] = "rattler/test"
    url = f"/conda/{open_}/noarch/dlpkg-1.0-0.conda"
    full = conda.get(url)
    ranged = conda.get(url, headers={"range": "bytes=0-9"})
    cached = conda.get(url, headers={"if-none-match": full.headers["etag"]})
    private = world_live.client().get(f"/t/{token}/conda/{secret}/noarch/secretpkg-2.0-0.conda")
    index = conda.get(f"/conda/{open_}/noarch/repodata.json")  # not a download
    missing = conda.get(f"/conda/{open_}/noarch/nothere-1.0-0.conda")  # not a download
    assert index.status_code == 200 and missing.status_code == 404
    statuses = [full.status_code, ranged.status_code, cached.status_code, private.status_code]
    return len(full.content), statuses


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp(f"downloads-{request.param}")
    tmp = tmp_path_factory.mktemp("downloads-work")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, downloads={"flush_interval_s": 0.05}) as live,
    ):
        open_, secret = live.new_channel("public", "dl-open"), live.new_channel("private", "dl-x")
        upload(live, open_, tmp, "dlpkg", "1.0", "0")
        upload(live, secret, tmp, "secretpkg", "2.0", "0")
        servable(live, f"/conda/{open_}/noarch/dlpkg-1.0-0.conda")
        servable(live, f"/conda/{secret}/noarch/secretpkg-2.0-0.conda")
        owner_open, owner_secret, nobody = make_user(live), make_user(live), make_user(live)
        grant(live, open_, "manage", user=owner_open)
        grant(live, secret, "manage", user=owner_secret)
        token, token_id = _token(live, owner_secret)
        size, statuses = _download(live, open_, secret, token)
        flush(live)
        yield World(
            live, open_, secret, owner_open, owner_secret, nobody, token, token_id, size, statuses
        )


def rows(
    world: World, username: str | None = "admin", **params: str | int
) -> list[dict[str, object]]:
    r = world.api(username).get("/api/v1/downloads", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    found: list[dict[str, object]] = r.json()["downloads"]
    return found


def test_package_gets_are_recorded_with_status_and_bytes(world: World) -> None:
    assert world.statuses == [200, 206, 304, 200]
    found = rows(world, channel=world.open)
    assert [(r["status"], r["bytes"]) for r in found] == [(304, 0), (206, 10), (200, world.size)]
    first = found[-1]
    assert first["principal"] == "anonymous" and first["user_id"] is None
    assert first["name"] == "dlpkg" and first["version"] == "1.0"
    assert first["filename"] == "dlpkg-1.0-0.conda" and first["subdir"] == "noarch"
    assert first["ip"] == "127.0.0.1" and first["user_agent"] == "rattler/test"
    assert isinstance(first["request_id"], str) and len(first["sha256"]) == 64  # type: ignore[arg-type]


def test_private_download_carries_the_token(world: World) -> None:
    (row,) = rows(world, channel=world.secret)
    assert row["principal"] == world.owner_secret
    assert row["token_id"] == world.secret_token_id
    assert row["status"] == 200 and row["name"] == "secretpkg"
    assert world.secret_token not in str(row)  # the token itself is never stored


def test_daily_counts_and_reports(world: World) -> None:
    admin = world.api("admin")
    report = admin.get("/api/v1/downloads/report", params={"by": "package"}).json()
    totals = {t["key"]: t for t in report["totals"]}
    # one full download each: the 206 adds bytes, the 304 nothing
    assert totals["dlpkg"]["downloads"] == 1
    assert totals["dlpkg"]["bytes"] == world.size + 10
    assert totals["dlpkg"]["channel"] == world.open
    assert totals["secretpkg"]["downloads"] == 1
    assert sum(d["downloads"] for d in report["per_day"]) == 2
    by_channel = admin.get("/api/v1/downloads/report", params={"by": "channel"}).json()
    assert {t["key"]: t["downloads"] for t in by_channel["totals"]} == {
        world.open: 1,
        world.secret: 1,
    }
    by_user = admin.get("/api/v1/downloads/report", params={"by": "user"}).json()
    assert {t["key"]: t["downloads"] for t in by_user["totals"]} == {
        "anonymous": 1,
        world.owner_secret: 1,
    }


def test_report_as_csv(world: World) -> None:
    r = world.api("admin").get(
        "/api/v1/downloads/report", params={"by": "package", "format": "csv", "channel": world.open}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert table == [
        ["package", "channel", "downloads", "bytes"],
        ["dlpkg", world.open, "1", str(world.size + 10)],
    ]


def test_cursor_pages_through_every_row(world: World) -> None:
    admin = world.api("admin")
    seen: list[object] = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/api/v1/downloads", params=params).json()
        seen.extend(r["id"] for r in page["downloads"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in rows(world)]
    assert len(seen) == 4


def test_owners_see_their_channels_only(world: World) -> None:
    assert {r["channel"] for r in rows(world, world.owner_open)} == {world.open}
    assert {r["channel"] for r in rows(world, world.owner_secret)} == {world.secret}
    owner = world.api(world.owner_open)
    # the private channel is hidden from the other owner: 404, as everywhere else
    r = owner.get("/api/v1/downloads", params={"channel": world.secret})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    # a public channel they do not manage: 403
    r = world.api(world.owner_secret).get(
        "/api/v1/downloads/report", params={"channel": world.open}
    )
    assert r.status_code == 403
    report = owner.get("/api/v1/downloads/report", params={"by": "user"}).json()
    assert {t["key"] for t in report["totals"]} == {"anonymous"}


def test_who_may_not_see_downloads(world: World) -> None:
    for path in ("/api/v1/downloads", "/api/v1/downloads/report"):
        assert world.api(None).get(path).status_code == 401
        r = world.api(world.nobody).get(path)
        assert r.status_code == 403 and r.json()["code"] == "downloads:denied"


@pytest.mark.parametrize(
    "params",
    [
        {"by": "nope"},
        {"format": "xml"},
        {"since": "yesterday"},
        {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"limit": "0"},
        {"until": "9999-12-31T23:59:59-14:00"},  # past the last datetime in UTC
        {"since": "0001-01-01T00:00:00+14:00"},
    ],
)
def test_bad_queries_are_problems(world: World, params: dict[str, str]) -> None:
    r = world.api("admin").get("/api/v1/downloads/report", params=params)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_cursor_past_a_64_bit_id_is_a_problem(world: World) -> None:
    r = world.api("admin").get("/api/v1/downloads", params={"cursor": str(2**70)})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


def test_naive_times_are_utc(world: World) -> None:
    found = rows(world, since="2000-01-01T00:00:00", until="2999-01-01T00:00:00")
    assert len(found) == 4
    assert rows(world, since="2999-01-01T00:00:00") == []


# --- the page ------------------------------------------------------------------------------------


def web(world: World, username: str) -> httpx.Client:
    client = world.live.client()
    password = ADMIN_PASSWORD if username == "admin" else PASSWORD
    assert sign_in(client, username, password).status_code == 303
    return client


def test_admin_page_shows_tables_charts_and_exports(world: World) -> None:
    admin = web(world, "admin")
    page = admin.get("/admin/downloads")
    assert_html(page, 200)
    text = page.text
    assert text.count('<svg class="chart"') == 3 and "<script" not in text.split("<main", 1)[-1]
    for chart in ("chart-days", "chart-top", "chart-severity"):
        block = text.split(f'id="{chart}"', 1)[1].split("</figure>", 1)[0]
        assert 'role="img"' in block and "<title" in block and "<desc" in block
    days = text.split('id="chart-days"', 1)[1].split("</figure>", 1)[0]
    assert "2 downloads over 30 days" in days  # the last 30 days by default, zeros included
    top = text.split('id="by-package"', 1)[1].split("</table>", 1)[0]
    assert "dlpkg" in top and "secretpkg" in top
    assert world.owner_secret in text.split('id="by-user"', 1)[1].split("</table>", 1)[0]
    for anchor in ("csv-package", "csv-user", "json-report", "json-raw"):
        href = unescape(text.split(f'id="{anchor}"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0])
        r = admin.get(href)
        assert r.status_code == 200, (href, r.text)


def test_owner_page_shows_their_channel_only(world: World) -> None:
    owner = web(world, world.owner_open)
    page = owner.get("/admin/downloads")
    assert_html(page, 200)
    assert "dlpkg" in page.text and "secretpkg" not in page.text
    assert world.secret not in page.text
    hidden = owner.get("/admin/downloads", params={"channel": world.secret})
    assert hidden.status_code == 404


def test_channel_page_links_its_managers_to_its_downloads(world: World) -> None:
    link = f'href="/admin/downloads?channel={world.open}" id="downloads-link"'
    assert link in web(world, world.owner_open).get(f"/channels/{world.open}").text
    assert link not in web(world, world.nobody).get(f"/channels/{world.open}").text


def test_page_refuses_who_manages_nothing(world: World) -> None:
    assert web(world, world.nobody).get("/admin/downloads").status_code == 403
    anonymous = world.live.client().get("/admin/downloads")
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]


def test_package_page_shows_download_counts(world: World) -> None:
    page = world.live.client().get(f"/channels/{world.open}/packages/dlpkg")
    assert_html(page, 200)
    assert 'id="download-count" title="1 in the last 30 days">1 download</span>' in page.text
    assert 'id="build-downloads">1 <span' in page.text


def test_page_bad_date_is_a_form_error(world: World) -> None:
    page = web(world, "admin").get("/admin/downloads", params={"since": "someday"})
    assert page.status_code == 400
    assert 'id="form-error">Since: write a date as YYYY-MM-DD' in page.text
    edge = web(world, "admin").get("/admin/downloads", params={"until": "9999-12-31"})
    assert edge.status_code == 400 and "between years 1 and 9999" in edge.text


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.one_backend  # the API calls it makes run on both backends above
def test_cli_report_and_list(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cli = cli_for(monkeypatch, tmp_path, world.live)
    printed = run_cli(cli, "downloads", "report", "--by", "package")
    assert "Downloads by package" in printed and "dlpkg" in printed and world.open in printed
    assert "2 downloads on 1 days" in printed
    as_json = json.loads(run_cli(cli, "downloads", "report", "--by", "user", "--json"))
    assert {t["key"] for t in as_json["totals"]} == {"anonymous", world.owner_secret}
    target = tmp_path / "by-channel.csv"
    run_cli(cli, "downloads", "report", "--by", "channel", "--csv", str(target))
    assert target.read_text().splitlines()[0] == "channel,downloads,bytes"
    listed = run_cli(cli, "downloads", "list", "--channel", world.secret)
    assert f"token {world.secret_token_id}" in listed and "200" in listed  # (wraps at 80 columns)
    rows = json.loads(run_cli(cli, "downloads", "list", "--channel", world.secret, "--json"))
    assert [(r["filename"], r["token_id"]) for r in rows] == [
        ("secretpkg-2.0-0.conda", world.secret_token_id)
    ]
    assert len(json.loads(run_cli(cli, "downloads", "list", "-n", "3", "--json"))) == 3
    refused = run_cli(cli, "downloads", "report", "--by", "nope", code=1)
    assert "--by must be one of package, channel, user" in refused
    assert "not a date" in run_cli(cli, "downloads", "list", "--since", "soon", code=1)


# --- a real conda client (last: it downloads into a channel of its own) -------------------------


@pytest.mark.one_backend  # the recording path is the same on both; the client costs seconds
def test_rattler_install_is_recorded(world: World, tmp_path: Path) -> None:
    live = world.live
    channel = live.new_channel("public", "dl-rattler")
    upload(live, channel, tmp_path, "rattlerpkg", "3.1", "0")
    live.wait_published(channel)
    servable(live, f"/conda/{channel}/noarch/rattlerpkg-3.1-0.conda")
    records = solve_specs(f"{live.url}/conda/{channel}", ["rattlerpkg"], tmp_path / "cache")
    install_records(records, tmp_path / "env", tmp_path / "pkgs")
    flush(live)
    (row,) = rows(world, channel=channel)
    assert (row["name"], row["version"], row["status"]) == ("rattlerpkg", "3.1", 200)
    assert row["principal"] == "anonymous"  # py-rattler sends no User-Agent
    report = world.api("admin").get("/api/v1/downloads/report", params={"channel": channel})
    assert [(t["key"], t["downloads"]) for t in report.json()["totals"]] == [("rattlerpkg", 1)]
