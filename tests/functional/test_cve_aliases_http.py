"""Alias groups over HTTP (issue 12, item 8): the API and the advisory page of a live server show
``PYSEC-2021-76`` scored by the NVD record of ``CVE-2021-21330`` it aliases, and list it once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import PG_URL, TESTDATA, backends
from tests.functional.test_ui import assert_html, sign_in
from tests.support.cves import osv_folder, sync_feed, sync_osv_folder, upload
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("cve-aliases")]

NVD = TESTDATA / "vulns" / "nvd-api-2.0" / "cves-pypi-aliases.json"


@pytest.fixture(scope="module", params=backends())
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp(f"cve-aliases-{request.param}")
    tmp = tmp_path_factory.mktemp("cve-aliases-work")
    with (
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url) as server,
    ):
        channel = server.new_channel("public", "aliased")
        upload(server, channel, tmp, "aiohttp", "3.7.3", "0")
        sync_osv_folder(server, osv_folder(tmp, "aiohttp"))
        assert sync_feed(server, NVD.as_uri(), "nvd", "nvd")["last_status"] == "ok"
        yield server


def test_api_shows_the_merged_view(live: LiveServer) -> None:
    shown = live.admin.get("/api/v1/cves/PYSEC-2021-76")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["best_score"], body["severity"]) == (6.1, "medium")
    assert body["score_source"] == "CVE-2021-21330" and body["scores"] == []
    assert sorted(body["group"]) == ["CVE-2021-21330", "PYSEC-2021-76"]
    assert len(body["artifacts"]) == 1  # matched by both records: once
    rows = live.admin.get("/api/v1/cves", params={"package": "aiohttp", "limit": 500}).json()
    ids = [r["id"] for r in rows]
    assert "PYSEC-2021-76" in ids and "CVE-2021-21330" not in ids
    pysec = next(r for r in rows if r["id"] == "PYSEC-2021-76")
    assert pysec["score_source"] == "CVE-2021-21330" and "CVE-2021-21330" in pysec["aliases"]
    medium = live.admin.get("/api/v1/cves", params={"severity": "medium", "limit": 500}).json()
    assert "PYSEC-2021-76" in [r["id"] for r in medium]


def test_advisory_page_says_where_the_score_comes_from(live: LiveServer) -> None:
    client = live.client()
    assert sign_in(client, "admin", ADMIN_PASSWORD).status_code == 303
    page = client.get("/cves/PYSEC-2021-76")
    assert_html(page, 200)
    assert 'id="score-source"' in page.text and "Score from CVE-2021-21330" in page.text
    listing = client.get("/cves", params={"package": "aiohttp"})
    assert_html(listing, 200)
    assert 'data-id="PYSEC-2021-76"' in listing.text
    assert 'data-id="CVE-2021-21330"' not in listing.text
