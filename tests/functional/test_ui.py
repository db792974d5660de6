"""The web UI: sign-in, channel and package pages, search, CSRF and access rules.

One test drives Debian's Chromium through Playwright; the others speak plain HTTP.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = pytest.mark.functional

PACKAGES = (
    "dependency-1.0-0.conda",
    "dependency-2.0-0.conda",
    "dependent-1.0-0.conda",
    "dependent-2.0-0.conda",
    "run_constrained-1.0-0.conda",
    "post_link-b-1.0-0.conda",
)
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class UiChannel:
    name: str
    files: dict[str, Path]


@pytest.fixture(scope="module")
def ui_channel(live_server: LiveServer, testdata: Path) -> UiChannel:
    name = live_server.new_channel(prefix="ui")
    files = {f: testdata / "channels" / "test-recipes" / "noarch" / f for f in PACKAGES}
    response = live_server.upload(name, *files.values())
    assert response.status_code == 201, response.text
    live_server.wait_published(name)
    return UiChannel(name, files)


def new_user(live_server: LiveServer) -> tuple[str, str]:
    username, password = f"ui-{uuid.uuid4().hex[:8]}", "a-long-password-1"
    response = live_server.admin.post(
        "/api/v1/users", json={"username": username, "password": password}
    )
    assert response.status_code == 201, response.text
    return username, password


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no csrf_token field in the page"
    return found.group(1)


def sign_in(client: httpx.Client, username: str, password: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
    )


def assert_html(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text


# --- plain HTTP ------------------------------------------------------------------------------


def test_wrong_password_shows_the_form_again(live_server: LiveServer) -> None:
    username, _ = new_user(live_server)
    client = live_server.client()
    response = sign_in(client, username, "not-the-password")
    assert_html(response, 401)
    assert "wrong username or password" in response.text.lower()
    assert f'value="{username}"' in response.text
    assert "stockade_session" not in client.cookies


def test_sign_in_and_out_with_csrf(live_server: LiveServer) -> None:
    username, password = new_user(live_server)
    client = live_server.client()
    response = sign_in(client, username, password)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    set_cookie = response.headers["set-cookie"].lower()
    assert "stockade_session=" in set_cookie
    assert "httponly" in set_cookie
    assert "samesite=lax" in set_cookie
    home = client.get("/")
    assert username in home.text
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged" * 6}).status_code == 403
    response = client.post("/logout", data={"csrf_token": csrf_of(home.text)})
    assert response.status_code == 303
    assert "Sign in" in client.get("/").text


def test_login_without_csrf_is_forbidden(live_server: LiveServer) -> None:
    client = live_server.client()
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert_html(response, 403)
    assert "stockade_session" not in client.cookies
    client.get("/login")  # the cookie is set, but the field is still missing
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert_html(response, 403)


def test_private_channel_redirects_anonymous_to_sign_in(live_server: LiveServer) -> None:
    channel = live_server.new_channel("private", prefix="uipriv")
    response = live_server.client().get(f"/channels/{channel}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=%2Fchannels%2F{channel}"


def test_sign_in_returns_to_the_page_asked_for(live_server: LiveServer) -> None:
    channel = live_server.new_channel("private", prefix="uipriv")
    client = live_server.client()
    location = client.get(f"/channels/{channel}").headers["location"]
    page = client.get(location)
    assert_html(page, 200)
    response = client.post(
        "/login",
        data={
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": f"/channels/{channel}",
        },
    )
    assert response.headers["location"] == f"/channels/{channel}"
    assert_html(client.get(f"/channels/{channel}"), 200)
    assert client.get("/login?next=//evil.example").headers["location"] == "/"


def test_signed_in_without_access_gets_not_found(live_server: LiveServer) -> None:
    channel = live_server.new_channel("private", prefix="uipriv")
    client = live_server.client()
    assert sign_in(client, *new_user(live_server)).status_code == 303
    response = client.get(f"/channels/{channel}")
    assert_html(response, 404)
    assert channel not in client.get("/").text
    assert_html(client.get(f"/channels/{channel}/packages/dependent"), 404)


def test_unknown_channel_and_package_are_html_404(
    live_server: LiveServer, ui_channel: UiChannel
) -> None:
    client = live_server.client()
    response = client.get(f"/channels/{ui_channel.name}/packages/no-such-package")
    assert_html(response, 404)
    assert "no-such-package" in response.text
    assert_html(client.get("/channels/no-such-channel"), 404)
    assert_html(client.get(f"/channels/{ui_channel.name}/packages/dependent?build=x/y"), 404)
    assert client.get(f"/channels/{ui_channel.name}?page=abc&q=%00").status_code == 400  # URL guard
    assert_html(client.get(f"/channels/{ui_channel.name}?page=abc"), 200)
    assert client.get(f"/channels/{ui_channel.name}/packages/%00").status_code == 400


def test_channel_page_filters_package_names(live_server: LiveServer, ui_channel: UiChannel) -> None:
    page = live_server.client().get(f"/channels/{ui_channel.name}", params={"q": "post"})
    assert_html(page, 200)
    names = re.findall(r'/packages/([\w.-]+)">', page.text)
    assert names == ["post_link-b"]
    assert f"/conda/{ui_channel.name} &lt;package&gt;" in page.text


def test_search_ranks_exact_then_prefix_then_substring(
    live_server: LiveServer, ui_channel: UiChannel
) -> None:
    response = live_server.client().get("/search", params={"q": "dependent"})
    assert_html(response, 200)
    names = re.findall(r'/packages/([\w.-]+)">', response.text)
    assert names[0] == "dependent"
    response = live_server.client().get("/search", params={"q": "pend"})
    names = re.findall(r'/packages/([\w.-]+)">', response.text)
    assert {"dependent", "dependency"} <= set(names)


def test_pages_escape_and_stay_out_of_openapi(live_server: LiveServer) -> None:
    channel = live_server.new_channel(prefix="uiesc")
    payload = "<script>alert(1)</script>"
    response = live_server.admin.patch(f"/api/v1/channels/{channel}", json={"description": payload})
    assert response.status_code == 200
    page = live_server.client().get(f"/channels/{channel}")
    assert payload not in page.text
    assert "&lt;script&gt;" in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    paths = live_server.client().get("/api/v1/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith("/api/")]


# --- a real browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = os.environ.get("STOCKADE_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(f"Chromium not found at {executable} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.browser
def test_browse_in_chromium(
    live_server: LiveServer, ui_channel: UiChannel, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("form.stack button[type=submit]")
    expect(page.locator(".who .user")).to_have_text("admin")

    page.click(f"a[href='/channels/{ui_channel.name}']")
    expect(page.locator("h1")).to_contain_text(ui_channel.name)
    expect(page.locator("#packages")).to_contain_text("dependent")
    expect(page.locator("#install-line")).to_have_text(
        f"conda install -c {live_server.url}/conda/{ui_channel.name} <package>"
    )

    page.click("#packages a:text-is('dependent')")
    expect(page.locator("h1")).to_contain_text("dependent")
    expect(page.locator("#builds")).to_contain_text("2.0")
    expect(page.locator("#builds")).to_contain_text("1.0")
    expect(page.locator("#depends")).to_contain_text("dependency")
    sha256 = hashlib.sha256(ui_channel.files["dependent-2.0-0.conda"].read_bytes()).hexdigest()
    expect(page.locator("#sha256")).to_have_text(sha256)
    expect(page.locator("#install-line")).to_contain_text(f"/conda/{ui_channel.name} dependent")
    page.screenshot(path="/tmp/ui-package.png", full_page=True)

    page.fill("header input[name=q]", "dependen")
    page.press("header input[name=q]", "Enter")
    expect(page.locator("#results")).to_contain_text("dependency")
    page.click("#results a:text-is('dependency')")
    expect(page.locator("h1")).to_contain_text("dependency")
    page.close()
