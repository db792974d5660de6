"""The mirror, run and policy pages (SPEC §5, §6, §10): list, create, run with live progress, runs'
pages and logs, the policy editor with its live dry run, assignments, explain, and who sees what.

The upstream is a real conda channel folder (``file://``, so the admin creates the mirrors). One
test drives Debian's Chromium through Playwright; the others post forms as a browser without
JavaScript would.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.functional.test_ui import CHROMIUM_ARGS, assert_html, csrf_of, new_user, sign_in
from tests.support.server import ADMIN_PASSWORD, LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [pytest.mark.functional, pytest.mark.one_config]

FINAL = ("completed", "failed", "stopped")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def upstream(testdata: Path) -> str:
    return (testdata / "channels" / "test-recipes").as_uri()


@pytest.fixture
def admin_web(live_server: LiveServer) -> httpx.Client:
    client = live_server.client()
    assert sign_in(client, "admin", ADMIN_PASSWORD).status_code == 303
    return client


def form_error(html: str) -> str:
    """The page's error message, unescaped and in lower case."""
    found = re.search(r'id="form-error">([^<]*)<', html)
    assert found, "no form error on the page"
    return unescape(found.group(1)).lower()


def create_mirror(client: httpx.Client, upstream: str, **fields: str) -> httpx.Response:
    data = {
        "name": unique("m"),
        "source": upstream,
        "mode": "passive",
        "subdirs": "noarch",
        "schedule": "",
        "concurrency": "4",
        **fields,
        "csrf_token": csrf_of(client.get("/mirrors").text),
    }
    return client.post("/mirrors", data=data)


def wait_run(live_server: LiveServer, mirror: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = live_server.admin.get(f"/api/v1/mirrors/{mirror}/runs").json()
        if runs and runs[0]["state"] in FINAL:
            return dict(runs[0])
        time.sleep(0.1)
    raise AssertionError(f"the run of {mirror} did not end within {timeout}s")


def run_now(client: httpx.Client, mirror: str) -> httpx.Response:
    token = csrf_of(client.get(f"/mirrors/{mirror}").text)
    return client.post(f"/mirrors/{mirror}/run", data={"csrf_token": token})


# --- plain HTTP ------------------------------------------------------------------------------


def test_create_run_and_follow_a_mirror_without_javascript(
    live_server: LiveServer, admin_web: httpx.Client, upstream: str
) -> None:
    name = unique("mirror")
    response = create_mirror(admin_web, upstream, name=name, token="s3cret-upstream-token")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/mirrors/{name}?ok=mirror-created"
    page = admin_web.get(f"/mirrors/{name}")
    assert_html(page, 200)
    assert 'id="token-state">set<' in page.text
    assert "s3cret-upstream-token" not in page.text
    assert "has not run yet" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # nothing live to follow

    assert run_now(admin_web, name).headers["location"] == f"/mirrors/{name}?ok=run-started"
    active = admin_web.get(f"/mirrors/{name}")
    if "badge-run-completed" not in active.text:  # still going: live parts, refreshed without JS
        assert "script-src 'self'" in active.headers["content-security-policy"]
        assert "/static/run-progress.js" in active.text
    run = wait_run(live_server, name)
    assert run["state"] == "completed", run
    page = admin_web.get(f"/mirrors/{name}")
    assert 'http-equiv="refresh"' not in page.text
    assert re.search(r'data-count="kept">\d+<', page.text)
    assert f'href="/mirrors/{name}/runs/{run["id"]}"' in page.text
    run_page = admin_web.get(f"/mirrors/{name}/runs/{run['id']}")
    assert_html(run_page, 200)
    assert "upstream records" in run_page.text  # the log
    assert 'id="run-state">completed<' in run_page.text
    listing = admin_web.get("/mirrors")
    assert name in listing.text and "badge-run-completed" in listing.text
    assert_html(admin_web.get(f"/mirrors/{name}/runs/999999999"), 404)
    assert_html(admin_web.get(f"/mirrors/{name}/runs/abc"), 404)
    channel = admin_web.get(f"/channels/{name}")
    assert f'href="/mirrors/{name}"' in channel.text


def test_mirror_form_errors_keep_the_input(admin_web: httpx.Client, upstream: str) -> None:
    name = unique("bad")
    response = create_mirror(admin_web, upstream, name=name, schedule="every day at noon")
    assert_html(response, 400)
    assert "schedule" in form_error(response.text)
    assert "cron" in form_error(response.text)
    assert 'value="every day at noon"' in response.text
    assert f'value="{name}"' in response.text
    assert_html(admin_web.get(f"/mirrors/{name}"), 404)
    response = create_mirror(admin_web, upstream, concurrency="lots")
    assert_html(response, 400)
    assert "concurrency" in form_error(response.text)


def test_run_now_twice_and_stop_show_messages(
    live_server: LiveServer, admin_web: httpx.Client, upstream: str
) -> None:
    name = unique("twice")
    assert create_mirror(admin_web, upstream, name=name).status_code == 303
    token = csrf_of(admin_web.get("/mirrors").text)
    first = admin_web.post(f"/mirrors/{name}/run", data={"csrf_token": token, "back": "list"})
    assert first.headers["location"] == "/mirrors?ok=run-started"
    second = admin_web.post(f"/mirrors/{name}/run", data={"csrf_token": token, "back": "list"})
    if second.status_code != 303:  # the first was still pending or running: a clear refusal
        assert_html(second, 409)
        assert "already has" in form_error(second.text)
    run = wait_run(live_server, name)
    stop = admin_web.post(
        f"/mirrors/{name}/runs/{run['id']}/stop", data={"csrf_token": token, "back": "run"}
    )
    assert_html(stop, 409)
    assert "already ended" in form_error(stop.text)
    forged = admin_web.post(f"/mirrors/{name}/run", data={"csrf_token": "forged" * 8})
    assert_html(forged, 403)


def test_policy_editor_preview_save_assign_and_explain(
    live_server: LiveServer, admin_web: httpx.Client, upstream: str
) -> None:
    mirror = unique("pol")
    assert create_mirror(admin_web, upstream, name=mirror).status_code == 303
    assert run_now(admin_web, mirror).status_code == 303
    wait_run(live_server, mirror)
    policy = unique("no-python")
    token = csrf_of(admin_web.get("/policies/new").text)
    base = {"name": policy, "csrf_token": token, "preview_channel": mirror}

    bad = admin_web.post("/policies/new", data={**base, "exclude_specs": "python\nnumpy >>=1"})
    assert_html(bad, 400)
    assert "exclude these specs: invalid matchspec" in form_error(bad.text)
    assert "python\nnumpy &gt;&gt;=1</textarea>" in bad.text
    assert live_server.admin.get(f"/api/v1/policies/{policy}").status_code == 404

    preview = admin_web.post(
        "/policies/new", data={**base, "exclude_specs": "python", "action": "preview"}
    )
    assert_html(preview, 200)
    assert '<strong data-total="excluded">1</strong>' in preview.text
    assert f"{policy}: exclude_specs" in preview.text

    saved = admin_web.post("/policies/new", data={**base, "exclude_specs": "python"})
    assert saved.headers["location"] == f"/policies/{policy}?ok=policy-created"
    editor = admin_web.get(f"/policies/{policy}")
    assert "python</textarea>" in editor.text
    assert "/static/policy-preview.js" in editor.text
    assert 'name="csrf-token"' in editor.text
    assigned = admin_web.post(
        f"/policies/{policy}/assign", data={"target": f"channel:{mirror}", "csrf_token": token}
    )
    assert assigned.headers["location"] == f"/policies/{policy}?ok=policy-assigned"
    listing = admin_web.get("/policies")
    assert f"channel {mirror}" in listing.text and "exclude python" in listing.text

    assert run_now(admin_web, mirror).status_code == 303
    run = wait_run(live_server, mirror)
    assert run["counts"]["excluded"] == 1, run  # type: ignore[index]
    page = admin_web.get(f"/mirrors/{mirror}", params={"spec": "python", "subdir": "noarch"})
    assert policy in page.text
    assert "python-3.99.99-0.conda" in page.text
    assert "exclude_specs" in page.text
    assert 'id="channel-policies"' in page.text
    bad_spec = admin_web.get(f"/mirrors/{mirror}", params={"spec": "numpy >>=1"})
    assert_html(bad_spec, 200)
    assert 'id="explain-error"' in bad_spec.text

    removed = admin_web.post(
        f"/policies/{policy}/unassign", data={"target": f"channel:{mirror}", "csrf_token": token}
    )
    assert removed.status_code == 303
    kept = admin_web.post(f"/policies/{policy}/delete", data={"csrf_token": token})
    assert_html(kept, 400)
    gone = admin_web.post(
        f"/policies/{policy}/delete", data={"csrf_token": token, "confirm": "yes"}
    )
    assert gone.headers["location"] == "/policies?ok=policy-deleted"


def test_reader_sees_no_run_or_edit_buttons(
    live_server: LiveServer, admin_web: httpx.Client, upstream: str
) -> None:
    mirror = unique("ro")
    assert create_mirror(admin_web, upstream, name=mirror).status_code == 303
    reader = live_server.client()
    assert sign_in(reader, *new_user(live_server)).status_code == 303
    page = reader.get(f"/mirrors/{mirror}")
    assert_html(page, 200)
    for control in ('id="run-now"', 'id="mirror-settings"', 'id="delete-form"'):
        assert control not in page.text, control
    assert 'id="mirror-facts"' in page.text
    listing = reader.get("/mirrors")
    assert mirror in listing.text
    assert f'action="/mirrors/{mirror}/run"' not in listing.text
    token = csrf_of(listing.text)
    refused = reader.post(f"/mirrors/{mirror}/run", data={"csrf_token": token})
    assert_html(refused, 403)
    assert_html(reader.get("/policies"), 403)
    assert 'id="nav-policies"' not in listing.text
    anonymous = live_server.client().get(f"/mirrors/{mirror}")
    assert_html(anonymous, 200)  # a public channel's mirror: anyone reads it
    assert 'id="run-now"' not in anonymous.text
    deleted = admin_web.post(
        f"/mirrors/{mirror}/delete",
        data={"csrf_token": csrf_of(admin_web.get("/mirrors").text), "confirm": "yes"},
    )
    assert deleted.headers["location"] == "/mirrors?ok=mirror-deleted"


# --- a real browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = os.environ.get("STOCKADE_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(f"Chromium not found at {executable} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _sign_in(page: Page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("form.stack button[type=submit]")
    expect(page.locator(".who .user")).to_have_text("admin")


def _run_in_browser(page: Page) -> None:
    from playwright.sync_api import expect

    page.click("#run-now button")
    expect(page.locator("#notice")).to_contain_text("queued")
    expect(page.locator("#run-state")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#run-now")).to_be_visible()


@pytest.mark.browser
def test_mirrors_and_policies_in_chromium(
    live_server: LiveServer, chromium: object, upstream: str
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(15_000)
    refused: list[str] = []
    page.on("console", lambda msg: refused.append(msg.text) if "Refused" in msg.text else None)
    _sign_in(page, live_server.url)
    name = unique("live")

    page.click("#nav-mirrors")
    page.fill("#name", name)
    page.fill("#source", upstream)
    page.fill("#subdirs", "noarch")
    page.fill("#schedule", "")
    page.click("#create-mirror button[type=submit]")
    expect(page.locator("h1")).to_contain_text(name)
    expect(page.locator("#token-state")).to_have_text("not set")
    _run_in_browser(page)  # the page follows the run through the API, without reloading
    expect(page.locator("#run-counts [data-count=upstream]")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#run-counts [data-count=excluded]")).to_have_text("0")
    expect(page.locator("#run-log")).to_contain_text("upstream records")
    page.click("#run-link")
    expect(page.locator("h1")).to_contain_text("Run")
    expect(page.locator("#run-log")).to_contain_text("kept")

    page.goto(f"{live_server.url}/policies")
    page.click("#new-policy")
    policy = unique("nopy")
    page.fill("#name", policy)
    page.select_option("#preview_channel", name)
    excluded = page.locator("#preview [data-total=excluded]")
    expect(excluded).to_have_text("0")
    page.fill("#exclude_specs", "python")
    expect(excluded).to_have_text("1")
    expect(page.locator("#preview")).to_contain_text(f"{policy}: exclude_specs")
    page.fill("#exclude_specs", "python\nnumpy >>=1")
    expect(page.locator("#preview-status")).to_contain_text("exclude_specs")
    page.click("#save-policy")
    expect(page.locator("#form-error")).to_contain_text("Exclude these specs: invalid MatchSpec")
    expect(page.locator("#exclude_specs")).to_have_value("python\nnumpy >>=1")
    page.fill("#exclude_specs", "python")
    page.click("#save-policy")
    expect(page.locator("#notice")).to_contain_text("policy was created")
    page.select_option("#assign-target", f"channel:{name}")
    page.click("#assign-form button")
    expect(page.locator("#assignment-list")).to_contain_text(name)

    page.goto(f"{live_server.url}/mirrors/{name}")
    expect(page.locator("#channel-policies")).to_contain_text(policy)
    _run_in_browser(page)
    expect(page.locator("#run-counts [data-count=excluded]")).to_have_text("1")
    page.reload()
    expect(page.locator("#exclusion-list")).to_contain_text("python-3.99.99-0.conda")
    page.fill("#explain-form input[name=spec]", "python")
    page.click("#explain-form button")
    expect(page.locator("#explain-results")).to_contain_text("excluded")
    expect(page.locator("#explain-results")).to_contain_text(policy)
    page.screenshot(path="/tmp/ui-mirror.png", full_page=True)
    assert not refused, refused  # nothing blocked by the Content-Security-Policy
    page.close()
