"""Bad requests to the mirror, run and policy routes: a 4xx RFC 9457 problem with a ``code``, never
a 5xx, and nothing changes (the lists of mirrors, policies and channels are the same after)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.mirror_data import TEST_RECIPES
from tests.support.server import LiveServer

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [pytest.mark.functional, pytest.mark.one_config]

API = "/api/v1"
HUGE = 2**70
MIRROR = (
    "bim-fixture"  # exists (made by the fixture; fixed: parameter ids must agree across workers)
)
POLICY = "bip-fixture"  # exists, assigned to nothing
GOOD = {"name": "bi-new", "source": "https://conda.example.org/channel"}


@dataclass(frozen=True)
class World:
    live: LiveServer
    run_id: int
    owner_token: str
    owner_channel: str


@pytest.fixture(scope="module")
def world(live_server: LiveServer) -> World:
    admin = live_server.admin
    created = admin.post(
        f"{API}/mirrors",
        json={
            "name": MIRROR,
            "source": TEST_RECIPES.as_uri(),
            "subdirs": ["noarch"],
            "schedule": "",
            "mode": "passive",
        },
    )
    assert created.status_code == 201, created.text
    run = admin.post(f"{API}/mirrors/{MIRROR}/runs")
    assert run.status_code == 202, run.text
    policy = admin.post(f"{API}/policies", json={"name": POLICY, "definition": {}})
    assert policy.status_code == 201, policy.text
    owner = f"bio-{uuid.uuid4().hex[:8]}"
    made = admin.post(f"{API}/users", json={"username": owner, "password": "owner-password-1"})
    assert made.status_code == 201, made.text
    issued = admin.post(
        f"{API}/tokens", json={"name": "bad-input", "expires_in_days": 3, "user": owner}
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    channel = f"bioc-{uuid.uuid4().hex[:8]}"
    mine = live_server.client(token).post(f"{API}/channels", json={"name": channel})
    assert mine.status_code == 201, mine.text
    return World(live_server, int(run.json()["id"]), token, channel)


def _state(client: httpx.Client) -> tuple[Any, ...]:
    def get(path: str) -> Any:
        response = client.get(f"{API}{path}")
        assert response.status_code == 200, response.text
        return response.json()

    mirrors = get("/mirrors")
    for mirror in mirrors:  # a run of the fixture's mirror may move on meanwhile
        mirror.pop("last_run", None)
    channels = sorted(c["name"] for c in get("/channels"))
    return mirrors, get("/policies"), channels


def _problem(response: httpx.Response, expected: int | tuple[int, ...] | None = None) -> dict:
    assert response.status_code < 500, (response.status_code, response.text)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if expected is not None:
        allowed = expected if isinstance(expected, tuple) else (expected,)
        assert response.status_code in allowed, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert isinstance(body.get("code"), str) and body["code"], body
    assert body.get("detail"), body
    return body


def _send(
    world: World, method: str, path: str, *, token: str | None = None, **kwargs: Any
) -> httpx.Response:
    client = world.live.client(token or world.live.admin_token)
    before = _state(world.live.admin)
    response = client.request(method, f"{API}{path}", **kwargs)
    assert _state(world.live.admin) == before, f"{method} {path} changed something"
    return response


# -- mirrors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({**GOOD, "colour": "red"}, 422, "request:invalid", "colour"),
        ({**GOOD, "subdirs": "noarch"}, 422, "request:invalid", "subdirs"),
        ({**GOOD, "subdirs": [1, 2]}, 422, "request:invalid", "subdirs"),
        ({**GOOD, "subdirs": []}, 422, "mirror:invalid", "subdirs"),
        ({**GOOD, "subdirs": ["linux 64"]}, 422, "mirror:invalid", "subdirs"),
        ({**GOOD, "subdirs": ["../etc"]}, 422, "mirror:invalid", "subdirs"),
        ({**GOOD, "concurrency": "many"}, 422, "request:invalid", "concurrency"),
        ({**GOOD, "concurrency": 0}, 422, "request:invalid", "concurrency"),
        ({**GOOD, "concurrency": HUGE}, 422, "request:invalid", "concurrency"),
        ({**GOOD, "enabled": "perhaps"}, 422, "request:invalid", "enabled"),
        ({**GOOD, "mode": "eager"}, 422, "request:invalid", "mode"),
        ({**GOOD, "schedule": "every day"}, 422, "mirror:invalid", "schedule"),
        ({**GOOD, "schedule": "61 * * * *"}, 422, "mirror:invalid", "schedule"),
        ({**GOOD, "schedule": "* * * * * *"}, 422, "mirror:invalid", "schedule"),
        ({**GOOD, "proxy": "not a url"}, 422, "mirror:invalid", "proxy"),
        ({**GOOD, "proxy": "ftp://proxy.example.org"}, 422, "mirror:invalid", "proxy"),
        ({**GOOD, "ca_bundle": "certs/ca.pem"}, 422, "mirror:invalid", "ca_bundle"),
        ({**GOOD, "ca_bundle": "/nonexistent/ca.pem"}, 422, "mirror:invalid", "ca_bundle"),
        ({**GOOD, "source": ""}, 422, "request:invalid", "source"),
        ({**GOOD, "source": "ftp://example.org/c"}, 422, "mirror:invalid", "source"),
        ({**GOOD, "source": "conda-forge"}, 422, "mirror:invalid", "source"),
        ({**GOOD, "source": "https://u:p@example.org/c"}, 422, "mirror:credentials-in-url", ""),
        ({**GOOD, "source": "https://example.org:99999/c"}, 422, "mirror:invalid", "source"),
        ({**GOOD, "source": "file://host/srv/c"}, 422, "mirror:invalid", "source"),
        ({**GOOD, "name": "has space"}, 422, "mirror:invalid", "name"),
        ({**GOOD, "name": ""}, 422, "request:invalid", "name"),
        ({**GOOD, "name": MIRROR}, 409, "mirror:exists", "name"),
        ({**GOOD, "privacy": "secret"}, 422, "request:invalid", "privacy"),
        ({**GOOD, "companions": ["no-such-channel-anywhere"]}, 404, None, ""),
        ({**GOOD, "allowed_names": ["Not A Name!"]}, 422, "mirror:invalid", "allowed_names"),
        ({"source": GOOD["source"]}, 422, "request:invalid", "name"),
        ([GOOD], 422, "request:invalid", ""),
    ],
)
def test_create_mirror_refused(
    world: World, body: Any, status: int, code: str | None, field: str
) -> None:
    problem = _problem(_send(world, "POST", "/mirrors", json=body), status)
    if code:
        assert problem["code"] == code, problem
    assert field in f"{problem.get('field', '')} {problem['detail']}", problem
    assert world.live.admin.get(f"{API}/mirrors/bi-new").status_code == 404
    assert world.live.admin.get(f"{API}/channels/bi-new").status_code == 404


def test_create_mirror_not_json(world: World) -> None:
    response = _send(
        world,
        "POST",
        "/mirrors",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    _problem(response, 422)


@pytest.mark.parametrize("source", [TEST_RECIPES.as_uri(), "file:///etc"])
def test_file_source_is_for_admins(world: World, source: str) -> None:
    """A channel owner may mirror into their channel, but not read the server's disk."""
    body = {"name": f"bio-{uuid.uuid4().hex[:6]}", "source": source, "channel": world.owner_channel}
    response = _send(world, "POST", "/mirrors", token=world.owner_token, json=body)
    problem = _problem(response, 403)
    assert problem["code"] == "mirror:admin-only", problem
    # Nor by changing a mirror's source, nor with a CA bundle (a file of the server).
    ok = {**body, "source": "https://conda.example.org/c", "schedule": "", "check": False}
    made = world.live.client(world.owner_token).post(f"{API}/mirrors", json=ok)
    assert made.status_code == 201, made.text
    for change in ({"source": source}, {"ca_bundle": str(TEST_RECIPES / "noarch/repodata.json")}):
        response = _send(
            world, "PATCH", f"/mirrors/{body['name']}", token=world.owner_token, json=change
        )
        assert _problem(response, 403)["code"] == "mirror:admin-only"
    deleted = world.live.client(world.owner_token).delete(f"{API}/mirrors/{body['name']}")
    assert deleted.status_code == 204, deleted.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"subdirs": []}, "mirror:invalid"),
        ({"schedule": "0 0 * *"}, "mirror:invalid"),
        ({"proxy": "socks9://x"}, "mirror:invalid"),
        ({"ca_bundle": "relative.pem"}, "mirror:invalid"),
        ({"source": "gopher://x/y"}, "mirror:invalid"),
        ({"name": "renamed"}, "request:invalid"),
        ({"concurrency": 65}, "request:invalid"),
        ({"mode": None, "colour": 1}, "request:invalid"),
        ({"enabled": [True]}, "request:invalid"),
    ],
)
def test_update_mirror_refused(world: World, body: dict[str, Any], code: str) -> None:
    problem = _problem(_send(world, "PATCH", f"/mirrors/{MIRROR}", json=body), 422)
    assert problem["code"] == code, problem


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/mirrors/no-such-mirror", {}, 404),
        ("PATCH", "/mirrors/no-such-mirror", {"json": {"schedule": ""}}, 404),
        ("DELETE", "/mirrors/no-such-mirror", {}, 404),
        ("POST", "/mirrors/no-such-mirror/runs", {}, 404),
        ("GET", "/mirrors/no-such-mirror/runs", {}, 404),
        ("GET", "/mirrors/no-such-mirror/exclusions", {}, 404),
        ("GET", f"/mirrors/{MIRROR}/runs?before={HUGE}", {}, 422),
        ("GET", f"/mirrors/{MIRROR}/runs?before=abc", {}, 422),
        ("GET", f"/mirrors/{MIRROR}/runs?before=-1", {}, 422),
        ("GET", f"/mirrors/{MIRROR}/runs?limit=0", {}, 422),
        ("GET", f"/mirrors/{MIRROR}/runs?limit={HUGE}", {}, 422),
        ("GET", f"/mirrors/{MIRROR}/exclusions?limit=0", {}, 422),
        ("GET", f"/mirrors/{MIRROR}/exclusions?limit=x", {}, 422),
        ("GET", f"/mirrors/{MIRROR}/exclusions?subdir={'x' * 100}", {}, 422),
        ("GET", "/runs/abc", {}, 422),
        ("GET", "/runs/1.5", {}, 422),
        ("GET", "/runs/0", {}, 422),
        ("GET", "/runs/-3", {}, 422),
        ("GET", f"/runs/{HUGE}", {}, 422),
        ("GET", f"/runs/{2**63}", {}, 422),
        ("GET", "/runs/987654321", {}, 404),
        ("POST", "/runs/abc/stop", {}, 422),
        ("POST", f"/runs/{HUGE}/stop", {}, 422),
        ("POST", "/runs/987654321/stop", {}, 404),
        ("GET", "/runs/abc/logs", {}, 422),
        ("GET", f"/runs/{HUGE}/logs", {}, 422),
        ("GET", "/runs/987654321/logs", {}, 404),
        ("GET", "/runs/{run}/logs?after=-1", {}, 422),
        ("GET", f"/runs/{{run}}/logs?after={HUGE}", {}, 422),
        ("GET", "/runs/{run}/logs?after=x", {}, 422),
        ("GET", "/runs/{run}/logs?limit=0", {}, 422),
        ("GET", "/runs/{run}/logs?limit=999999", {}, 422),
    ],
)
def test_mirror_and_run_routes_refuse(
    world: World, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    path = path.replace("{run}", str(world.run_id))
    _problem(_send(world, method, path, **kwargs), status)


def test_delete_mirror_with_an_active_run_refused(world: World) -> None:
    """The fixture's run may have ended already (a worker runs it): then another one is asked
    for, which is refused while the first is active."""
    runs = world.live.admin.get(f"{API}/mirrors/{MIRROR}/runs").json()
    if runs[0]["state"] in ("pending", "running"):
        problem = _problem(_send(world, "DELETE", f"/mirrors/{MIRROR}"), 409)
        assert problem["code"] == "mirror:run-active"


# -- policies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"cooldown_days": -1}, "cooldown_days"),
        ({"cooldown_days": "soon"}, "cooldown_days"),
        ({"keep_latest": 0}, "keep_latest"),
        ({"keep_latest": HUGE}, "keep_latest"),
        ({"licenses": ["gpl3", "nosuchfamily"]}, "licenses"),
        ({"licenses": "gpl3"}, "licenses"),
        ({"licenses_mode": "maybe"}, "licenses_mode"),
        ({"platforms": ["linux 64"]}, "platforms"),
        ({"platforms_mode": "around"}, "platforms_mode"),
        ({"only_specs": ["numpy >=>1"]}, "only_specs"),
        ({"exclude_specs": ["=="]}, "exclude_specs"),
        ({"exceptions": ["python[version=>>3]"]}, "exceptions"),
        ({"date_from": "2025-01-01T00:00:00Z", "date_to": "2024-01-01T00:00:00Z"}, "date_to"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"cve_score": {"threshold": 11}}, "threshold"),
        ({"cve_score": {"threshold": 7, "operator": "<"}}, "operator"),
        ({"cve_score": {"threshold": 7, "statuses": ["ignored"]}}, "statuses"),
        ({"colour": "red"}, "colour"),
        ({"signed_only": "yes please"}, "signed_only"),
    ],
)
def test_policy_definition_refused_naming_the_field(
    world: World, definition: dict[str, Any], field: str
) -> None:
    name = f"bipn-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "definition": definition}
    problem = _problem(_send(world, "POST", "/policies", json=body), 422)
    assert field in f"{problem.get('field', '')} {problem['detail']}", problem
    assert world.live.admin.get(f"{API}/policies/{name}").status_code == 404
    # The same definition as a change of an existing policy, and as a draft dry run.
    patched = _send(world, "PATCH", f"/policies/{POLICY}", json={"definition": definition})
    assert field in _problem(patched, 422)["detail"] + str(patched.json().get("field", ""))
    draft = {"channel": MIRROR, "definition": definition}
    _problem(_send(world, "POST", "/policies/dry-run", json=draft), 422)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/policies", {"json": {"name": "", "definition": {}}}, 422),
        ("POST", "/policies", {"json": {"name": "x" * 200}}, 422),
        ("POST", "/policies", {"json": {"name": POLICY}}, 409),
        ("POST", "/policies", {"json": {"name": "bip-ok", "extra": 1}}, 422),
        ("PATCH", "/policies/no-such-policy", {"json": {"description": "x"}}, 404),
        ("PATCH", f"/policies/{POLICY}", {"json": {"name": "renamed"}}, 422),
        ("DELETE", "/policies/no-such-policy", {}, 404),
        ("GET", "/policies/no-such-policy", {}, 404),
        (
            "POST",
            f"/policies/{POLICY}/assignments",
            {"json": {"channel": MIRROR, "mirror": MIRROR}},
            (409, 422),
        ),
        ("POST", f"/policies/{POLICY}/assignments", {"json": {}}, 422),
        ("POST", f"/policies/{POLICY}/assignments", {"json": {"channel": "no-such-c"}}, 404),
        ("POST", f"/policies/{POLICY}/assignments", {"json": {"mirror": "no-such-m"}}, 404),
        ("POST", f"/policies/{POLICY}/assignments", {"json": {"channel": 5}}, 422),
        ("POST", "/policies/no-such-policy/assignments", {"json": {"mirror": MIRROR}}, 404),
        ("DELETE", f"/policies/{POLICY}/assignments?channel={MIRROR}", {}, 404),
        ("DELETE", f"/policies/{POLICY}/assignments?mirror={MIRROR}", {}, 404),
        ("DELETE", f"/policies/{POLICY}/assignments", {}, (404, 422)),
        ("POST", f"/policies/{POLICY}/dry-run", {"json": {}}, 422),
        ("POST", f"/policies/{POLICY}/dry-run", {"json": {"channel": "no-such-c"}}, 404),
        ("POST", f"/policies/{POLICY}/dry-run", {"json": {"channel": MIRROR, "x": 1}}, 422),
        (
            "POST",
            f"/policies/{POLICY}/dry-run",
            {"json": {"channel": MIRROR, "mirror": "no-such-m"}},
            404,
        ),
        ("POST", "/policies/no-such-policy/dry-run", {"json": {"channel": MIRROR}}, 404),
        ("POST", "/policies/dry-run", {"json": {"channel": MIRROR, "name": ""}}, 422),
        ("GET", "/policies/explain", {}, 422),
        ("GET", f"/policies/explain?channel={MIRROR}", {}, 422),
        ("GET", f"/policies/explain?channel={MIRROR}&spec=numpy%20%3E%3D%3E1", {}, 422),
        ("GET", "/policies/explain?channel=no-such-c&spec=numpy", {}, 404),
        ("GET", f"/policies/explain?channel={MIRROR}&spec=numpy&subdir={'x' * 65}", {}, 422),
    ],
)
def test_policy_routes_refuse(
    world: World,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int | tuple[int, ...],
) -> None:
    _problem(_send(world, method, path, **kwargs), status)
