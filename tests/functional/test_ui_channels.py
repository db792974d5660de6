"""Channel work in the web UI without JavaScript: create, upload, copy, move, remove, freeze,
repodata patches and notices (``web/ui/channel_admin*.py``).

Every flow posts the page's own forms as a browser without JavaScript would, through a live
server, with real packages from ``tests/data/channels/test-recipes``. ``alice`` creates her
channels through the form (so she owns and manages them); ``bob`` is signed in with no grant on
them, and must see no action and have every direct post refused. What the forms change is read
back through the REST API, the conda channel and the audit log.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.functional.test_ui import assert_html, csrf_of, sign_in
from tests.functional.test_ui_mirrors import form_error
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("ui-channels")]

PASSWORD = "a-long-password-1"
RECIPES = Path(__file__).parents[1] / "data" / "channels" / "test-recipes" / "noarch"
DEP1, DEP2, DEPENDENT = "dependency-1.0-0.conda", "dependency-2.0-0.conda", "dependent-1.0-0.conda"
BAD = Path(__file__).parents[1] / "data" / "bad" / "bad_package.tar.bz2"
FILE_ROW = re.compile(r'<tr data-file="([^"]+)"')


@dataclass
class People:
    live: LiveServer
    alice: httpx.Client  # creates and manages her channels
    bob: httpx.Client  # signed in, no grant on alice's channels
    anonymous: httpx.Client


def _user(live: LiveServer) -> httpx.Client:
    name = f"uic-{uuid.uuid4().hex[:8]}"
    response = live.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert response.status_code == 201, response.text
    client = live.client()
    assert sign_in(client, name, PASSWORD).status_code == 303
    return client


@pytest.fixture(scope="module")
def people(live_server: LiveServer) -> People:
    return People(live_server, _user(live_server), _user(live_server), live_server.client())


def token(client: httpx.Client, path: str = "/") -> str:
    return csrf_of(client.get(path).text)


def post(client: httpx.Client, path: str, **data: object) -> httpx.Response:
    return client.post(path, data={"csrf_token": token(client), **data})


def create(client: httpx.Client, name: str = "", **fields: str) -> str:
    """A new channel through the form (a unique top-level name unless given)."""
    leaf = name or f"uic-{uuid.uuid4().hex[:8]}"
    response = post(client, "/new-channel", name=leaf, **fields)
    full = f"{fields['parent']}/{leaf}" if fields.get("parent") else leaf
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/channels/{full}?ok=channel-created"
    return full


def upload(
    client: httpx.Client, channel: str, *names: str, csrf: str | None = None
) -> httpx.Response:
    files = [("files", (n, (RECIPES / n).read_bytes(), "application/octet-stream")) for n in names]
    given = token(client) if csrf is None else csrf
    return client.post(f"/channels/{channel}/files", data={"csrf_token": given}, files=files)


def files_of(client: httpx.Client, channel: str) -> list[str]:
    page = client.get(f"/channels/{channel}/files")
    assert_html(page, 200)
    return sorted(FILE_ROW.findall(page.text))


def api_files(live: LiveServer, channel: str) -> list[str]:
    rows = live.admin.get(f"/api/v1/channels/{channel}/files").json()
    return sorted(f"{r['subdir']}/{r['filename']}" for r in rows)


def audit(live: LiveServer, event_type: str, target: str) -> list[dict[str, object]]:
    response = live.admin.get("/api/v1/audit", params={"type": event_type, "target": target})
    assert response.status_code == 200, response.text
    events: list[dict[str, object]] = response.json()["events"]
    return events


def test_create_a_channel_and_a_subchannel(people: People) -> None:
    form = people.alice.get("/new-channel")
    assert_html(form, 200)
    assert 'id="create-form"' in form.text
    parent = create(people.alice, description="Team\x00 packages", privacy="private")
    page = people.alice.get(f"/channels/{parent}?ok=channel-created")
    assert 'id="notice"' in page.text and 'id="channel-work"' in page.text
    child = create(people.alice, "nightly", parent=parent)
    shown = people.live.admin.get(f"/api/v1/channels/{child}").json()
    assert shown["privacy"] == "private"  # a subchannel takes its parent's access
    assert people.live.admin.get(f"/api/v1/channels/{parent}").json()["description"] == (
        "Team packages"
    )
    assert "New channel" in people.alice.get("/").text  # the link on the channel list


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "Bad Name"}, "must be 1-64 characters"),
        ({"name": "files"}, "reserved"),
        ({"name": "x", "privacy": "everyone"}, "privacy must be one of"),
    ],
)
def test_bad_channel_input_shows_the_form_again(
    people: People, fields: dict[str, str], says: str
) -> None:
    response = post(people.alice, "/new-channel", **fields)
    assert response.status_code == 400, response.text
    assert says in form_error(response.text)
    assert 'id="create-form"' in response.text  # the form again, with what was typed
    assert unescape(fields["name"]) in unescape(response.text)


def test_create_refusals(people: People) -> None:
    name = create(people.alice)
    again = post(people.alice, "/new-channel", name=name)
    assert again.status_code == 409 and "already exists" in form_error(again.text)
    looser = post(
        people.alice,
        "/new-channel",
        name="pub",
        parent=create(people.alice, privacy="private"),
        privacy="public",
    )
    assert looser.status_code in (400, 409, 422) and form_error(looser.text)
    # bob may not create under alice's channel; without the CSRF token nothing is made
    under = post(people.bob, "/new-channel", name="mine", parent=name)
    assert under.status_code in (403, 404), under.text
    forged = people.alice.post("/new-channel", data={"name": "forged-x"})
    assert_html(forged, 403)
    assert people.live.admin.get("/api/v1/channels/forged-x").status_code == 404
    anonymous = people.anonymous.get("/new-channel")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


def test_upload_copy_move_remove_without_javascript(people: People) -> None:
    source, target = create(people.alice), create(people.alice)
    done = upload(people.alice, source, DEP1, DEP2, DEPENDENT)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/channels/{source}/files?ok=files-uploaded"
    assert files_of(people.alice, source) == [
        f"noarch/{DEP1}",
        f"noarch/{DEP2}",
        f"noarch/{DEPENDENT}",
    ]

    copied = post(
        people.alice, f"/channels/{source}/files/copy", files=f"noarch/{DEP1}", target=target
    )
    assert copied.status_code == 303 and copied.headers["location"].endswith("ok=files-copied")
    moved = post(people.alice, f"/channels/{source}/files/move", package="dependent", target=target)
    assert moved.status_code == 303 and moved.headers["location"].endswith("ok=files-moved")
    assert api_files(people.live, source) == [f"noarch/{DEP1}", f"noarch/{DEP2}"]
    assert api_files(people.live, target) == [f"noarch/{DEP1}", f"noarch/{DEPENDENT}"]

    twice = post(
        people.alice, f"/channels/{source}/files/copy", files=f"noarch/{DEP1}", target=target
    )
    assert twice.status_code == 409 and "already exists" in form_error(twice.text)
    skipped = post(
        people.alice,
        f"/channels/{source}/files/copy",
        files=f"noarch/{DEP1}",
        target=target,
        skip_existing="yes",
    )
    assert skipped.status_code == 303

    bad_spec = post(people.alice, f"/channels/{source}/remove", package="dependency", version="><1")
    assert bad_spec.status_code == 400 and "not a version spec" in form_error(bad_spec.text)
    nothing = post(people.alice, f"/channels/{source}/remove")
    assert nothing.status_code == 400 and "say which artifacts" in form_error(nothing.text)
    removed = post(people.alice, f"/channels/{source}/remove", package="dependency", version=">=2")
    assert removed.status_code == 303 and removed.headers["location"].endswith("ok=files-removed")
    assert api_files(people.live, source) == [f"noarch/{DEP1}"]


def test_upload_again_needs_force(people: People) -> None:
    channel = create(people.alice)
    assert upload(people.alice, channel, DEP1).status_code == 303
    again = upload(people.alice, channel, DEP1)
    assert again.status_code == 409 and "already exists" in form_error(again.text)
    files = [("files", (DEP1, (RECIPES / DEP1).read_bytes(), "application/octet-stream"))]
    data = {"csrf_token": token(people.alice), "force": "yes"}
    forced = people.alice.post(f"/channels/{channel}/files", data=data, files=files)
    assert forced.status_code == 303, forced.text
    assert 'id="upload-force"' in people.alice.get(f"/channels/{channel}/files").text
    assert api_files(people.live, channel) == [f"noarch/{DEP1}"]


def test_description_and_delete(people: People) -> None:
    parent = create(people.alice)
    child = create(people.alice, "child", parent=parent)
    assert 'id="delete-form"' not in people.bob.get(f"/channels/{parent}").text
    said = post(people.alice, f"/channels/{parent}/description", description="Line one\nLine two")
    assert said.status_code == 303 and said.headers["location"].endswith("ok=channel-updated")
    shown = people.live.admin.get(f"/api/v1/channels/{parent}").json()
    assert shown["description"] == "Line one\nLine two"
    assert post(people.bob, f"/channels/{parent}/description", description="x").status_code == 403
    assert post(people.bob, f"/channels/{parent}/delete", confirm="yes").status_code == 403
    unconfirmed = post(people.alice, f"/channels/{parent}/delete")
    assert_html(unconfirmed, 400)
    assert "tick the box" in unconfirmed.text.lower()
    deleted = post(people.alice, f"/channels/{parent}/delete", confirm="yes")
    assert deleted.status_code == 303 and deleted.headers["location"] == "/?ok=channel-deleted"
    assert 'id="notice"' in people.alice.get("/?ok=channel-deleted").text
    for gone in (parent, child):
        assert people.live.admin.get(f"/api/v1/channels/{gone}").status_code == 404
    again = post(people.alice, f"/channels/{parent}/delete", confirm="yes")
    assert_html(again, 404)


def test_scan_settings_and_signing(people: People) -> None:
    channel = create(people.alice)
    page = people.alice.get(f"/channels/{channel}")
    assert 'id="settings-form"' in page.text and 'id="scan-uploads"' not in page.text
    kept = post(people.alice, f"/channels/{channel}/settings")  # signing stays off: no change
    assert kept.status_code == 303
    refused = post(people.alice, f"/channels/{channel}/settings", scan_uploads="serve-first")
    assert_html(refused, 403)  # scan settings need security:manage
    unsigned = post(people.alice, f"/channels/{channel}/settings", sign="yes")
    assert_html(unsigned, 404)  # signing is not set up on this server
    assert "signing init" in unsigned.text
    admin = people.live.client()
    assert sign_in(admin, "admin", ADMIN_PASSWORD).status_code == 303
    assert 'id="scan-uploads"' in admin.get(f"/channels/{channel}").text
    changed = post(admin, f"/channels/{channel}/settings", scan_uploads="serve-first")
    assert changed.status_code == 303
    shown = people.live.admin.get(f"/api/v1/channels/{channel}").json()
    assert (shown["scan_uploads"], shown["sign"]) == ("serve-first", False)
    bad = post(admin, f"/channels/{channel}/settings", scan_errors="maybe")
    assert_html(bad, 400)
    assert "scan_errors must be one of" in bad.text.lower()


def test_upload_refusals(people: People) -> None:
    channel = create(people.alice)
    files = [("files", (BAD.name, BAD.read_bytes(), "application/octet-stream"))]
    bad = people.alice.post(
        f"/channels/{channel}/files", data={"csrf_token": token(people.alice)}, files=files
    )
    assert 400 <= bad.status_code < 500, bad.text
    assert form_error(bad.text) and 'id="upload-form"' in bad.text
    empty = people.alice.post(
        f"/channels/{channel}/files",
        data={"csrf_token": token(people.alice)},
        files=[("files", ("", b"", "application/octet-stream"))],
    )
    assert empty.status_code == 400 and "choose one or more" in form_error(empty.text)
    forged = upload(people.alice, channel, DEP1, csrf="not-the-token-0123456789abcdefghijkl")
    assert_html(forged, 403)
    stranger = upload(people.bob, channel, DEP1)
    assert stranger.status_code == 403, stranger.text  # public: bob reads, may not write
    anonymous = upload(people.anonymous, channel, DEP1, csrf="")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    assert api_files(people.live, channel) == []


def test_freeze_and_unfreeze(people: People) -> None:
    channel = create(people.alice)
    page = people.bob.get(f"/channels/{channel}")
    assert 'id="freeze-form"' not in page.text  # bob reads it, may not manage it
    refused = post(people.bob, f"/channels/{channel}/freeze")
    assert refused.status_code == 403
    frozen = post(people.alice, f"/channels/{channel}/freeze")
    assert frozen.status_code == 303 and frozen.headers["location"].endswith("ok=channel-frozen")
    assert people.live.admin.get(f"/api/v1/channels/{channel}").json()["frozen"] is True
    assert "Unfreeze" in people.alice.get(f"/channels/{channel}").text
    thawed = post(people.alice, f"/channels/{channel}/unfreeze")
    assert thawed.status_code == 303
    assert people.live.admin.get(f"/api/v1/channels/{channel}").json()["frozen"] is False
    forged = people.alice.post(f"/channels/{channel}/freeze", data={"csrf_token": "x" * 40})
    assert_html(forged, 403)


def test_patches(people: People) -> None:
    channel = create(people.alice)
    assert upload(people.alice, channel, DEP1).status_code == 303
    changes = '{"license": "Patched-1.0", "depends": ["python >=3.9"]}'
    saved = post(
        people.alice,
        f"/channels/{channel}/patches",
        subdir="noarch",
        filename=DEP1,
        changes=changes,
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("ok=patch-saved")
    page = people.alice.get(f"/channels/{channel}/patches")
    assert f'data-patch="noarch/{DEP1}"' in page.text and "Patched-1.0" in page.text
    people.live.wait_published(channel)
    record = people.live.client().get(f"/conda/{channel}/noarch/repodata.json").json()
    assert record["packages.conda"][DEP1]["license"] == "Patched-1.0"
    event = audit(people.live, "patch.create", f"{channel}/noarch/{DEP1}")[0]
    assert event["before"] is None and event["after"]["changes"]["license"] == "Patched-1.0"  # type: ignore[index]

    for bad, says in (
        ("{not json", "not json"),
        ("[" * 50_000, "not json"),  # nested past the parser's depth
        ('{"license": "a\\u0000b"}', "a nul or a lone surrogate"),  # the database refuses them
        ('{"license": "\\ud800"}', "a nul or a lone surrogate"),
        ("[1, 2]", "json object"),
        ('{"sha256": "00"}', "may not change sha256"),
    ):
        refused = post(
            people.alice,
            f"/channels/{channel}/patches",
            subdir="noarch",
            filename=DEP1,
            changes=bad,
        )
        assert refused.status_code == 400, refused.text
        assert says in form_error(refused.text)
    wrong_name = post(
        people.alice, f"/channels/{channel}/patches", subdir="noarch", filename="x.zip"
    )
    assert wrong_name.status_code == 400 and "not a package filename" in form_error(wrong_name.text)

    assert 'id="patch-form"' not in people.bob.get(f"/channels/{channel}/patches").text
    assert (
        post(people.bob, f"/channels/{channel}/patches", subdir="noarch", filename=DEP1).status_code
        == 403
    )
    cleared = post(
        people.alice, f"/channels/{channel}/patches/clear", subdir="noarch", filename=DEP1
    )
    assert cleared.status_code == 303 and cleared.headers["location"].endswith("ok=patch-cleared")
    assert people.live.admin.get(f"/api/v1/channels/{channel}/patches").json() == []
    event = audit(people.live, "patch.delete", f"{channel}/noarch/{DEP1}")[0]
    assert event["before"]["changes"]["license"] == "Patched-1.0"  # type: ignore[index]


def test_notices(people: People) -> None:
    channel = create(people.alice)
    added = post(
        people.alice,
        f"/channels/{channel}/notices",
        message="Moving to v2",
        level="warning",
        expires_in_days="30",
    )
    assert added.status_code == 303 and added.headers["location"].endswith("ok=notice-added")
    notices = people.live.admin.get(f"/api/v1/channels/{channel}/notices").json()
    assert [(n["message"], n["level"]) for n in notices] == [("Moving to v2", "warning")]
    served = people.live.client().get(f"/conda/{channel}/notices.json").json()
    assert served["notices"][0]["message"] == "Moving to v2"
    target = f"{channel}#{notices[0]['id']}"
    assert audit(people.live, "notice.create", target)[0]["after"]["level"] == "warning"  # type: ignore[index]

    for fields, says in (
        ({"message": ""}, "1 to 4000"),
        ({"message": "m", "level": "panic"}, "level is one of"),
        ({"message": "m", "expires_in_days": "0"}, "1 to 3650"),
        ({"message": "m", "expires_in_days": "soon"}, "whole number"),
    ):
        refused = post(people.alice, f"/channels/{channel}/notices", **fields)
        assert refused.status_code == 400, refused.text
        assert says in form_error(refused.text)

    page = people.bob.get(f"/channels/{channel}/notices")
    assert "Moving to v2" in page.text and 'id="notice-form"' not in page.text
    assert post(people.bob, f"/channels/{channel}/notices", message="hi").status_code == 403
    remove = f"/channels/{channel}/notices/{notices[0]['id']}/remove"
    assert post(people.bob, remove).status_code == 403
    gone = post(people.alice, remove)
    assert gone.status_code == 303 and gone.headers["location"].endswith("ok=notice-removed")
    assert people.live.admin.get(f"/api/v1/channels/{channel}/notices").json() == []
    assert audit(people.live, "notice.delete", target)[0]["before"]["message"] == "Moving to v2"  # type: ignore[index]
    nul = post(people.alice, f"/channels/{channel}/notices", message="a\x00b\r\nc")
    assert nul.status_code == 303  # control characters dropped, the line break kept
    kept = people.live.admin.get(f"/api/v1/channels/{channel}/notices").json()
    assert [n["message"] for n in kept] == ["ab\nc"]
    missing = post(people.alice, f"/channels/{channel}/notices/999999/remove")
    assert missing.status_code == 404


def test_readers_see_no_actions_and_package_names_still_route(people: People) -> None:
    channel = create(people.alice)
    files = people.bob.get(f"/channels/{channel}/files")
    assert_html(files, 200)
    assert 'id="upload-form"' not in files.text and 'id="remove-button"' not in files.text
    assert "upload.js" not in files.text
    page = people.anonymous.get(f"/channels/{channel}")
    assert 'id="channel-work"' not in page.text
    mine = people.alice.get(f"/channels/{channel}/files")
    assert 'id="upload-form"' in mine.text and "/static/upload.js" in mine.text
    assert "script-src 'self'" in mine.headers["content-security-policy"]
    # ``…/packages/files`` is the package called "files", not the files page
    for word in ("files", "patches", "notices"):
        package = people.alice.get(f"/channels/{channel}/packages/{word}")
        assert_html(package, 404)
