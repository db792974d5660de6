"""Mirrors, runs and policies leak nothing about what a caller cannot see, and bad values are
422 naming the field, never 500 nor silently taken (issue 11, low items).

- A mirror or run of a channel you cannot read looks exactly like one that does not exist:
  401 anonymous, 404 signed in, with a message that names no channel.
- Policy listings name only the channels and mirrors the caller can read.
- ``null`` for a field a mirror always has, and a cron schedule that never fires, are refused.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.mirror_api import API, admin, make_mirror, make_policy, run_mirror, unique
from tests.support.mirror_data import TEST_RECIPES
from tests.support.server import LiveServer

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [pytest.mark.functional, pytest.mark.one_config]
PASSWORD = "leak-tester-pass-1"


def _user(live: LiveServer, *, policy_reader: bool = False) -> httpx.Client:
    name = unique("u")
    made = admin(live).post(f"{API}/users", json={"username": name, "password": PASSWORD})
    assert made.status_code == 201, made.text
    if policy_reader:
        role = unique("policy-reader")
        body = {"name": role, "permissions": {"policies": "read"}}
        assert admin(live).post(f"{API}/roles", json=body).status_code == 201
        given = admin(live).post(f"{API}/roles/{role}/assignments", json={"user": name})
        assert given.status_code == 200, given.text
    return live.client(auth=(name, PASSWORD))


def _private_mirror(live: LiveServer) -> tuple[dict[str, Any], int]:
    channel = unique("secret")
    mirror = make_mirror(
        live,
        source=TEST_RECIPES.as_uri(),
        subdirs=["noarch"],
        channel=channel,
        privacy="private",
    )
    run = run_mirror(live, mirror["name"], channel=channel)
    return mirror, int(run["id"])


def test_hidden_mirror_and_run_look_like_missing_ones(live_server: LiveServer) -> None:
    mirror, run_id = _private_mirror(live_server)
    hidden, channel = mirror["name"], mirror["channel"]
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    paths = [
        ("/mirrors/{m}", "/mirrors/{m}/runs", "/mirrors/{m}/exclusions"),
        ("/runs/{r}", "/runs/{r}/logs"),
    ]
    callers = {401: live_server.client(), 404: _user(live_server)}
    for status, client in callers.items():
        for template in paths[0]:
            seen = [client.get(API + template.format(m=m)) for m in (hidden, missing)]
            _same(seen, status, channel)
        for template in paths[1]:
            seen = [client.get(API + template.format(r=r)) for r in (run_id, 2**31 - 1)]
            _same(seen, status, channel)
        stop = [client.post(f"{API}/runs/{r}/stop") for r in (run_id, 2**31 - 1)]
        assert {r.status_code for r in stop} == {401 if status == 401 else 404}
    assert admin(live_server).get(f"{API}/mirrors/{hidden}").status_code == 200


def _same(seen: list[httpx.Response], status: int, channel: str) -> None:
    assert [r.status_code for r in seen] == [status, status], [r.text for r in seen]
    codes = {r.json()["code"] for r in seen}
    assert len(codes) == 1, codes
    for response in seen:
        assert channel not in response.text
        if status == 401:
            assert "WWW-Authenticate" in response.headers


def test_policy_listing_names_only_readable_targets(live_server: LiveServer) -> None:
    mirror, _run = _private_mirror(live_server)
    public = make_mirror(live_server, source=TEST_RECIPES.as_uri(), subdirs=["noarch"])
    policy = make_policy(live_server, {"keep_latest": 1})
    client = admin(live_server)
    for target in (
        {"channel": mirror["channel"]},
        {"mirror": mirror["name"]},
        {"channel": public["channel"]},
    ):
        made = client.post(f"{API}/policies/{policy}/assignments", json=target)
        assert made.status_code == 201, made.text
    everything = client.get(f"{API}/policies/{policy}").json()["assignments"]
    assert len(everything) == 3
    reader = _user(live_server, policy_reader=True)
    shown = reader.get(f"{API}/policies/{policy}").json()["assignments"]
    assert shown == [{"policy": policy, "channel": public["channel"], "mirror": None}]
    listing = reader.get(f"{API}/policies")
    assert listing.status_code == 200
    assert mirror["channel"] not in listing.text and mirror["name"] not in listing.text
    page = reader.get("/policies")
    assert page.status_code == 200
    assert mirror["channel"] not in page.text and mirror["name"] not in page.text


NOT_NULL = ["mode", "subdirs", "concurrency", "enabled", "companions", "allowed_names", "source"]


@pytest.mark.parametrize("field", NOT_NULL)
def test_null_is_refused_naming_the_field(live_server: LiveServer, field: str) -> None:
    mirror = make_mirror(live_server, source=TEST_RECIPES.as_uri(), subdirs=["noarch"])
    client = admin(live_server)
    changed = client.patch(f"{API}/mirrors/{mirror['name']}", json={field: None})
    assert changed.status_code == 422, changed.text
    assert field in changed.text
    body = {"name": unique("n"), "source": TEST_RECIPES.as_uri(), field: None}
    created = client.post(f"{API}/mirrors", json=body)
    assert created.status_code == 422, created.text
    assert field in created.text
    after = client.get(f"{API}/mirrors/{mirror['name']}").json()
    assert after["enabled"] is True and after["subdirs"] == ["noarch"]


@pytest.mark.parametrize("schedule", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_schedule_that_never_fires_is_refused(live_server: LiveServer, schedule: str) -> None:
    mirror = make_mirror(live_server, source=TEST_RECIPES.as_uri(), subdirs=["noarch"])
    client = admin(live_server)
    changed = client.patch(f"{API}/mirrors/{mirror['name']}", json={"schedule": schedule})
    assert changed.status_code == 422, changed.text
    assert changed.json()["field"] == "schedule" and "never fires" in changed.json()["detail"]
    body = {"name": unique("n"), "source": TEST_RECIPES.as_uri(), "schedule": schedule}
    created = client.post(f"{API}/mirrors", json=body)
    assert created.status_code == 422, created.text
    assert created.json()["field"] == "schedule"
