"""Issue 17: every UI page passes an axe-core check in Chromium with no serious or critical
violation, signed in as the admin with something on every page, and the pages an anonymous
visitor sees.

The pages are read from the route table (as the offline and responsive tests do), so a page added
later is checked without a change here; the data are the responsive test's (one of each thing, a
package with a real advisory, a mirror run, a held file, a webhook, a feed). axe-core comes from
the ``axe-playwright-python`` dev dependency (its ``axe.min.js``, axe-core 4.12, MPL-2.0): nothing
is fetched at test time. One server and one browser for the module; the WCAG 2.x A and AA rules
and axe's best practices run on each page and on the page a refused form draws. The same server
and browser then go through the core flows with JavaScript off, at phone width.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest

from tests.conftest import own_server
from tests.functional.test_offline_assets import admin_web, filled, things, ui_page_paths
from tests.functional.test_responsive_pages import ANONYMOUS_PAGES, world
from tests.functional.test_ui import browser
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.browser, pytest.mark.xdist_group("a11y")]
# The Chromium fixture of test_ui; the offline and responsive tests' data, on this module's server.
__all__ = ["admin_web", "browser", "things", "world"]

BLOCKING = ("serious", "critical")
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
RUN_AXE = (
    "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags},"
    " resultTypes: ['violations']}).then((r) => r.violations.map((v) => ({id: v.id,"
    " impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' '))})))"
)

UNFOCUSABLE_SCROLL = """() => Array.from(document.querySelectorAll(".scroll"))
  .filter((el) => !el.hasAttribute("tabindex") && !el.querySelector("a, button, input, select"))
  .map((el) => (el.querySelector("table") || el).id || el.className)"""


@pytest.fixture(scope="module")
def axe_script() -> str:
    """axe-core as the dev dependency ships it (no network)."""
    return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """This module's own server (SQLite: what axe checks does not depend on the database)."""
    with own_server("sqlite", tmp_path_factory, "a11y") as live:
        yield live


class Checker:
    """One browser context: opens pages, runs axe on each, keeps what blocks."""

    def __init__(self, browser: Any, server: LiveServer, axe: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.server, self.axe = server, axe
        self.failures: list[str] = []
        self.checked = 0

    def sign_in(self) -> None:
        self.page.goto(f"{self.server.url}/login")
        self.page.fill("#username", "admin")
        self.page.fill("#password", ADMIN_PASSWORD)
        self.page.click("form.stack button[type=submit]")
        self.page.wait_for_selector(".who .user")

    def open(self, path: str, status: int = 200) -> None:
        response = self.page.goto(f"{self.server.url}{path}", wait_until="load")
        assert response is not None and response.status == status, (path, response)
        if self.page.locator("script[src]").count():  # what the scripts draw is checked too
            self.page.wait_for_load_state("networkidle")
        self.check(path)

    def check(self, label: str) -> None:
        # a box that scrolls a table sideways at some width must be reachable by keyboard at every
        # width (axe sees only those that scroll at this one)
        unreachable = self.page.evaluate(UNFOCUSABLE_SCROLL)
        if unreachable:
            self.failures.append(f"{label}: scrolling boxes not focusable: {unreachable}")
        self.page.evaluate(self.axe)
        found: list[dict[str, Any]] = self.page.evaluate(RUN_AXE, RULES)
        self.checked += 1
        for v in found:
            if v["impact"] in BLOCKING:
                where = json.dumps(v["nodes"])
                self.failures.append(f"{label}: {v['impact']} {v['id']} ({v['help']}) at {where}")


def test_every_page_has_no_serious_accessibility_violation(
    live_server: LiveServer, world: dict[str, str], browser: object, axe_script: str
) -> None:
    anonymous = Checker(browser, live_server, axe_script)
    for path in (*ANONYMOUS_PAGES, "/login"):
        anonymous.open(path.format(channel=world["/channels"]))
    anonymous.context.close()

    admin = Checker(browser, live_server, axe_script)
    admin.sign_in()
    routes = ui_page_paths()
    assert len(routes) >= 25, routes
    for route in routes:
        admin.open(filled(route, world))
    admin.open("/channels/no-such-channel", status=404)
    refused_form(admin)
    admin.context.close()
    failures = anonymous.failures + admin.failures
    assert admin.checked > len(routes)
    assert not failures, "\n".join(failures)


def refused_form(checker: Checker) -> None:
    """A form sent back with its error (the alert, the fields as typed) is checked too."""
    page = checker.page
    page.goto(f"{checker.server.url}/admin/webhooks")
    page.fill("#url", "https://user:pw@hooks.example.invalid/x")
    page.click("#create-webhook button[type=submit]")
    page.wait_for_selector("#form-error")
    checker.check("/admin/webhooks (refused form)")


def test_core_flows_work_without_javascript(
    live_server: LiveServer, world: dict[str, str], browser: object
) -> None:
    """With JavaScript off: sign in, reach every page of the navigation and of the admin menu,
    search, open a result and its package page, follow a form that answers an error, sign out."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    base = live_server.url
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("form.stack button[type=submit]")
    expect(page.locator(".who .user")).to_have_text("admin")

    main_links = page.locator("nav[aria-label=Main] a").evaluate_all("(a) => a.map((l) => l.href)")
    page.click("#nav-admin")
    tabs = page.locator("nav.tabs a").evaluate_all("(a) => a.map((l) => l.href)")
    wanted = {
        "/channels",
        "/cves",
        "/mirrors",
        "/policies",
        "/quarantine",
        "/reports/env",
        "/admin",
    }
    wanted |= {"/admin/webhooks", "/admin/cve-feeds", "/admin/audit", "/admin/airgap"}
    reached = {link.removeprefix(base) for link in main_links + tabs}
    assert wanted <= reached, wanted - reached
    for link in main_links + tabs:
        response = page.goto(link)
        assert response is not None and response.status == 200, link
        expect(page.locator("main h1")).not_to_be_empty()

    page.fill("header form[role=search] input[name=q]", "flask")
    page.click("header form[role=search] button")
    page.click("#results a.strong >> nth=0")
    expect(page.locator("main h1")).to_contain_text("flask")

    page.goto(f"{base}/admin/cve-feeds")
    page.fill("#name", "bad feed")
    page.fill("#url", "ftp://feeds.example.invalid/x")
    page.click("#create-feed button[type=submit]")
    expect(page.locator("#form-error")).not_to_be_empty()

    page.click("button.linklike")  # sign out
    expect(page.locator(".who .signin")).to_have_count(1)
    context.close()
