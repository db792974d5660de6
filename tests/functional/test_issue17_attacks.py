"""Attacks on the work of issue 17 (search, downloads, the channel and webhook pages), against
one live server on SQLite: what a caller who cannot read a private channel learns of it, odd
input on the new endpoints (a 4xx problem, never a 500)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from stockade.channels.models import Channel
from tests.functional.test_downloads import flush, servable
from tests.functional.test_identity_api import PASSWORD, make_user, token_for_admin
from tests.functional.test_ui import csrf_of, sign_in
from tests.support.cves import unique, upload
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("issue17-attacks")]
API = "/api/v1"
HOOKS = "/admin/webhooks"


@dataclass(frozen=True)
class World:
    live: LiveServer
    open: str  # public channel
    secret: str  # private channel, admin's
    hook_id: int  # a webhook of the private channel
    nobody: str  # signed in, reads the public channel only

    def web(self, username: str) -> httpx.Client:
        client = self.live.client()
        assert sign_in(client, username, PASSWORD).status_code == 303
        return client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("issue17-attacks")
    tmp = tmp_path_factory.mktemp("issue17-attacks-work")
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        run_server(data_dir, db_url, webhooks={"allow_loopback": True}) as live,
    ):
        open_ = live.new_channel("public", "atk-open")
        secret = live.new_channel("private", "atk-secret")
        upload(live, open_, tmp, "openpkg", "1.0", "0")
        upload(live, secret, tmp, "secretpkg", "1.0", "0")
        hook = live.admin.post(
            f"{API}/channels/{secret}/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "events": ["artifact.held"]},
        )
        assert hook.status_code == 201, hook.text
        live.wait_published(open_)
        live.wait_published(secret)
        yield World(live, open_, secret, int(hook.json()["id"]), make_user(live))


def _recorded(live: LiveServer, channel: str) -> None:
    """Flush until the download just answered is written (it is recorded after the body went)."""
    deadline = time.monotonic() + 10
    while not live.admin.get(f"{API}/downloads", params={"channel": channel}).json()["downloads"]:
        assert time.monotonic() < deadline, "the download was not recorded"
        time.sleep(0.02)
        flush(live)


def _channel_id(live: LiveServer, name: str) -> int:
    with live.container.read_factory() as session:
        found = session.scalar(select(Channel.id).where(Channel.name == name))
    assert found is not None
    return found


def _no_leak(world: World, response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert world.secret not in response.text
    assert "secretpkg" not in response.text


# --------------------------------------------------------------------------- webhook pages


def test_webhook_page_of_a_hidden_channel_does_not_name_it(world: World) -> None:
    """A webhook id of a private channel: 404, and the page does not say which channel."""
    web = world.web(world.nobody)
    page = web.get(f"{HOOKS}/{world.hook_id}")
    assert page.status_code == 404
    _no_leak(world, page)
    token = csrf_of(web.get("/").text)  # the sign-out form's
    for action in ("", "/ping", "/delete", "/deliveries/1/redeliver"):
        posted = web.post(
            f"{HOOKS}/{world.hook_id}{action}",
            data={"csrf_token": token, "url": "http://x", "events": "artifact.held"},
        )
        assert posted.status_code == 404, (action, posted.status_code)
        _no_leak(world, posted)


# ------------------------------------------------------------------------ downloads: id reuse


@pytest.mark.parametrize("written", ["before the delete", "after the next channel"])
def test_downloads_of_a_deleted_channel_are_not_the_next_channels(
    world: World, tmp_path: Path, written: str
) -> None:
    """SQLite gives a deleted channel's id to the next channel: the downloads recorded for the
    deleted one must not show in the new owner's reports, raw rows or package counts, whether
    they were written before the delete or were still buffered when the new channel came."""
    live = world.live
    gone = live.new_channel("private", "atk-gone")  # the newest channel: its id is reused
    gone_id = _channel_id(live, gone)
    upload(live, gone, tmp_path, "gonepkg", "1.0", "0")
    live.wait_published(gone)
    servable(live, f"/conda/{gone}/noarch/gonepkg-1.0-0.conda")
    got = live.admin.get(
        f"/conda/{gone}/noarch/gonepkg-1.0-0.conda", headers={"user-agent": "secret-agent"}
    )
    assert got.status_code == 200
    if written == "before the delete":
        _recorded(live, gone)
    else:
        while not live.container.downloads.pending():  # recorded once the body went
            time.sleep(0.01)
    assert live.admin.delete(f"{API}/channels/{gone}").status_code == 204
    mine = unique("atk-mine")
    me = live.client(auth=(world.nobody, PASSWORD))
    made = me.post(f"{API}/channels", json={"name": mine})
    assert made.status_code == 201 and _channel_id(live, mine) == gone_id  # the id is reused
    flush(live)
    for path, params in (
        ("/downloads", {}),
        ("/downloads", {"channel": mine}),
        ("/downloads/report", {"by": "package"}),
        ("/downloads/report", {"by": "user", "channel": mine}),
        ("/downloads/report", {"by": "channel", "format": "csv"}),
    ):
        r = me.get(f"{API}{path}", params=params)
        assert r.status_code == 200, r.text
        assert "gonepkg" not in r.text and "secret-agent" not in r.text and "admin" not in r.text
    page = world.web(world.nobody).get("/admin/downloads")
    assert page.status_code == 200 and "gonepkg" not in page.text
    # the admin still sees the deleted channel's history
    assert "gonepkg" in live.admin.get(f"{API}/downloads/report").text


# ------------------------------------------------------------------ restricted tokens, odd input


def test_restricted_tokens_search_and_report_as_other_reads(world: World) -> None:
    """An admin's resource token for the public channel, or scope token without channel scopes,
    finds nothing of the private channel and sees no downloads (as the API's other reads)."""
    resource = token_for_admin(world.live, kind="resource", resources={world.open: "read"})
    scope = token_for_admin(world.live, kind="scope", scopes=["cves:read"])
    for token in (resource, scope):
        client = world.live.client(token)
        for q in ("secretpkg", "secretp", "secrtpkg", "secret package"):
            _no_leak(world, client.get(f"{API}/search", params={"q": q}))
        _no_leak(world, client.get(f"{API}/search", params={"channel": world.secret}))
        assert client.get(f"{API}/search/where/secretpkg").json() == []
        assert client.get(f"{API}/channels/{world.secret}").status_code == 404
        for path in ("/downloads", "/downloads/report"):
            assert client.get(f"{API}{path}").status_code == 403


Params = dict[str, str | list[str]]
ODD_SEARCH: list[Params] = [
    {"q": q}
    for q in (
        '"', 'a"b', "NEAR(a b)", "name:openpkg", "summary:x", "*", "secret*", "^secret", "(",
        "a OR b", "NOT", "a & b | !c", "'):*", "<->", "\\", "%_", "\x00", "a\x00b", "x" * 256,
        "日本語", "💥💥💥", "İı", "\u200b", "a\u0301bc", "--", "a:b:c", "{}[]",
    )
] + [
    {"limit": "-1"}, {"limit": "0"}, {"limit": "99999999999999999999"}, {"cursor": "-1"},
    {"cursor": "10000000000000000000000"}, {"cursor": "x"}, {"has_downloads": "maybe"},
    {"severity": "bogus"}, {"scan": "bogus"}, {"signature": "bogus"}, {"subdir": "\x00"},
    {"license": "x" * 600}, {"q": "x" * 257}, {"channel": [f"c{i}" for i in range(30)]},
    {"cursor": "²"}, {"limit": "²"}, {"start": "²"}, {"start": "١٢"}, {"has_downloads": "²"},
]  # fmt: skip
ODD_DOWNLOADS: list[Params] = [
    {"limit": "-1"}, {"limit": "0"}, {"limit": "10000000000"}, {"cursor": "0"},
    {"cursor": str(2**64)}, {"cursor": "x"}, {"since": "bad"}, {"since": "0001-01-01T00:00:00"},
    {"until": "0001-01-01T00:00:00+14:00"}, {"since": "9999-12-31T23:59:59-14:00"},
    {"since": "2030-01-01", "until": "2020-01-01"}, {"by": "bogus"}, {"format": "xml"},
    {"package": "\x00"}, {"user": "a\x00"}, {"subdir": "\x00"}, {"channel": "\x00"},
    {"user": "x" * 300}, {"since": "99999999999"}, {"since": "\uff12\uff10\uff12\uff16-01-01"},
    {"since": "2026-01-0²"}, {"until": "2026-01-01T00:00:0²"}, {"cursor": "²"}, {"limit": "²"},
]  # fmt: skip


@pytest.mark.parametrize("who", ["anonymous", "nobody", "admin"])
def test_odd_input_is_a_4xx_problem_never_a_500(world: World, who: str) -> None:
    client = {
        "anonymous": world.live.client(),
        "nobody": world.live.client(auth=(world.nobody, PASSWORD)),
        "admin": world.live.admin,
    }[who]
    answers = []
    for params in ODD_SEARCH:
        answers.append(client.get(f"{API}/search", params=params))
        answers.append(client.get("/search", params=params))
    for params in ODD_DOWNLOADS:
        answers += [client.get(f"{API}/downloads{p}", params=params) for p in ("", "/report")]
        answers.append(client.get("/admin/downloads", params=params))
    for name in ('"', "%00", "NEAR(a", "x" * 300, "%E2%80%8B", "a%0Ab"):
        answers.append(client.get(f"{API}/search/where/{name}"))
        answers.append(client.get(f"/search/where/{name}"))
    for r in answers:
        assert r.status_code < 500, (r.request.url, r.text[:300])
        if who != "admin":
            _no_leak(world, r)
        if r.status_code >= 400 and r.request.url.path.startswith(API):
            assert r.headers["content-type"].startswith("application/problem+json"), r.text


def test_digits_that_int_refuses_are_a_4xx(world: World) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` fails: page numbers and ids from the address or
    a form must be ASCII digits, else a 500."""
    web = world.web(world.nobody)
    admin = world.live.client()
    assert sign_in(admin, "admin", ADMIN_PASSWORD).status_code == 303
    token = csrf_of(admin.get(f"/channels/{world.open}/notices").text)
    answers = [
        web.get("/search", params={"q": "openpkg", "start": "²"}),
        admin.get(f"/channels/{world.open}/files", params={"after": "²"}),
        admin.post(
            f"/channels/{world.open}/notices",
            data={"csrf_token": token, "message": "hello", "level": "info", "days": "²"},
        ),
        admin.post(f"/channels/{world.open}/notices/²/remove", data={"csrf_token": token}),
    ]
    for r in answers:
        assert r.status_code < 500, (r.request.url, r.text[:300])
