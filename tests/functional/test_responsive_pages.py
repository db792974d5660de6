"""Issue 12 item 15 and its proof: every UI page works at phone width and at desktop width.

One server (SQLite) with something on every page (a channel of real packages from ``tests/data``
with a real OSV advisory against ``flask 0.11.1``, a mirror and its run, a policy, a group, a role,
a service account, an environment report), one Chromium, two viewports. On every page (read from
the route table, as the offline test does), signed in as the admin, and on the pages an anonymous
visitor sees: the page does not scroll sideways (wide tables scroll inside their own box), the
header's links and buttons are inside the screen, no request fails, the console stays clean.

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
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.server, self.viewport, self.shots = server, viewport, shots
        self.problems: list[str] = []  # of the page being checked
        self.failures: list[str] = []  # of every page checked: all are listed at the end
        self.expect_404 = False  # the page itself answers 404: its console says so
        self.page.on("requestfailed", self._failed)
        self.page.on("console", self._console)

    def _failed(self, request: Any) -> None:
        if "ERR_ABORTED" not in (request.failure or ""):  # cancelled by the next navigation
            self.problems.append(f"failed {request.url}: {request.failure}")

    def _console(self, message: Any) -> None:
        if message.type == "error" and not (self.expect_404 and "404" in message.text):
            self.problems.append(f"console: {message.text}")

    def sign_in(self) -> None:
        self.page.goto(f"{self.server.url}/login")
        self.page.fill("#username", "admin")
        self.page.fill("#password", ADMIN_PASSWORD)
        self.page.click("form.stack button[type=submit]")
        self.page.wait_for_selector(".who .user")

    def open(self, path: str, label: str, status: int = 200) -> None:
        self.expect_404 = status == 404
        response = self.page.goto(f"{self.server.url}{path}", wait_until="load")
        assert response is not None and response.status == status, (path, response)
        if self.page.locator("script[src]").count():  # what the scripts fetch is drawn too
            self.page.wait_for_load_state("networkidle")
        self.check(label)
        self.expect_404 = False

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
        self.failures.extend(f"{where}: {p}" for p in self.problems)
        self.problems.clear()


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
    visit.context.close()
    failures = anonymous.failures + visit.failures
    assert not failures, "\n".join(failures)
