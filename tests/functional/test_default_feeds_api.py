"""Default feeds and the ``unreachable`` state over HTTP and the CLI (issue 12, item 7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import own_server
from tests.integration.vulns.test_default_feeds import local_urls
from tests.support.cves import cli_for, unique, wait_sync
from tests.support.cves import run_cli as run
from tests.support.server import LiveServer, free_port

pytestmark = pytest.mark.functional
FEEDS = "/api/v1/cve/feeds"


@pytest.fixture(scope="module")
def defaults_on(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server started with the default feeds on, at local copies."""
    urls = local_urls(tmp_path_factory.mktemp("default-feed-files"))
    vulns = {"default_feeds": True, "default_feed_urls": urls}
    with own_server(backend, tmp_path_factory, "default-feeds", vulns=vulns) as live:
        yield live


def test_a_fresh_server_lists_the_default_feeds(defaults_on: LiveServer) -> None:
    listed = {f["name"]: f for f in defaults_on.admin.get(FEEDS).json()}
    assert sorted(listed) == ["cisa-kev", "epss", "nvd", "osv-pypi"]
    for feed in listed.values():
        assert feed["enabled"] and feed["next_run_at"] and feed["schedule"].endswith("* * * *")
        assert feed["last_status"] is None and feed["unreachable_since"] is None
    synced = defaults_on.admin.post(f"{FEEDS}/osv-pypi/sync")
    assert wait_sync(defaults_on.admin, synced.headers["location"])["last_status"] == "ok"


def test_the_test_servers_have_no_default_feeds(live_server: LiveServer) -> None:
    names = {f["name"] for f in live_server.admin.get(FEEDS).json()}
    assert not names & {"nvd", "osv-pypi", "cisa-kev", "epss"}


def test_an_unreachable_feed_is_listed_with_since_when(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, url = unique("away"), f"https://127.0.0.1:{free_port()}/kev.json"
    body = {"name": name, "url": url, "format": "kev", "check": False}
    assert live_server.admin.post(FEEDS, json=body).status_code == 201
    synced = live_server.admin.post(f"{FEEDS}/{name}/sync")
    feed = wait_sync(live_server.admin, synced.headers["location"])
    assert feed["last_status"] == "unreachable", feed
    assert feed["unreachable_since"] == feed["last_sync_at"] is not None
    assert feed["last_error"].endswith("cannot be reached")
    cli = cli_for(monkeypatch, tmp_path, live_server)
    since = feed["unreachable_since"][:19].replace("T", " ")
    # the table wraps at the terminal's width: its content is checked through --json
    rows = json.loads(run(cli, "cve", "feed", "list", "--json"))
    (row,) = [r for r in rows if r["name"] == name]
    assert row["last_status"] == "unreachable" and row["unreachable_since"][:19] == since.replace(
        " ", "T"
    )
    assert f"unreachable since {since}" in run(cli, "cve", "feed", "show", name)
    followed = run(cli, "cve", "sync", name, "--follow", code=1)  # not a success
    assert "unreachable" in followed and "cannot be reached" in followed
    again = live_server.admin.get(f"{FEEDS}/{name}").json()
    assert again["unreachable_since"] == feed["unreachable_since"]  # the streak goes on
    page = live_server.admin.get("/cves")  # the UI lists the feeds with their state
    assert page.status_code == 200, page.text
    row = page.text.split(f'data-feed="{name}"', 1)[1].split("</tr>", 1)[0]
    assert "unreachable</span> since " + feed["unreachable_since"][:10] in row
