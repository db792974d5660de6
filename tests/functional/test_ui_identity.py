"""The identity, access and audit pages: account and tokens, users, groups, roles, members, audit.

One test drives Debian's Chromium through Playwright from start to end; the others speak plain
HTTP (forms posted as a browser without JavaScript would post them).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import pytest

from tests.functional.test_ui import CHROMIUM_ARGS, assert_html, csrf_of, new_user, sign_in
from tests.support.eventually import answers
from tests.support.server import ADMIN_PASSWORD, LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.functional

SECRET_RE = re.compile(r"stk[-_][A-Za-z0-9_-]{20,}")
ADMIN_PAGES = (
    "/admin",
    "/admin/users",
    "/admin/users/admin",
    "/admin/service-accounts",
    "/admin/groups",
    "/admin/roles",
    "/admin/roles/admin",
    "/admin/audit",
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def web_client(live_server: LiveServer, username: str, password: str) -> httpx.Client:
    """A browser-like client: signed in with a session cookie, no bearer token."""
    client = live_server.client()
    assert sign_in(client, username, password).status_code == 303
    return client


@pytest.fixture
def admin_web(live_server: LiveServer) -> httpx.Client:
    return web_client(live_server, "admin", ADMIN_PASSWORD)


def form_token(client: httpx.Client, page: str = "/account") -> str:
    return csrf_of(client.get(page).text)


def form_error(html: str) -> str:
    found = re.search(r'id="form-error">([^<]*)<', html)
    assert found, "no form error on the page"
    return found.group(1)


# --- who may see what ----------------------------------------------------------------------------


def test_anonymous_is_sent_to_sign_in(live_server: LiveServer) -> None:
    channel = live_server.new_channel(prefix="uiid")
    client = live_server.client()
    for path in (*ADMIN_PAGES, "/account", f"/channels/{channel}/members"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={quote(path, safe='')}"
    name = unique("anon")
    response = client.post("/admin/users", data={"username": name, "password": "x" * 12})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    assert live_server.admin.get(f"/api/v1/users/{name}").status_code == 404


def test_signed_in_without_permission_gets_403(live_server: LiveServer) -> None:
    client = web_client(live_server, *new_user(live_server))
    for path in ADMIN_PAGES:
        assert_html(client.get(path), 403)
    home = client.get("/")
    assert 'href="/admin"' not in home.text
    assert 'href="/account"' in home.text
    assert_html(client.get("/account"), 200)
    name = unique("nope")
    data = {"username": name, "password": "x" * 12, "csrf_token": csrf_of(home.text)}
    assert_html(client.post("/admin/users", data=data), 403)
    assert live_server.admin.get(f"/api/v1/users/{name}").status_code == 404


def test_missing_or_forged_csrf_changes_nothing(
    live_server: LiveServer, admin_web: httpx.Client
) -> None:
    name = unique("csrf")
    channel = live_server.new_channel(prefix="uiid")
    for forged in ({}, {"csrf_token": "forged" * 8}):
        response = admin_web.post(
            "/admin/users", data={"username": name, "password": "x" * 12, **forged}
        )
        assert_html(response, 403)
        assert "security token" in response.text
        assert_html(admin_web.post("/account/tokens", data={"token_name": name, **forged}), 403)
        assert_html(admin_web.post("/admin/groups", data={"name": name, **forged}), 403)
        response = admin_web.post(
            f"/channels/{channel}/members/privacy", data={"privacy": "private", **forged}
        )
        assert_html(response, 403)
    assert live_server.admin.get(f"/api/v1/users/{name}").status_code == 404
    assert live_server.admin.get(f"/api/v1/groups/{name}").status_code == 404
    tokens = live_server.admin.get("/api/v1/tokens").json()
    assert name not in {t["name"] for t in tokens}
    members = live_server.admin.get(f"/api/v1/channels/{channel}/members").json()
    assert members["privacy"] == "public"


def test_a_token_from_another_client_is_no_csrf_token(live_server: LiveServer) -> None:
    """A bearer token is not a session: forms posted with it are refused."""
    bearer = live_server.admin
    token = form_token(web_client(live_server, "admin", ADMIN_PASSWORD))
    name = unique("bearer")
    response = bearer.post("/admin/groups", data={"name": name, "csrf_token": token})
    assert_html(response, 403)
    assert live_server.admin.get(f"/api/v1/groups/{name}").status_code == 404


# --- forms ----------------------------------------------------------------------------------------


def test_refused_changes_show_the_form_again(admin_web: httpx.Client) -> None:
    token = form_token(admin_web)
    name = unique("dup")
    data = {"username": name, "password": "a-long-password", "csrf_token": token}
    assert admin_web.post("/admin/users", data=data).status_code == 303
    response = admin_web.post("/admin/users", data={**data, "display_name": "Again"})
    assert_html(response, 409)
    assert "already exists" in form_error(response.text)
    assert 'value="Again"' in response.text  # what was typed is kept
    response = admin_web.post(
        "/admin/roles",
        data={"name": unique("role"), "levels": ["audit:read", "nope:read"], "csrf_token": token},
    )
    assert_html(response, 400)
    assert "unknown category" in form_error(response.text).lower()
    response = admin_web.post(
        "/account/tokens", data={"token_name": "t", "days": "100000", "csrf_token": token}
    )
    assert_html(response, 400)
    assert "between 1 and" in form_error(response.text)
    response = admin_web.post(
        "/account/tokens",
        data={"token_name": "t", "days": "5", "kind": "scope", "csrf_token": token},
    )
    assert_html(response, 400)
    assert "scope" in form_error(response.text)
    response = admin_web.post(
        "/account/password",
        data={
            "current_password": "not-it-at-all",
            "new_password": "another-password",
            "confirm_password": "another-password",
            "csrf_token": token,
        },
    )
    assert_html(response, 400)
    assert "current password is wrong" in form_error(response.text)
    response = admin_web.post(
        "/admin/users/admin/delete", data={"confirm": "yes", "csrf_token": token}
    )
    assert_html(response, 400)
    assert "your own account" in form_error(response.text)
    response = admin_web.post(f"/admin/users/{name}/delete", data={"csrf_token": token})
    assert_html(response, 400)
    assert "tick the box" in form_error(response.text).lower()


def test_password_change_needs_the_current_one(live_server: LiveServer) -> None:
    username, password = new_user(live_server)
    client = web_client(live_server, username, password)
    data = {
        "current_password": password,
        "new_password": "a-brand-new-password",
        "confirm_password": "a-brand-new-password",
        "csrf_token": form_token(client),
    }
    response = client.post("/account/password", data=data)
    assert response.status_code == 303
    assert response.headers["location"] == "/account?ok=password-changed"
    assert "password was changed" in client.get(response.headers["location"]).text
    assert sign_in(live_server.client(), username, password).status_code == 401
    assert sign_in(live_server.client(), username, "a-brand-new-password").status_code == 303


def test_token_secret_is_only_in_the_answer_to_the_form(live_server: LiveServer) -> None:
    username, password = new_user(live_server)
    client = web_client(live_server, username, password)
    channel = live_server.new_channel(prefix="uiid")
    data = {
        "token_name": "ci",
        "days": "7",
        "kind": "resource",
        "resources": f"{channel}:read\n",
        "csrf_token": form_token(client),
    }
    response = client.post("/account/tokens", data=data)
    assert_html(response, 201)
    secret = SECRET_RE.search(response.text)
    assert secret, "the new token is not on the page"
    assert secret.group(0) not in response.headers.get("location", "")
    page = client.get("/account")
    assert secret.group(0) not in page.text
    assert secret.group(0)[:8] in page.text  # its prefix, to recognise it
    whoami = live_server.client(secret.group(0)).get("/api/v1/whoami").json()
    assert whoami["username"] == username
    assert whoami["token_kind"] == "resource"
    token_id = re.search(r'action="/account/tokens/(\d+)/revoke"', page.text)
    assert token_id
    response = client.post(
        f"/account/tokens/{token_id.group(1)}/revoke", data={"csrf_token": csrf_of(page.text)}
    )
    assert response.headers["location"] == "/account?ok=token-revoked"
    assert live_server.client(secret.group(0)).get("/api/v1/whoami").status_code == 401


def test_service_account_gets_a_token_shown_once(
    live_server: LiveServer, admin_web: httpx.Client
) -> None:
    name = unique("ci")
    token = form_token(admin_web)
    response = admin_web.post(
        "/admin/service-accounts", data={"name": name, "description": "CI", "csrf_token": token}
    )
    assert response.headers["location"] == f"/admin/service-accounts/{name}?ok=service-created"
    response = admin_web.post(
        f"/admin/service-accounts/{name}/tokens",
        data={
            "token_name": "builder",
            "days": "3",
            "kind": "scope",
            "scopes": ["artifacts:read", "channels:read"],
            "csrf_token": token,
        },
    )
    assert_html(response, 201)
    found = SECRET_RE.search(response.text)
    assert found
    whoami = live_server.client(found.group(0)).get("/api/v1/whoami").json()
    assert (whoami["username"], whoami["kind"], whoami["token_kind"]) == (name, "service", "scope")
    page = admin_web.get(f"/admin/service-accounts/{name}")
    assert found.group(0) not in page.text
    listing = admin_web.get("/admin/service-accounts")
    assert name in listing.text
    assert_html(admin_web.get("/admin/service-accounts/admin"), 404)  # a person, not a service
    token_id = re.search(rf'action="/admin/service-accounts/{name}/tokens/(\d+)/revoke"', page.text)
    assert token_id
    admin_web.post(
        f"/admin/service-accounts/{name}/tokens/{token_id.group(1)}/revoke",
        data={"csrf_token": token},
    )
    assert live_server.client(found.group(0)).get("/api/v1/whoami").status_code == 401


def test_members_page_follows_channel_access(live_server: LiveServer) -> None:
    channel = live_server.new_channel("private", prefix="uiid")
    username, password = new_user(live_server)
    client = web_client(live_server, username, password)
    assert_html(client.get(f"/channels/{channel}/members"), 404)  # hidden, not forbidden
    grant = {"user": username, "level": "read"}
    assert live_server.admin.put(f"/api/v1/channels/{channel}/members", json=grant).is_success
    page = answers(lambda: client.get(f"/channels/{channel}/members"), 200)  # replicas: 1 s
    assert_html(page, 200)
    assert username in page.text
    assert "/members/grant" not in page.text  # readers see the grants, not the forms
    response = client.post(
        f"/channels/{channel}/members/grant",
        data={
            "holder_kind": "user",
            "holder": username,
            "level": "manage",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert_html(response, 403)
    members = live_server.admin.get(f"/api/v1/channels/{channel}/members").json()["members"]
    assert [m["level"] for m in members] == ["read"]
    package = client.get(f"/channels/{channel}/packages/members")  # a package, not this page
    assert_html(package, 404)
    assert f"{channel}/packages" not in package.text


def test_audit_filters_and_pages_back(admin_web: httpx.Client, live_server: LiveServer) -> None:
    prefix = unique("audit")
    for i in range(53):
        assert live_server.admin.post("/api/v1/groups", json={"name": f"{prefix}-{i}"}).is_success
    page = admin_web.get("/admin/audit", params={"type": "group.create"})
    assert_html(page, 200)
    first = [int(s) for s in re.findall(r'data-seq="(\d+)"', page.text)]
    assert len(first) == 50
    assert first == sorted(first, reverse=True)
    older = re.search(r'href="([^"]+)" id="older"', page.text)
    assert older
    second_page = admin_web.get(older.group(1).replace("&amp;", "&"))
    second = [int(s) for s in re.findall(r'data-seq="(\d+)"', second_page.text)]
    assert second
    assert max(second) < min(first)
    types = set(re.findall(r'class="event-type">([^<]+)<', second_page.text))
    assert types == {"group.create"}
    auth = admin_web.get("/admin/audit", params={"type": "auth."})
    assert set(re.findall(r'class="event-type">([^<]+)<', auth.text)) <= {
        "auth.login",
        "auth.failed",
        "auth.logout",
    }
    assert_html(admin_web.get("/admin/audit", params={"since": "last tuesday"}), 400)


# --- a real browser ----------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Story:
    """The names one browser test makes up: a user, their group, a role, a channel."""

    url: str
    username: str
    group: str
    role: str
    channel: str
    password: str = "alice-password-1"


def open_signed_in(browser: Browser, story: Story, name: str, password: str) -> Page:
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{story.url}/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("form.stack button[type=submit]")
    expect(page.locator(".who .user")).to_have_text(name)
    return page


def admin_creates_user_group_and_role(admin: Page, story: Story) -> None:
    from playwright.sync_api import expect

    admin.click(".who .admin-link")
    admin.click(".tabs a:text-is('Users')")
    admin.fill("#create-user #username", story.username)
    admin.fill("#create-user #password", story.password)
    admin.click("#create-user button[type=submit]")
    expect(admin.locator("#notice")).to_contain_text("user was created")
    expect(admin.locator("h1")).to_contain_text(story.username)

    admin.click(".tabs a:text-is('Groups')")
    admin.fill("#create-group #name", story.group)
    admin.click("#create-group button[type=submit]")
    expect(admin.locator("h1")).to_contain_text(story.group)
    admin.fill("#add-member #username", story.username)
    admin.click("#add-member button[type=submit]")
    expect(admin.locator("#group-members")).to_contain_text(story.username)

    admin.click(".tabs a:text-is('Roles')")
    admin.fill("#create-role #name", story.role)
    admin.select_option("#level-cves", "cves:read")
    admin.select_option("#level-artifacts", "artifacts:read")
    admin.click("#create-role button[type=submit]")
    expect(admin.locator("#role-permissions")).to_contain_text("cve:read")
    admin.select_option("#holder_kind", "group")
    admin.fill("#holder", story.group)
    admin.click("#assign button[type=submit]")
    expect(admin.locator("#role-holders")).to_contain_text(story.group)


def admin_shares_the_channel_with_the_group(admin: Page, story: Story) -> None:
    from playwright.sync_api import expect

    admin.goto(f"{story.url}/channels/{story.channel}")
    admin.click("#members-link")
    admin.select_option("#privacy-select", "private")
    admin.click("#privacy-form button[type=submit]")
    expect(admin.locator("#privacy")).to_have_text("private")
    admin.select_option("#grant-form select[name=holder_kind]", "group")
    admin.fill("#grant-form input[name=holder]", story.group)
    admin.select_option("#grant-form select[name=level]", "read")
    admin.click("#grant-form button[type=submit]")
    member = admin.locator(f"#members tr[data-member='group:{story.group}']")
    expect(member).to_contain_text("read")


def user_makes_and_revokes_a_token(live_server: LiveServer, user: Page, story: Story) -> None:
    from playwright.sync_api import expect

    user.click(".who .user")
    expect(user.locator("#my-groups")).to_contain_text(story.group)
    expect(user.locator("#my-roles")).to_contain_text(story.role)
    user.fill("#token_name", "laptop")
    user.fill("#days", "7")
    user.click("#token-form button[type=submit]")
    secret = user.locator("#new-token").inner_text().strip()
    assert SECRET_RE.fullmatch(secret), secret
    assert live_server.client(secret).get("/api/v1/whoami").json()["username"] == story.username
    user.screenshot(path="/tmp/ui-token.png", full_page=True)

    user.goto(f"{story.url}/account")  # the page again: the secret is gone for good
    expect(user.locator("#new-token")).to_have_count(0)
    assert secret not in user.content()
    row = user.locator("tr[data-token='laptop']")
    expect(row).to_contain_text(secret[:8])
    row.locator("button:text-is('Revoke')").click()
    expect(user.locator("#notice")).to_contain_text("revoked")
    expect(user.locator("tr[data-token='laptop']")).to_contain_text("revoked")
    assert live_server.client(secret).get("/api/v1/whoami").status_code == 401


def admin_reads_the_audit_log(admin: Page, story: Story) -> None:
    from playwright.sync_api import expect

    admin.click(".who .admin-link")
    admin.click(".tabs a:text-is('Audit log')")
    events = admin.locator("#events")
    for event_type in (
        "user.create",
        "group.create",
        "group.member.add",
        "role.create",
        "role.assign",
        "channel.update",
        "channel.grant",
        "token.create",
        "token.revoke",
    ):
        expect(events).to_contain_text(event_type)
    admin.fill("#audit-filter input[name=actor]", story.username)
    admin.click("#audit-filter button[type=submit]")
    expect(events).to_contain_text("token.revoke")
    expect(events).to_contain_text("auth.login")
    expect(events).not_to_contain_text("group.create")
    assert set(admin.locator("#events .actor").all_inner_texts()) == {story.username}
    admin.screenshot(path="/tmp/ui-audit.png", full_page=True)
    admin.click("#verify-form button[type=submit]")
    expect(admin.locator("#verify-result")).to_contain_text("ok")


@pytest.mark.browser
def test_identity_and_access_in_chromium(live_server: LiveServer, chromium: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    story = Story(
        url=live_server.url,
        username=unique("alice"),
        group=unique("team"),
        role=unique("readers"),
        channel=live_server.new_channel(prefix="uiid"),
    )
    admin = open_signed_in(chromium, story, "admin", ADMIN_PASSWORD)
    admin_creates_user_group_and_role(admin, story)
    admin_shares_the_channel_with_the_group(admin, story)

    user = open_signed_in(chromium, story, story.username, story.password)
    expect(user.locator(".who .admin-link")).to_have_count(0)
    user.click(f"a[href='/channels/{story.channel}']")  # private, and shared with their group
    expect(user.locator("h1")).to_contain_text(story.channel)
    user_makes_and_revokes_a_token(live_server, user, story)

    admin_reads_the_audit_log(admin, story)
