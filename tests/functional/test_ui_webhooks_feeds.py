"""The webhook and CVE feed pages (``/admin/webhooks``, ``/admin/cve-feeds``) as a browser without
JavaScript uses them: plain form posts with the session's CSRF token, against a live server.

A real HTTP receiver (``tests/support/webhook_receiver.py``, on loopback, which this server
allows) gets the test call the page asks for, signed with the secret the page showed once. The
feed is a ``file://`` folder of real OSV advisories (``aiohttp``). Refusals come back as the page
with the reason and a 4xx; secrets (the webhook's, an API key in a feed URL) never appear in a page
after the one answer that set them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_URL
from tests.functional.test_identity_api import PASSWORD, make_user
from tests.functional.test_ui import assert_html, browser, csrf_of, sign_in
from tests.functional.test_ui_mirrors import form_error
from tests.support.cves import grant_cves, osv_folder, unique
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server
from tests.support.webhook_receiver import Call, Receiver, receiving

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("ui-webhooks-feeds")]
__all__ = ["browser"]  # the Chromium fixture of test_ui

HOOKS, FEEDS = "/admin/webhooks", "/admin/cve-feeds"
SECRET = "a-webhook-secret-0123456789"
FEED_KEY = "FEED-API-KEY-0123456789"
SECRET_RE = re.compile(r'id="secret-value">([^<]+)<')


@dataclass
class World:
    live: LiveServer
    receiver: Receiver
    channel: str  # the admin's, public
    private: str  # the admin's, private
    folder: Path  # OSV advisories of aiohttp
    owner: str  # a user who made a channel of their own
    owned: str  # that channel
    analyst: str  # cve:read
    nobody: str  # signed in, manages nothing

    def web(self, username: str | None = None) -> httpx.Client:
        client = self.live.client()
        if username is not None:
            password = ADMIN_PASSWORD if username == "admin" else PASSWORD
            assert sign_in(client, username, password).status_code == 303
        return client


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """On each backend (the ``backend`` parameter: the browser test runs on SQLite only)."""
    data_dir = tmp_path_factory.mktemp(f"ui-hooks-{backend}")
    folder = osv_folder(tmp_path_factory.mktemp("ui-hooks-work"), "aiohttp")
    fast = {"backoff_s": [0.2], "poll_s": 0.2, "timeout_s": 5, "allow_loopback": True}
    with (
        receiving() as receiver,
        fresh_database(backend, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, webhooks=fast) as live,
    ):
        owner = make_user(live)
        owned = unique("own")
        r = live.client().post("/api/v1/channels", json={"name": owned}, auth=(owner, PASSWORD))
        assert r.status_code == 201, r.text
        analyst = make_user(live)
        grant_cves(live, analyst, "read")
        yield World(
            live,
            receiver,
            live.new_channel("public", "ui-hook"),
            live.new_channel("private", "ui-hook-x"),
            folder,
            owner,
            owned,
            analyst,
            make_user(live),
        )


def post(client: httpx.Client, path: str, page: str, **data: str | list[str]) -> httpx.Response:
    """Post a form of ``page`` (its CSRF token) to ``path``."""
    token = csrf_of(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **data})


def hooks_of(world: World, channel: str) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = world.live.admin.get(
        f"/api/v1/channels/{channel}/webhooks"
    ).json()
    return listed


def new_hook(client: httpx.Client, channel: str, url: str, **extra: str) -> httpx.Response:
    fields: dict[str, str | list[str]] = {
        "channel": channel,
        "url": url,
        "events": ["vulnerability.matched", "artifact.held"],
        "enabled": "yes",
        **extra,
    }
    return post(client, HOOKS, HOOKS, **fields)


# ------------------------------------------------------------------------------------ webhooks


def test_webhook_created_tried_edited_and_deleted_from_the_pages(world: World) -> None:
    admin = world.web("admin")
    assert_html(admin.get(HOOKS), 200)

    created = new_hook(admin, world.channel, f"{world.receiver.url}/ui", secret=SECRET)
    assert_html(created, 201)  # the secret is in this answer only, never in a URL
    assert SECRET_RE.search(created.text).group(1) == SECRET  # type: ignore[union-attr]
    (hook,) = hooks_of(world, world.channel)
    page = f"{HOOKS}/{hook['id']}"
    shown = admin.get(page)
    assert_html(shown, 200)
    assert SECRET not in shown.text and "secret-value" not in shown.text
    assert SECRET not in admin.get(HOOKS).text

    tried = post(admin, f"{page}/ping", page)  # the test call, signed with the secret shown
    assert tried.status_code == 303 and tried.headers["location"] == f"{page}?ok=webhook-pinged"
    (call,) = world.receiver.wait(lambda c: c.path == "/ui" and c.event == "ping")
    assert signed_with(call, SECRET)
    delivered = wait_page(admin, page, "badge-state-delivered")
    assert call.headers["x-stockade-delivery"] in delivered

    delivery = call.headers["x-stockade-delivery"]
    again = post(admin, f"{page}/deliveries/{delivery}/redeliver", page)
    assert again.status_code == 303
    world.receiver.wait(lambda c: c.path == "/ui" and c.event == "ping", count=2)

    edited = post(
        admin,
        page,
        page,
        url=f"{world.receiver.url}/moved",
        events=["artifact.held"],
        description="on call",
        enabled="",
    )
    assert edited.status_code == 303, edited.text
    (hook,) = hooks_of(world, world.channel)
    assert (hook["url"], hook["events"], hook["enabled"]) == (
        f"{world.receiver.url}/moved",
        ["artifact.held"],
        False,
    )

    rotated = post(
        admin, page, page, url=str(hook["url"]), events=["artifact.held"], rotate_secret="yes"
    )
    assert_html(rotated, 201)
    new_secret = SECRET_RE.search(rotated.text).group(1)  # type: ignore[union-attr]
    assert new_secret != SECRET and new_secret not in admin.get(page).text

    kept = post(admin, f"{page}/delete", page)  # the box not ticked
    assert_html(kept, 400)
    assert "tick the box" in form_error(kept.text)
    deleted = post(admin, f"{page}/delete", page, confirm="yes")
    assert deleted.status_code == 303 and deleted.headers["location"].startswith(HOOKS + "?")
    assert hooks_of(world, world.channel) == []
    assert_html(admin.get(page), 404)


def test_a_key_in_a_webhook_url_is_never_shown_and_kept_on_save(world: World) -> None:
    admin = world.web("admin")
    url = f"{world.receiver.url}/keyed?token={FEED_KEY}"
    assert_html(new_hook(admin, world.owned, url), 201)
    (hook,) = [h for h in hooks_of(world, world.owned) if "keyed" in str(h["url"])]
    page = f"{HOOKS}/{hook['id']}"
    for path in (HOOKS, page):
        html = unescape(admin.get(path).text)
        assert FEED_KEY not in html and "token=***" in html
    shown = url.replace(FEED_KEY, "***")  # sent back as shown: the stored URL stays
    saved = post(admin, page, page, url=shown, events=["artifact.held"], description="kept")
    assert saved.status_code == 303, saved.text
    (hook,) = [h for h in hooks_of(world, world.owned) if h["id"] == hook["id"]]
    assert (hook["url"], hook["description"]) == (url, "kept")
    assert post(admin, f"{page}/delete", page, confirm="yes").status_code == 303


def signed_with(call: Call, secret: str) -> bool:
    stamp = call.headers["x-stockade-timestamp"]
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + call.body, hashlib.sha256)
    return call.headers["x-stockade-signature"] == f"sha256={mac.hexdigest()}"


def wait_page(client: httpx.Client, path: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        html = client.get(path).text
        if text in html or time.monotonic() > deadline:
            assert text in html, html
            return html
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://hooks.example.org/x", "http"),
        ("https://user:pw@hooks.example.org/x", "credentials"),
        ("https://hooks.example.org/x#frag", "fragment"),
        ("not a url", "spaces"),
    ],
)
def test_a_bad_webhook_is_refused_on_the_page(world: World, url: str, says: str) -> None:
    admin = world.web("admin")
    refused = new_hook(admin, world.channel, url)
    assert_html(refused, 400)
    assert says in form_error(refused.text)
    assert "pw@" not in refused.text  # what was typed comes back, but never a password
    assert hooks_of(world, world.channel) == []


def test_webhook_forms_need_the_csrf_token_and_a_manager(world: World) -> None:
    admin, nobody, anonymous = world.web("admin"), world.web(world.nobody), world.web()
    data = {"channel": world.channel, "url": f"{world.receiver.url}/x", "events": "ping"}
    assert_html(admin.post(HOOKS, data={**data, "csrf_token": "x" * 40}), 403)
    assert anonymous.get(HOOKS).status_code == 303  # to the sign-in page
    assert_html(nobody.get(HOOKS), 403)
    for channel in (world.channel, world.private):  # managing no channel: 403 whatever it is
        assert_html(new_hook(nobody, channel, f"{world.receiver.url}/x"), 403)
    # the owner of a channel manages its webhooks, and sees no other channel's
    owner = world.web(world.owner)
    for channel, status in ((world.channel, 403), (world.private, 404)):
        refused = new_hook(owner, channel, f"{world.receiver.url}/x")
        assert_html(refused, status)
        assert f'<option value="{world.private}"' not in refused.text
    assert hooks_of(world, world.channel) == [] and hooks_of(world, world.private) == []
    made = new_hook(owner, world.owned, f"{world.receiver.url}/own", secret=SECRET)
    assert_html(made, 201)
    assert world.channel not in owner.get(HOOKS).text
    admins = new_hook(admin, world.private, f"{world.receiver.url}/adm")
    assert_html(admins, 201)
    (hidden,) = hooks_of(world, world.private)
    listed = owner.get(HOOKS).text
    assert f"{world.receiver.url}/own" in listed and f"{world.receiver.url}/adm" not in listed
    assert_html(owner.get(f"{HOOKS}/{hidden['id']}"), 404)
    gone = post(owner, f"{HOOKS}/{hidden['id']}/delete", HOOKS, confirm="yes")
    assert_html(gone, 404)
    assert len(hooks_of(world, world.private)) == 1
    assert_html(admin.get(f"{HOOKS}/not-a-number"), 404)
    for missing in ("999999", "not-a-number"):  # anonymous: the sign-in page, whatever the id
        assert world.web().get(f"{HOOKS}/{missing}").headers["location"].startswith("/login")


# ---------------------------------------------------------------------------------------- feeds


def new_feed(client: httpx.Client, name: str, url: str, **extra: str) -> httpx.Response:
    fields = {"name": name, "url": url, "format": "osv", "enabled": "yes", **extra}
    return post(client, FEEDS, FEEDS, **fields)


def test_feed_added_synced_edited_and_removed_from_the_pages(world: World) -> None:
    admin = world.web("admin")
    name = unique("ui-feed")
    added = new_feed(admin, name, world.folder.as_uri(), schedule="0 3 * * *")
    assert added.status_code == 303, added.text
    page = f"{FEEDS}/{name}"
    assert added.headers["location"] == f"{page}?ok=feed-created"
    assert "never synced" in admin.get(page).text

    synced = post(admin, f"{page}/sync", page)
    assert synced.status_code == 303
    html = wait_page(admin, page, "badge-state-ok", timeout=120)
    assert re.search(r"<dt>Advisories</dt><dd>[1-9]", html), html
    listing = admin.get(FEEDS)
    assert_html(listing, 200)
    assert f'data-feed="{name}"' in listing.text

    bad = post(admin, page, page, url=world.folder.as_uri(), format="osv", schedule="every day")
    assert_html(bad, 400)
    assert "cron" in form_error(bad.text)
    off = post(admin, f"{page}/enabled", page, enabled="no")
    assert off.status_code == 303
    assert admin.get(f"/api/v1/cve/feeds/{name}").json()["enabled"] is False
    assert "badge-state-disabled" in admin.get(page).text

    kept = post(admin, f"{page}/delete", page)
    assert_html(kept, 400)
    removed = post(admin, f"{page}/delete", page, confirm="yes")
    assert removed.status_code == 303
    assert admin.get(f"/api/v1/cve/feeds/{name}").status_code == 404


def test_a_bad_feed_is_refused_and_a_key_never_shown(world: World, tmp_path: Path) -> None:
    admin = world.web("admin")
    missing = new_feed(admin, unique("f"), (tmp_path / "nothing-here").as_uri())
    assert_html(missing, 400)
    assert form_error(missing.text)
    wrong = new_feed(admin, unique("f"), world.folder.as_uri(), format="no-such-format")
    assert 400 <= wrong.status_code < 500 and form_error(wrong.text)

    name = unique("keyed")
    url = f"https://feeds.example.invalid/osv.json?apiKey={FEED_KEY}"
    assert new_feed(admin, name, url, no_check="yes").status_code == 303
    for path in (FEEDS, f"{FEEDS}/{name}"):
        html = admin.get(path).text
        assert FEED_KEY not in html and "apiKey=***" in unescape(html)
    page = f"{FEEDS}/{name}"  # the redacted URL sent back as shown keeps the stored key
    saved = post(
        admin,
        page,
        page,
        url=url.replace(FEED_KEY, "***"),
        format="osv",
        schedule="0 4 * * *",
        enabled="yes",
        no_check="yes",
    )
    assert saved.status_code == 303, saved.text
    duplicate = new_feed(admin, name, url, no_check="yes")
    assert_html(duplicate, 409)
    assert FEED_KEY not in duplicate.text
    assert post(admin, f"{page}/delete", page, confirm="yes").status_code == 303


def test_feed_pages_by_permission(world: World) -> None:
    analyst, nobody = world.web(world.analyst), world.web(world.nobody)
    listing = analyst.get(FEEDS)
    assert_html(listing, 200)
    assert 'id="create-feed"' not in listing.text  # cve:read sees, cannot change
    refused = new_feed(analyst, unique("f"), world.folder.as_uri())
    assert_html(refused, 403)
    assert_html(nobody.get(FEEDS), 403)
    assert world.web().get(FEEDS).status_code == 303
    assert_html(analyst.get(f"{FEEDS}/no-such-feed"), 404)
    csrf_less = world.web("admin").post(FEEDS, data={"name": "x", "url": "file:///x"})
    assert_html(csrf_less, 403)


# ------------------------------------------------------------------------------- a real browser


@pytest.mark.browser
def test_webhook_and_feed_flows_in_chromium_without_javascript(
    world: World, browser: object
) -> None:
    """The admin reaches both pages from the navigation, adds a webhook (the secret shown once),
    tries it and sees the delivery, adds a feed and syncs it: JavaScript off all along."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{world.live.url}/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("form.stack button[type=submit]")
    page.click("#nav-admin")
    page.click("nav.tabs >> text=Webhooks")
    page.select_option("#channel", world.channel)
    page.fill("#url", f"{world.receiver.url}/chromium")
    page.uncheck("input[name=events][value='artifact.held']")
    page.click("#create-webhook button[type=submit]")
    secret = page.locator("#secret-value").inner_text()
    assert len(secret) >= 16
    page.click("text=Send a test call")
    expect(page.locator("#notice")).to_contain_text("test call was queued")
    (call,) = world.receiver.wait(lambda c: c.path == "/chromium" and c.event == "ping")
    assert signed_with(call, secret)
    page.reload()
    expect(page.locator("#deliveries")).to_contain_text("ping")
    assert secret not in page.content()
    page.check("#delete-form input[name=confirm]")
    page.click("#delete-form button[type=submit]")
    expect(page.locator("#notice")).to_contain_text("webhook was deleted")

    page.click("nav.tabs >> text=CVE feeds")
    name = unique("chromium-feed")
    page.fill("#name", name)
    page.fill("#url", world.folder.as_uri())
    page.select_option("#format", "osv")
    page.click("#create-feed button[type=submit]")
    expect(page.locator("#notice")).to_contain_text("feed was added")
    page.click("text=Sync now")
    expect(page.locator("#notice")).to_contain_text("sync was queued")
    deadline = time.monotonic() + 60
    while "badge-state-ok" not in page.content() and time.monotonic() < deadline:
        page.reload()
    expect(page.locator("h1 .badge-state-ok")).to_have_count(1)
    context.close()
