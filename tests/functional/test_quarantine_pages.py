"""The quarantine pages (SPEC §8, §10) as a browser without JavaScript uses them: the queue with
the scan status box, an item's findings, release (a note required) and delete forms behind CSRF,
who may see them, and the scan verdict on the package page."""

from __future__ import annotations

import re
import time
import uuid
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.functional.test_cli_quarantine import CASE, hold
from tests.functional.test_ui import assert_html, csrf_of, new_user, sign_in
from tests.support.hostile import HOSTILE
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("quarantine")]

SUSPICIOUS = next(c for c in HOSTILE if c.rule == "link-script:write-outside-prefix")


@pytest.fixture
def admin_web(live_server: LiveServer) -> httpx.Client:
    client = live_server.client()
    assert sign_in(client, "admin", ADMIN_PASSWORD).status_code == 303
    return client


def status_of(live: LiveServer, artifact_id: int) -> int | str:
    response = live.admin.get(f"/api/v1/quarantine/{artifact_id}")
    return str(response.json()["status"]) if response.status_code == 200 else response.status_code


def form_error(html: str) -> str:
    found = re.search(r'id="form-error">([^<]*)<', html)
    assert found, "no form error on the page"
    return unescape(found.group(1)).lower()


def test_the_queue_and_an_items_findings_for_an_admin(
    live_server: LiveServer, admin_web: httpx.Client, tmp_path: Path
) -> None:
    channel, hostile, held = hold(live_server, tmp_path)
    page = admin_web.get("/quarantine", params={"channel": channel})
    assert_html(page, 200)
    assert 'id="nav-quarantine"' in page.text and 'id="scan-status"' in page.text
    assert hostile.name in page.text and CASE.rule in page.text
    assert f'href="/quarantine/{held["id"]}"' in page.text
    assert re.search(r'data-count="held">\d+<', page.text)
    filtered = admin_web.get("/quarantine", params={"status": "suspicious", "channel": channel})
    assert_html(filtered, 200)
    assert hostile.name not in filtered.text and "matches the filter" in filtered.text
    assert_html(admin_web.get("/quarantine", params={"status": "nope"}), 400)
    assert_html(admin_web.get("/quarantine", params={"after": "x"}), 400)

    item = admin_web.get(f"/quarantine/{held['id']}")
    assert_html(item, 200)
    text = unescape(item.text)
    finding = held["scan"]["findings"][0]
    for expected in (finding["scanner"], finding["rule"], finding["member"], finding["evidence"]):
        assert expected in text, expected
    assert 'id="release-form"' in item.text and 'id="delete-form"' in item.text
    assert_html(admin_web.get("/quarantine/999999999"), 404)
    assert admin_web.get("/quarantine/0").status_code == 422  # not an id: no page, no 500


def test_release_through_the_form_needs_csrf_and_a_note(
    live_server: LiveServer, admin_web: httpx.Client, tmp_path: Path
) -> None:
    _, hostile, held = hold(live_server, tmp_path)
    url = f"/quarantine/{held['id']}"
    forged = admin_web.post(f"{url}/release", data={"note": "forged", "csrf_token": "x" * 43})
    assert_html(forged, 403)
    missing = admin_web.post(f"{url}/release", data={"note": "forged"})
    assert_html(missing, 403)
    assert status_of(live_server, held["id"]) == "malicious"

    token = csrf_of(admin_web.get(url).text)
    empty = admin_web.post(f"{url}/release", data={"note": "   ", "csrf_token": token})
    assert_html(empty, 400)
    assert "note" in form_error(empty.text)
    assert status_of(live_server, held["id"]) == "malicious"

    released = admin_web.post(
        f"{url}/release", data={"note": "reviewed <b>by</b> hand", "csrf_token": token}
    )
    assert released.status_code == 303, released.text
    assert released.headers["location"] == f"{url}?ok=released"
    assert status_of(live_server, held["id"]) == "released"
    page = admin_web.get(released.headers["location"])
    assert_html(page, 200)
    assert 'id="notice"' in page.text and 'id="released"' in page.text
    assert "reviewed &lt;b&gt;by&lt;/b&gt; hand" in page.text  # escaped, never markup
    assert 'id="release-form"' not in page.text  # not held any more
    again = admin_web.post(f"{url}/release", data={"note": "again", "csrf_token": token})
    assert_html(again, 409)
    assert hostile.name in again.text


def test_delete_through_the_form_needs_the_box_ticked(
    live_server: LiveServer, admin_web: httpx.Client, tmp_path: Path
) -> None:
    _, _, held = hold(live_server, tmp_path)
    url = f"/quarantine/{held['id']}"
    token = csrf_of(admin_web.get(url).text)
    forged = admin_web.post(f"{url}/delete", data={"confirm": "yes", "csrf_token": "y" * 43})
    assert_html(forged, 403)
    unticked = admin_web.post(f"{url}/delete", data={"note": "bad", "csrf_token": token})
    assert_html(unticked, 400)
    assert "tick the box" in form_error(unticked.text)
    assert status_of(live_server, held["id"]) == "malicious"
    deleted = admin_web.post(
        f"{url}/delete", data={"note": "bad", "confirm": "yes", "csrf_token": token}
    )
    assert deleted.status_code == 303, deleted.text
    assert deleted.headers["location"] == "/quarantine?ok=deleted"
    assert status_of(live_server, held["id"]) == 404
    assert_html(admin_web.get(url), 404)


def test_who_may_see_and_change_the_queue(live_server: LiveServer, tmp_path: Path) -> None:
    _, _, held = hold(live_server, tmp_path)
    url = f"/quarantine/{held['id']}"
    anonymous = live_server.client()
    for path in ("/quarantine", url):
        redirected = anonymous.get(path)
        assert redirected.status_code == 303 and redirected.headers["location"].startswith(
            "/login?next="
        )
    posted = anonymous.post(f"{url}/release", data={"note": "x", "csrf_token": "x" * 43})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login")

    username, password = new_user(live_server)
    user = live_server.client()
    assert sign_in(user, username, password).status_code == 303
    home = user.get("/")
    assert_html(home, 200)
    assert 'id="nav-quarantine"' not in home.text
    assert_html(user.get("/quarantine"), 403)
    assert_html(user.get(url), 403)
    token = csrf_of(home.text)  # the sign-out form's token: the session's
    refused = user.post(f"{url}/release", data={"note": "let me", "csrf_token": token})
    assert refused.status_code == 403, refused.text
    assert status_of(live_server, held["id"]) == "malicious"


def test_the_package_page_shows_each_builds_verdict_and_a_served_suspicious_builds_rules(
    live_server: LiveServer, admin_web: httpx.Client, testdata: Path, tmp_path: Path
) -> None:
    channel = live_server.new_channel(prefix="qpkg")  # suspicious files served (the default)
    suspicious = SUSPICIOUS.build(tmp_path)
    clean = testdata / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
    assert live_server.upload(channel, suspicious, clean).status_code == 201
    url = f"/channels/{channel}/packages/{SUSPICIOUS.name}"
    deadline = time.monotonic() + 60
    page = admin_web.get(url)
    while 'data-scan="suspicious"' not in page.text and time.monotonic() < deadline:
        time.sleep(0.2)
        page = admin_web.get(url)
    assert_html(page, 200)
    verdict = page.text.split('id="scan-verdict"', 1)[1].split("</dd>", 1)[0]
    assert 'data-scan="suspicious"' in verdict and SUSPICIOUS.rule in verdict
    other = admin_web.get(f"/channels/{channel}/packages/dependency")
    while other.status_code == 404 and time.monotonic() < deadline:  # its scan may come last
        time.sleep(0.2)
        other = admin_web.get(f"/channels/{channel}/packages/dependency")
    assert_html(other, 200)
    assert 'data-scan="clean"' in other.text and "scan-rule" not in other.text
    anonymous = live_server.client().get(url)  # a public channel: readers see the verdict too
    assert_html(anonymous, 200)
    assert SUSPICIOUS.rule in anonymous.text


def test_a_security_reader_sees_the_queue_without_the_forms(
    live_server: LiveServer, tmp_path: Path
) -> None:
    _, hostile, held = hold(live_server, tmp_path)
    role = f"sec-{uuid.uuid4().hex[:6]}"
    created = live_server.admin.post(
        "/api/v1/roles", json={"name": role, "permissions": {"security": "read"}}
    )
    assert created.status_code == 201, created.text
    username, password = new_user(live_server)
    assigned = live_server.admin.post(f"/api/v1/roles/{role}/assignments", json={"user": username})
    assert assigned.status_code == 200, assigned.text
    reader = live_server.client()
    assert sign_in(reader, username, password).status_code == 303
    listing = reader.get("/quarantine")
    assert_html(listing, 200)
    assert 'id="nav-quarantine"' in listing.text and hostile.name in listing.text
    item = reader.get(f"/quarantine/{held['id']}")
    assert_html(item, 200)
    assert 'id="release-form"' not in item.text and 'id="delete-form"' not in item.text
