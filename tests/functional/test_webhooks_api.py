"""Webhooks over HTTP, end to end: a channel owner registers endpoints, a real OSV feed syncs, the
server calls a real HTTP receiver (signed), curation to ``active`` calls again, a failing receiver
is retried until it answers, and the API guards the secret and the channel.

The server runs with small retry waits (``webhooks.backoff_s``, ``webhooks.poll_s``) so that the
retries happen within the test; nothing asserts on time. The receiver listens on 127.0.0.1, so
the server allows loopback destinations (``webhooks.allow_loopback``), which are refused by default.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, backends
from tests.functional.test_identity_api import is_problem, make_user, token_for
from tests.support.cves import cli_for, osv_folder, run_cli, sync_osv_folder, unique, upload
from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.webhook_receiver import Call, Receiver, receiving

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("webhooks-api")]

ADVISORY = "PYSEC-2021-76"  # aiohttp: introduced 0, fixed 3.7.4
FILENAME = "aiohttp-3.7.3-0.conda"
API = "/api/v1"
REFUSED = "webhook:refused-destination"


@dataclass
class World:
    live: LiveServer
    receiver: Receiver
    channel: str  # public, made by ``owner``
    private: str  # private, made by ``owner``
    owner: httpx.Client
    outsider: httpx.Client
    main: dict[str, Any]  # the webhook at /main (both events), with its secret
    flaky: dict[str, Any]  # at /flaky (active only): answers 500 twice, then 200
    tmp: Path

    def hooks(self, channel: str | None = None) -> str:
        return f"{API}/channels/{channel or self.channel}/webhooks"


def about(event: str, path: str, vuln: str | None = None) -> Any:
    def match(call: Call) -> bool:
        if call.path != path or call.event != event:
            return False
        return vuln is None or call.json.get("vulnerability", {}).get("id") == vuln

    return match


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp(f"webhooks-{request.param}")
    tmp = tmp_path_factory.mktemp("webhooks-work")
    folder = osv_folder(tmp, "aiohttp")
    fast = {"backoff_s": [0.2], "poll_s": 0.2, "timeout_s": 5, "allow_loopback": True}
    with (
        receiving() as receiver,
        fresh_database(request.param, data_dir, PG_URL) as db_url,
        run_server(data_dir, db_url, webhooks=fast) as live,
    ):
        owner = live.client(token_for(live, make_user(live)))
        outsider = live.client(token_for(live, make_user(live)))
        channel, private = unique("wh-open"), unique("wh-private")
        for name, privacy in ((channel, "public"), (private, "private")):
            r = owner.post(f"{API}/channels", json={"name": name, "privacy": privacy})
            assert r.status_code == 201, r.text
        hooks = f"{API}/channels/{channel}/webhooks"
        r = owner.post(hooks, json={"url": f"{receiver.url}/main", "description": "main"})
        assert r.status_code == 201, r.text
        main = r.json()
        receiver.script("/flaky", [500, 500])
        body = {"url": f"{receiver.url}/flaky", "events": ["vulnerability.active"]}
        r = owner.post(hooks, json={**body, "secret": "a-given-secret-of-the-owner"})
        assert r.status_code == 201, r.text
        flaky = r.json()
        upload(live, channel, tmp, "aiohttp", "3.7.3", "0")
        sync_osv_folder(live, folder)
        yield World(live, receiver, channel, private, owner, outsider, main, flaky, tmp)


def test_a_new_match_calls_the_owners_webhook(world: World) -> None:
    (call,) = world.receiver.wait(about("vulnerability.matched", "/main", ADVISORY))
    assert call.verifies(world.main["secret"])
    assert call.headers["x-stockade-delivery"] == call.json["delivery_id"]
    body = call.json
    assert body["event"] == "vulnerability.matched" and body["channel"] == world.channel
    assert body["status"] == "reported" and body["url"].endswith(f"/cves/{ADVISORY}")
    assert [a["filename"] for a in body["artifacts"]] == [FILENAME]
    assert body["vulnerability"]["aliases"]  # the CVE id of the advisory, among others
    # the flaky endpoint wants "active" only
    assert not [c for c in world.receiver.on("/flaky") if c.event == "vulnerability.matched"]
    r = world.owner.get(f"{world.hooks()}/{world.main['id']}/deliveries")
    assert r.status_code == 200, r.text
    shown = {d["delivery_id"]: d for d in r.json()}
    assert shown[call.json["delivery_id"]]["state"] in ("pending", "delivered")


def test_curation_to_active_calls_again_and_a_failing_receiver_gets_it_on_the_third_try(
    world: World,
) -> None:
    body = {"package": "aiohttp", "version": "3.7.3", "status": "active", "note": "confirmed"}
    r = world.live.admin.post(f"{API}/cves/{ADVISORY}/curations", json=body)
    assert r.status_code == 201, r.text
    (call,) = world.receiver.wait(about("vulnerability.active", "/main", ADVISORY))
    assert call.verifies(world.main["secret"])
    assert call.json["status"] == "active" and call.json["channel"] == world.channel
    assert [a["filename"] for a in call.json["artifacts"]] == [FILENAME]

    calls = world.receiver.wait(about("vulnerability.active", "/flaky", ADVISORY), count=3)
    assert [c.status for c in calls] == [500, 500, 200]
    assert len({c.headers["x-stockade-delivery"] for c in calls}) == 1
    assert all(c.verifies("a-given-secret-of-the-owner") for c in calls)
    url = f"{world.hooks()}/{world.flaky['id']}/deliveries"
    deadline = time.monotonic() + 30
    while True:  # the outcome of the 3rd call is written just after it answered
        (delivery,) = world.owner.get(url).json()
        if delivery["state"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delivery["state"] == "delivered" and delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200 and delivery["last_error"] is None


def test_the_secret_is_shown_once(world: World) -> None:
    secret = world.main["secret"]
    assert secret and len(secret) >= 32
    hook = f"{world.hooks()}/{world.main['id']}"
    for response in (
        world.owner.get(world.hooks()),
        world.owner.get(hook),
        world.owner.get(f"{hook}/deliveries"),
        world.owner.patch(hook, json={"description": "still main"}),
    ):
        assert response.status_code == 200, response.text
        assert secret not in response.text
    assert world.owner.patch(hook, json={"description": "x"}).json()["secret"] is None
    assert "secret" not in world.owner.get(hook).json()
    # a rotation shows the new one, once; pings are signed with it
    extra = world.owner.post(world.hooks(), json={"url": f"{world.receiver.url}/rotated"})
    assert extra.status_code == 201, extra.text
    made = extra.json()
    r = world.owner.patch(f"{world.hooks()}/{made['id']}", json={"rotate_secret": True})
    assert r.status_code == 200, r.text
    rotated = r.json()["secret"]
    assert rotated and rotated != made["secret"]
    r = world.owner.post(f"{world.hooks()}/{made['id']}/ping")
    assert r.status_code == 202, r.text
    (call,) = world.receiver.wait(about("ping", "/rotated"))
    assert call.verifies(rotated) and not call.verifies(made["secret"])
    assert call.json["channel"] == world.channel
    # audited, without the secrets
    r = world.live.admin.get(f"{API}/audit", params={"target_type": "webhook", "limit": 1000})
    assert r.status_code == 200, r.text
    types = {(e["event_type"], e["target_id"]) for e in r.json()["events"]}
    assert {("webhook.create", str(made["id"])), ("webhook.update", str(made["id"]))} <= types
    for shown in (secret, made["secret"], rotated, "a-given-secret-of-the-owner"):
        assert shown not in r.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://example.org/hook"}, "webhook:bad-url"),
        ({"url": "https://user:pw@example.org/hook"}, "webhook:bad-url"),
        ({"url": "https://example.org/" + "x" * 2100}, "webhook:bad-url"),
        ({"url": "/relative/hook"}, "webhook:bad-url"),
        ({"url": "https://example.org/hook", "secret": "short"}, "webhook:bad-secret"),
        ({"url": "https://example.org/hook", "events": []}, "webhook:bad-event"),
        ({"url": "https://example.org/hook", "events": ["ping"]}, None),
    ],
    ids=["ftp", "credentials", "too-long", "relative", "short-secret", "no-event", "ping-event"],
)
def test_bad_input_is_a_problem_and_changes_nothing(
    world: World, body: dict[str, Any], code: str | None
) -> None:
    before = world.owner.get(world.hooks()).json()
    is_problem(world.owner.post(world.hooks(), json=body), 422, code)
    assert world.owner.get(world.hooks()).json() == before


def test_loopback_is_allowed_here_but_not_link_local(world: World) -> None:
    before = world.owner.get(world.hooks()).json()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://0.0.0.0/"):
        is_problem(world.owner.post(world.hooks(), json={"url": url}), 422, REFUSED)
    assert world.owner.get(world.hooks()).json() == before
    r = world.owner.post(world.hooks(), json={"url": "http://127.0.0.1:9/hook"})
    assert r.status_code == 201, r.text
    assert world.owner.delete(r.json()["href"]).status_code == 204


def test_loopback_and_link_local_are_refused_by_default(tmp_path: Path) -> None:
    with (
        fresh_database("sqlite", tmp_path, None) as db_url,
        # the LAN only when an admin allows it (docs/adr/0010); loopback stays refused
        run_server(tmp_path, db_url, outbound={"allow_private": True}) as live,
    ):
        hooks = f"{API}/channels/{live.new_channel()}/webhooks"
        hook = f"{hooks}/1"
        for url in ("http://127.0.0.1/", "http://169.254.169.254/", "http://localhost:8080/x"):
            is_problem(live.admin.post(hooks, json={"url": url}), 422, REFUSED)
        assert live.admin.get(hooks).json() == []
        r = live.admin.post(hooks, json={"url": "http://192.168.10.20/hook"})  # allowed LAN
        assert r.status_code == 201, r.text
        is_problem(live.admin.patch(hook, json={"url": "http://127.0.0.2/"}), 422, REFUSED)


def test_unknown_webhooks_and_deliveries_are_404(world: World) -> None:
    is_problem(world.owner.get(f"{world.hooks()}/999999"), 404, "webhook:not-found")
    hook = f"{world.hooks()}/{world.main['id']}"
    is_problem(
        world.owner.post(f"{hook}/deliveries/{uuid.uuid4()}/redeliver"),
        404,
        "webhook:delivery-not-found",
    )
    # a webhook of another channel is not found through this one
    is_problem(
        world.owner.get(f"{world.hooks(world.private)}/{world.main['id']}"),
        404,
        "webhook:not-found",
    )
    is_problem(world.owner.get(f"{world.hooks()}/not-a-number"), 422)


def test_only_those_who_manage_the_channel(world: World) -> None:
    hook = f"{world.hooks()}/{world.main['id']}"
    is_problem(world.outsider.get(world.hooks()), 403)  # reads the public channel, no manage
    is_problem(world.outsider.post(world.hooks(), json={"url": "https://example.org/x"}), 403)
    is_problem(world.outsider.get(hook), 403)
    is_problem(world.outsider.delete(hook), 403)
    is_problem(world.outsider.get(world.hooks(world.private)), 404)  # cannot see it at all
    is_problem(world.live.client().get(world.hooks()), 401)
    assert world.live.admin.get(world.hooks()).status_code == 200
    # a manage grant is enough
    manager = make_user(world.live)
    r = world.live.admin.put(
        f"{API}/channels/{world.private}/members", json={"level": "manage", "user": manager}
    )
    assert r.status_code == 200, r.text
    client = world.live.client(token_for(world.live, manager))
    assert client.get(world.hooks(world.private)).status_code == 200


def test_routes_of_a_sub_channel(world: World) -> None:
    parent = unique("wh-parent")
    child = f"{parent}/child"
    for name in (parent, child):
        r = world.owner.post(f"{API}/channels", json={"name": name})
        assert r.status_code == 201, r.text
    hooks = world.hooks(child)
    r = world.owner.post(hooks, json={"url": f"{world.receiver.url}/child"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["channel"] == child and made["href"] == f"{hooks}/{made['id']}"
    assert [h["id"] for h in world.owner.get(hooks).json()] == [made["id"]]
    assert world.owner.get(world.hooks(parent)).json() == []
    assert world.owner.get(made["href"]).json()["url"] == f"{world.receiver.url}/child"
    r = world.owner.patch(made["href"], json={"events": ["vulnerability.active"]})
    assert r.status_code == 200 and r.json()["events"] == ["vulnerability.active"]
    ping = world.owner.post(f"{made['href']}/ping")
    assert ping.status_code == 202, ping.text
    (call,) = world.receiver.wait(about("ping", "/child"))
    assert call.json["channel"] == child and call.verifies(made["secret"])
    delivery = ping.json()["delivery_id"]
    listed = world.owner.get(f"{made['href']}/deliveries").json()
    assert [d["delivery_id"] for d in listed] == [delivery]
    again = world.owner.post(f"{made['href']}/deliveries/{delivery}/redeliver")
    assert again.status_code == 202, again.text
    calls = world.receiver.wait(about("ping", "/child"), count=2)
    assert {c.headers["x-stockade-delivery"] for c in calls} == {delivery}
    assert world.owner.get(f"{API}/channels/{child}").status_code == 200  # channels still route
    assert world.owner.delete(made["href"]).status_code == 204
    is_problem(world.owner.get(made["href"]), 404, "webhook:not-found")


# ------------------------------------------------------------------------------------------ CLI


def test_the_cli(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    cli = cli_for(monkeypatch, tmp_path, world.live)

    def run(*args: str, code: int = 0, stdin: str | None = None) -> str:
        return run_cli(cli, *args, code=code, stdin=stdin)

    url = f"{world.receiver.url}/cli"
    out = run("webhook", "add", world.channel, "--url", url, "--event", "vulnerability.active")
    assert "secret (shown once" in out
    listed = json.loads(run("webhook", "list", world.channel, "--json"))
    made = next(h for h in listed if h["url"] == url)
    assert made["events"] == ["vulnerability.active"] and "secret" not in made
    secret = "a-secret-from-standard-input"
    out = run("webhook", "update", world.channel, str(made["id"]), "--secret-stdin", stdin=secret)
    assert secret not in out
    assert "ping queued" in run("webhook", "ping", world.channel, str(made["id"]))
    (call,) = world.receiver.wait(about("ping", "/cli"))
    assert call.verifies(secret)
    shown = json.loads(run("webhook", "deliveries", world.channel, str(made["id"]), "--json"))
    assert [d["event"] for d in shown] == ["ping"]
    assert str(made["id"]) in run("webhook", "show", world.channel, str(made["id"]))
    out = run("webhook", "add", world.channel, "--url", "ftp://nope", code=1)
    assert "http:// or https://" in out
    run("webhook", "add", world.channel, "--url", url, "--event", "nope", code=1)
    run("webhook", "remove", world.channel, str(made["id"]), "--yes")
    run("webhook", "show", world.channel, str(made["id"]), code=1)
