"""Search with filters and the downloads report with its charts, in Debian's Chromium.

Real packages from ``tests/data/channels/test-recipes`` are uploaded to a fresh channel and one of
them is downloaded through the conda endpoint; the browser then searches with the filter form
(platform, channel, "downloaded only"), follows "where" to every build holding the name, and opens
``/admin/downloads`` for the channel: three server-drawn SVG charts, the tables beside them, and a
CSV export that carries the download. No script error or CSP violation on the way.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.functional.test_ui_channels_browser import GOOD, RECIPES, chromium  # noqa: F401
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("ui-channels")]


def _downloaded(live_server: LiveServer, channel: str, timeout: float = 30) -> None:
    """Wait for the download to be flushed from the server's buffer (every few seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = live_server.admin.get("/api/v1/downloads", params={"channel": channel}).json()
        if rows:
            return
        time.sleep(0.3)
    pytest.fail(f"no download of {channel} recorded in {timeout}s")


@pytest.mark.browser
def test_search_with_filters_then_the_downloads_report(
    live_server: LiveServer,
    chromium: object,  # noqa: F811
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    channel = f"uis-{uuid.uuid4().hex[:8]}"
    assert live_server.admin.post("/api/v1/channels", json={"name": channel}).status_code == 201
    response = live_server.upload(channel, *(RECIPES / name for name in GOOD))
    assert response.status_code in (200, 201), response.text
    live_server.wait_published(channel)
    got = live_server.client().get(f"/conda/{channel}/noarch/{GOOD[0]}")
    assert got.status_code == 200
    _downloaded(live_server, channel)

    errors: list[str] = []
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("form.stack button[type=submit]")

    # the header's box, then the filters: this channel, noarch, downloaded only
    page.fill("header form[role=search] input[name=q]", "depend")
    page.click("header form[role=search] button")
    form = page.locator("form.search-form")
    form.locator("input[name=channel]").fill(channel)
    form.locator("input[name=subdir]").fill("noarch")
    form.locator("#downloaded-only").check()
    form.locator("button[type=submit]").click()
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(1)  # both packages match "depend"; one was downloaded
    expect(rows.first).to_contain_text("dependency")
    expect(rows.first.locator("td.num")).to_have_text("1")
    form = page.locator("form.search-form")
    expect(form.locator("input[name=channel]")).to_have_value(channel)  # the form keeps them
    form.locator("#downloaded-only").uncheck()
    form.locator("button[type=submit]").click()
    expect(page.locator("#results tbody tr")).to_have_count(2)
    page.screenshot(path="/tmp/ui-search-filters.png", full_page=True)

    # "where": every channel and build holding the name
    page.locator("#results tr", has_text="dependent").locator("a", has_text="where").click()
    where = page.locator("main tbody tr", has_text=channel)  # (other tests' channels hold it too)
    expect(where).to_have_count(1)
    expect(where.first).to_contain_text("clean")

    # the downloads report of the channel: charts drawn by the server, tables, CSV
    page.goto(f"{live_server.url}/admin/downloads")
    page.fill("#f-channel", channel)
    page.locator("#downloads-filter button[type=submit]").click()
    for chart in ("#chart-days", "#chart-top", "#chart-severity"):
        svg = page.locator(f"{chart} svg")
        expect(svg).to_be_visible()
        assert svg.get_attribute("role") == "img"
        assert svg.locator("title").count() >= 1
    expect(page.locator("#by-package")).to_contain_text("dependency")
    expect(page.locator("#recent")).to_contain_text(GOOD[0])
    csv = page.request.get(live_server.url + page.locator("#csv-package").get_attribute("href"))
    assert csv.status == 200 and "dependency" in csv.text()
    page.screenshot(path="/tmp/ui-downloads-report.png", full_page=True)
    page.close()
    assert errors == [], errors
