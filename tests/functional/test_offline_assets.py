"""Issue 12 items 5 and 6: everything a page needs comes from Stockade; favicon; HEAD on GET routes.

Chromium loads every UI page (read from the route table) and ``/api/docs`` with every request to
another host aborted, and finds no failed request and no console error: that walk is
``tests/functional/test_responsive_pages.py``'s (one walk per width checks layout, offline assets
and accessibility). Here: the route table and the fixtures it uses, the templates, HEAD, favicon.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from stockade.web.ui.render import TEMPLATES_DIR
from tests.functional.test_cli_quarantine import hold
from tests.functional.test_ui import PACKAGES, assert_html, sign_in
from tests.functional.test_ui_mirrors import create_mirror, run_now, wait_run
from tests.support.cves import osv_folder, sync_osv_folder, unique
from tests.support.offline_app import flat_routes, offline_app
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = pytest.mark.functional

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
ASSET = re.compile(r'(?:src|href)="([^"]*)"')


def ui_page_paths() -> list[str]:
    """Every GET route that renders a page (the UI modules; SSO only redirects)."""
    with offline_app() as app:
        routes = list(flat_routes(app.routes))
    return sorted(
        r.path
        for r in routes
        if "GET" in (getattr(r, "methods", None) or ())
        and getattr(r, "endpoint", None) is not None
        and r.endpoint.__module__.startswith("stockade.web.ui.")
        and r.endpoint.__module__ != "stockade.web.ui.sso"
    )


@pytest.fixture(scope="module")
def admin_web(live_server: LiveServer) -> httpx.Client:
    client = live_server.client()
    assert sign_in(client, "admin", ADMIN_PASSWORD).status_code == 303
    return client


@pytest.fixture(scope="module")
def things(
    live_server: LiveServer, admin_web: httpx.Client, testdata: Path, tmp_path_factory: Any
) -> dict[str, str]:
    """One of each thing a page shows, by the path its page sits under."""
    admin = live_server.admin
    channel = live_server.new_channel(prefix="offline")
    recipes = testdata / "channels" / "test-recipes"
    assert live_server.upload(channel, *(recipes / "noarch" / p for p in PACKAGES)).is_success
    group, role, account, policy = (unique(p) for p in ("grp", "role", "sa", "pol"))
    assert admin.post("/api/v1/groups", json={"name": group}).is_success
    body = {"name": role, "permissions": {"audit": "read"}}
    assert admin.post("/api/v1/roles", json=body).is_success
    assert admin.post("/api/v1/service-accounts", json={"name": account}).is_success
    body = {"name": policy, "definition": {"cve_score": {"threshold": 5}}}
    assert admin.post("/api/v1/policies", json=body).is_success
    mirror = unique("mirror")
    assert create_mirror(admin_web, recipes.as_uri(), name=mirror).status_code == 303
    run_now(admin_web, mirror)
    run = wait_run(live_server, mirror)
    feed = sync_osv_folder(live_server, osv_folder(tmp_path_factory.mktemp("offline"), "aiohttp"))
    hook = {"url": "https://hooks.example.invalid/stockade", "description": "on call"}
    webhook = admin.post(f"/api/v1/channels/{channel}/webhooks", json=hook)
    assert webhook.status_code == 201, webhook.text
    vuln = admin.get("/api/v1/cves").json()[0]["id"]
    live_server.wait_published(channel)
    _, _, held = hold(live_server, tmp_path_factory.mktemp("held"))  # a quarantined package
    return {
        "/admin/users": "admin",
        "/admin/service-accounts": account,
        "/admin/groups": group,
        "/admin/roles": role,
        "/policies": policy,
        "/mirrors": mirror,
        "/channels": channel,
        "package": "dependent",
        "run_id": str(run["id"]),
        "vuln_id": vuln,
        "artifact_id": str(held["id"]),
        "/admin/cve-feeds": feed["name"],
        "webhook_id": str(webhook.json()["id"]),
        "/search/where": "dependent",  # where a package is: every channel and version
    }


def filled(path: str, things: dict[str, str]) -> str:
    """``path`` with its parameters replaced by real things (KeyError: a new page to add)."""
    section = path.split("/{", 1)[0]

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return things[section] if name == "name" else things[name]

    return PARAM.sub(value, path)


# --- plain HTTP ------------------------------------------------------------------------------


def test_favicon_is_served_and_linked(live_server: LiveServer) -> None:
    client = live_server.client()
    ico = client.get("/favicon.ico")
    assert ico.status_code == 200
    assert ico.headers["content-type"] == "image/x-icon"
    assert ico.content[:4] == b"\0\0\1\0"
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert '<link rel="icon" href="/static/favicon.svg"' in client.get("/login").text


def test_api_docs_load_nothing_from_other_hosts(live_server: LiveServer) -> None:
    client = live_server.client()
    page = client.get("/api/docs")
    assert_html(page, 200)
    assets = ASSET.findall(page.text)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in assets
    assert [a for a in assets if not a.startswith("/")] == []
    assert "//" not in page.text.replace("http://www.w3.org", "")  # no CDN, no validator
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_templates_load_nothing_from_other_hosts() -> None:
    for template in TEMPLATES_DIR.glob("*.html"):
        assert [a for a in ASSET.findall(template.read_text()) if "//" in a] == [], template


def test_head_answers_like_get_without_a_body(
    live_server: LiveServer, admin_web: httpx.Client, things: dict[str, str]
) -> None:
    channel = things["/channels"]
    paths = [
        "/",
        "/login",
        "/search?q=dep",
        f"/channels/{channel}",
        f"/channels/{channel}/packages/dependent",
        "/mirrors",
        "/admin/users",
        "/api/docs",
        "/favicon.ico",
        "/static/stockade.css",
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/api/v1/channels",
        f"/api/v1/channels/{channel}",
        "/api/v1/nonexistent",
        f"/conda/{channel}/noarch/repodata.json",
        f"/conda/{channel}/channeldata.json",
        "/channels/no-such-channel",
    ]
    for path in paths:
        got, head = admin_web.get(path), admin_web.head(path)
        assert head.status_code == got.status_code != 405, path
        assert head.content == b"", path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
    for path in ("/favicon.ico", "/static/stockade.css", "/api/v1/openapi.json"):
        size = len(admin_web.get(path).content)
        assert admin_web.head(path).headers["content-length"] == str(size), path
    assert admin_web.head("/logout").status_code == 405  # POST only: no HEAD either
