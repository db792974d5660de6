"""Issue 12 item 15 and its proof: every UI page works at phone width and at desktop width.

One server (SQLite) with something on every page (a channel of real packages from ``tests/data``
with a real OSV advisory against ``flask 0.11.1``, a mirror and its run, a policy, a group, a role,
a service account, an environment report), one Chromium, two viewports. On every page (read from
the route table, as the offline test does), signed in as the admin, and on the pages an anonymous
visitor sees: the page does not scroll sideways (wide tables scroll inside their own box), the
header's links and buttons are inside the screen, no request fails, the console stays clean, and
nothing is fetched from another host (every such request is aborted and fails the test: issue 12,
"everything works with no internet"). At desktop width every page, and the page a refused form
draws, also passes the axe-core accessibility check (issue 17, ``tests/support/axe.py``). The
same server and browser then go through the core flows with JavaScript off, at phone width.

A screenshot of each page at each width is kept in ``$STOCKADE_TEST_ARTIFACTS_DIR/responsive``
(``make test`` sets it to ``test-artifacts/`` of the run), else in a pytest temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import own_server
from tests.functional.test_cli_quarantine import hold
from tests.functional.test_offline_assets import admin_web, filled, things, ui_page_paths
from tests.functional.test_ui import browser
from tests.support.axe import axe_failures
from tests.support.cves import osv_folder, sync_osv_folder, unique
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.browser]
# The Chromium fixture of test_ui; the offline test's server-side fixtures, on this module's server.
__all__ = ["admin_web", "browser", "things"]

VIEWPORTS = {"phone": (390, 844), "desktop": (1280, 900)}
FLASK = "flask-0.11.1-py_0.tar.bz2"
ADVISORY = "PYSEC-2018-66"  # flask: fixed in 0.12.3
ANONYMOUS_PAGES = ("/", "/login", "/search?q=dep", "/channels/{channel}", "/reports/env")

# Elements sticking out on the right of the screen (outside any box that scrolls on its own):
# what makes the page scroll sideways, named for the failure message.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const x = getComputedStyle(p).overflowX;
      if (x === "auto" || x === "scroll" || x === "hidden") return true;
    }
    return false;
  };
  const name = (el) => {
    const cls = typeof el.className === "string" ? el.className.trim().split(/\\s+/) : [];
    return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + cls.map((c) => "." + c).join("");
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > width + 1 && !scrolls(el)) out.push(name(el) + " right=" + Math.round(r.right));
  }
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, out: out.slice(0, 8)};
}"""

# Header controls (links, buttons, the search box) outside the screen: a header cut off.
HEADER_JS = """() => Array.from(document.querySelectorAll(".top a, .top button, .top input"))
  .filter((el) => { const r = el.getBoundingClientRect();
                    return r.width && (r.left < 0 || r.right > document.documentElement.clientWidth); })
  .map((el) => el.textContent.trim() || el.getAttribute("aria-label"))"""


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """This module's own server (SQLite: the layout does not depend on the database), which the
    offline test's fixtures (``things``, ``admin_web``) use here too."""
    with own_server("sqlite", tmp_path_factory, "responsive") as live:
        yield live


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (the run's artifacts folder if it names one)."""
    root = os.environ.get("STOCKADE_TEST_ARTIFACTS_DIR")
    folder = Path(root) / "responsive" if root else tmp_path_factory.mktemp("responsive")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def world(
    live_server: LiveServer,
    admin_web: httpx.Client,
    things: dict[str, str],
    testdata: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The offline test's things (one of each, whatever pages it learns about), plus flask 0.11.1
    in its channel with the real OSV advisories against it, and a policy using most criteria,
    assigned to the mirror: the pages show what they show in use."""
    admin, channel = live_server.admin, things["/channels"]
    assert live_server.upload(channel, testdata / "packages" / FLASK).is_success
    policy = unique("policy")
    definition = {
        "platforms": ["linux-64", "osx-arm64"],
        "licenses": ["gpl3", "agpl"],
        "exclude_specs": ["python <3.9"],
        "cve_score": {"threshold": 7.5},
        "keep_latest": 3,
    }
    body = {"name": policy, "description": "what production may use", "definition": definition}
    assert admin.post("/api/v1/policies", json=body).is_success
    mirror = things["/mirrors"]
    assigned = admin.post(f"/api/v1/policies/{policy}/assignments", json={"mirror": mirror})
    assert assigned.status_code == 201, assigned.text
    sync_osv_folder(live_server, osv_folder(tmp_path_factory.mktemp("responsive"), "flask"))
    live_server.wait_published(channel)
    extra = {"/policies": policy, "package": "flask", "vuln_id": ADVISORY}
    if "artifact_id" not in things:  # the quarantine item page: something held by the scanners
        held = hold(live_server, tmp_path_factory.mktemp("held"))[2]
        extra["artifact_id"] = str(held["id"])
    return {**things, **extra}


def explicit_list(server: LiveServer, channel: str, testdata: Path) -> bytes:
    """A ``conda list --explicit`` file holding flask 0.11.1 of ``channel``."""
    md5 = hashlib.md5((testdata / "packages" / FLASK).read_bytes()).hexdigest()
    url = f"{server.url}/conda/{channel}/noarch/{FLASK}#{md5}"
    return f"# platform: linux-64\n@EXPLICIT\n{url}\n".encode()


class Visit:
    """One browser context at one viewport: visits pages, checks them, keeps their screenshots."""

    def __init__(self, browser: Any, server: LiveServer, viewport: str, shots: Path) -> None:
        width, height = VIEWPORTS[viewport]
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.route("**/*", self._only_here)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.server, self.viewport, self.shots = server, viewport, shots
        self.accessibility = viewport == "desktop"  # axe runs once per page, at desktop width
        self.checked = 0
        self.problems: list[str] = []  # of the page being checked
        self.failures: list[str] = []  # of every page checked: all are listed at the end
        self.expected_error: int | None = None  # the page itself answers this: its console says so
        self.page.on("requestfailed", self._failed)
        self.page.on("console", self._console)

    def _only_here(self, route: Any) -> None:
        """Requests to another host are aborted and named: a page needs nothing from outside."""
        if route.request.url.startswith(self.server.url):
            route.continue_()
        else:
            self.problems.append(f"fetched from another host: {route.request.url}")
            route.abort()

    def _failed(self, request: Any) -> None:
        if "ERR_ABORTED" not in (request.failure or ""):  # cancelled by the next navigation
            self.problems.append(f"failed {request.url}: {request.failure}")

    def _console(self, message: Any) -> None:
        expected = self.expected_error is not None and f" {self.expected_error} " in message.text
        if message.type == "error" and not expected:
            self.problems.append(f"console: {message.text}")

    def sign_in(self) -> None:
        self.page.goto(f"{self.server.url}/login")
        self.page.fill("#username", "admin")
        self.page.fill("#password", ADMIN_PASSWORD)
        self.page.click("form.stack button[type=submit]")
        self.page.wait_for_selector(".who .user")

    def open(self, path: str, label: str, status: int = 200) -> None:
        self.expected_error = status if status >= 400 else None
        response = self.page.goto(f"{self.server.url}{path}", wait_until="load")
        assert response is not None and response.status == status, (path, response)
        if self.page.locator("script[src]").count():  # what the scripts fetch is drawn too
            self.page.wait_for_load_state("networkidle")
        self.check(label)
        self.expected_error = None

    def check(self, label: str) -> None:
        page = self.page
        name = f"{self.viewport}-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-') or 'home'}"
        page.screenshot(path=self.shots / f"{name}.png", full_page=True)
        where = f"{label} at {self.viewport} width"
        layout = page.evaluate(OVERFLOW_JS)
        if layout["scroll"] > layout["inner"]:
            self.failures.append(f"{where} scrolls sideways: {layout}")
        if cut := page.evaluate(HEADER_JS):
            self.failures.append(f"{where}: header cut off at {cut}")
        if self.accessibility:
            self.failures.extend(axe_failures(page, label))
        self.failures.extend(f"{where}: {p}" for p in self.problems)
        self.problems.clear()
        self.checked += 1


def show_a_report(visit: Visit, channel: str, testdata: Path) -> None:
    """Report on flask 0.11.1 of ``channel`` through the form and check the page it answers."""
    page = visit.page
    page.goto(f"{visit.server.url}/reports/env")
    explicit = explicit_list(visit.server, channel, testdata)
    page.set_input_files(
        "#report-file",
        files=[{"name": "explicit.txt", "mimeType": "text/plain", "buffer": explicit}],
    )
    page.check(f"input[name=channel][value='{channel}']")
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#report")
    assert page.locator("#findings tr[data-id]").count() >= 1
    visit.check("/reports/env result")


def check_policy_fields(visit: Visit) -> None:
    """The policy form's text fields are wide enough to type in (the platforms one was tiny)."""
    visit.page.goto(f"{visit.server.url}/policies/new")
    widths = visit.page.evaluate(
        "() => ['#platforms', '#description', '#cve_threshold'].map("
        "(s) => document.querySelector(s).getBoundingClientRect().width)"
    )
    if min(widths[:2]) < 250 or widths[2] < 60:
        visit.failures.append(f"policy form fields too small at {visit.viewport} width: {widths}")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_every_page_fits_the_screen(
    live_server: LiveServer,
    world: dict[str, str],
    browser: object,
    shots: Path,
    testdata: Path,
    viewport: str,
) -> None:
    anonymous = Visit(browser, live_server, viewport, shots)
    for path in ANONYMOUS_PAGES:
        anonymous.open(path.format(channel=world["/channels"]), f"anonymous {path}")
    anonymous.context.close()

    visit = Visit(browser, live_server, viewport, shots)
    visit.sign_in()
    routes = ui_page_paths()
    assert len(routes) >= 25, routes
    for route in routes:  # labelled by the route: /channels/{name:path}/members
        visit.open(filled(route, world), route)
    visit.open("/channels/no-such-channel", "not found", status=404)
    show_a_report(visit, world["/channels"], testdata)
    check_policy_fields(visit)
    refused_form(visit)
    api_docs(visit)
    visit.context.close()
    failures = anonymous.failures + visit.failures
    assert visit.checked > len(routes)
    assert not failures, "\n".join(failures)


def refused_form(visit: Visit) -> None:
    """A form sent back with its error (the alert, the fields as typed) is checked too."""
    page = visit.page
    page.goto(f"{visit.server.url}/admin/webhooks")
    page.fill("#url", "https://user:pw@hooks.example.invalid/x")
    visit.expected_error = 400  # the form comes back with its error, as a 400
    page.click("#create-webhook button[type=submit]")
    page.wait_for_selector("#form-error")
    visit.check("/admin/webhooks (refused form)")
    visit.expected_error = None


def api_docs(visit: Visit) -> None:
    """The API docs (Swagger UI) draw with nothing from another host."""
    from playwright.sync_api import expect

    page = visit.page
    page.goto(f"{visit.server.url}/api/docs", wait_until="networkidle")
    title = page.locator(".swagger-ui .information-container .title")
    expect(title).to_contain_text("Stockade", timeout=30_000)  # a 1.5 MB script, on a busy CI
    expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
    visit.failures.extend(f"/api/docs: {p}" for p in visit.problems)
    visit.problems.clear()


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
