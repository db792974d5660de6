"""Identity and access over the REST API: users, tokens, groups, roles, grants, privacy, audit."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL
from tests.support.conda_client import install_records, solve_specs
from tests.support.eventually import AUTH_BOUND_S, SERVING_BOUND_S, answers, eventually
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = pytest.mark.functional
PASSWORD = "correct-horse-battery"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_user(live: LiveServer, name: str | None = None, **extra: Any) -> str:
    name = name or unique("u")
    r = live.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD, **extra})
    assert r.status_code == 201, r.text
    return name


def token_for(live: LiveServer, username: str, **body: Any) -> str:
    r = live.client().post(
        "/api/v1/tokens",
        json={"name": unique("t"), "expires_in_days": 5, **body},
        auth=(username, PASSWORD),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def grant(live: LiveServer, channel: str, level: str, **who: str) -> None:
    r = live.admin.put(f"/api/v1/channels/{channel}/members", json={"level": level, **who})
    assert r.status_code == 200, r.text


def is_problem(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["detail"]
    if code is not None:
        assert body["code"] == code, body


@pytest.fixture(scope="module")
def private_with_package(live_server: LiveServer, testdata: Path) -> str:
    name = live_server.new_channel(privacy="private", prefix="priv")
    files = sorted((testdata / "channels/test-recipes/noarch").glob("depend*.conda"))
    assert live_server.upload(name, *files).status_code == 201
    live_server.wait_published(name)
    return name


# users -----------------------------------------------------------------------------------------


def test_admin_creates_users_and_mistakes_are_named(live_server: LiveServer) -> None:
    name = make_user(live_server, email="x@example.org")
    shown = live_server.admin.get(f"/api/v1/users/{name}").json()
    assert (
        shown["source"] == "local" and shown["email"] == "x@example.org" and not shown["is_admin"]
    )
    is_problem(
        live_server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD}),
        409,
        "user:exists",
    )
    is_problem(
        live_server.admin.post(
            "/api/v1/users", json={"username": "bad name", "password": PASSWORD}
        ),
        422,
    )
    is_problem(
        live_server.admin.post(
            "/api/v1/users", json={"username": unique("u"), "password": "short"}
        ),
        422,
    )
    is_problem(
        live_server.client().post("/api/v1/users", json={"username": "a", "password": PASSWORD}),
        401,
    )
    other = token_for(live_server, name)
    is_problem(
        live_server.client(other).post(
            "/api/v1/users", json={"username": unique("u"), "password": PASSWORD}
        ),
        403,
    )


def test_disabling_a_user_stops_their_tokens_at_once(live_server: LiveServer) -> None:
    name = make_user(live_server)
    token = token_for(live_server, name)
    assert live_server.client(token).get("/api/v1/whoami").json()["username"] == name
    r = live_server.admin.patch(f"/api/v1/users/{name}", json={"is_active": False})
    assert r.status_code == 200 and r.json()["is_active"] is False
    # at once where disabled, within a second on other replicas
    is_problem(answers(lambda: live_server.client(token).get("/api/v1/whoami"), 401), 401)
    signed_in = live_server.client(auth=(name, PASSWORD))
    is_problem(answers(lambda: signed_in.get("/api/v1/whoami"), 401), 401)


# tokens ----------------------------------------------------------------------------------------


def test_token_is_shown_once_listed_with_last_use_and_revoked(live_server: LiveServer) -> None:
    name = make_user(live_server)
    r = live_server.client().post(
        "/api/v1/tokens", json={"name": "ci", "expires_in_days": 7}, auth=(name, PASSWORD)
    )
    issued = r.json()
    assert (
        r.status_code == 201 and issued["token"].startswith("stk-") and issued["kind"] == "personal"
    )
    secret = issued["token"]
    assert live_server.client(secret).get("/api/v1/whoami").json()["username"] == name

    def listed() -> dict[str, Any]:  # its last use is written beside the request
        listing = live_server.client(secret).get("/api/v1/tokens")
        assert secret not in listing.text
        mine: dict[str, Any] = next(t for t in listing.json() if t["id"] == issued["id"])
        assert mine["last_used_at"] is not None
        return mine

    mine = eventually(listed, within=30)
    assert mine["active"] and mine["prefix"] == secret[:8]
    r = live_server.client(secret).delete(f"/api/v1/tokens/{issued['id']}")
    assert r.status_code == 200 and r.json()["revoked_at"]
    is_problem(answers(lambda: live_server.client(secret).get("/api/v1/whoami"), 401), 401)
    assert secret not in r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in_days": 100_000}, "expires_in_days"),
        ({"kind": "scope", "scopes": []}, "scopes"),
        ({"kind": "scope", "scopes": ["artifacts:fly"]}, "scopes"),
        ({"kind": "scope", "scopes": ["planets:read"]}, "scopes"),
        ({"kind": "resource", "resources": {}}, "resources"),
        ({"kind": "resource", "resources": {"no-such-channel-x": "read"}}, "resources"),
        ({"kind": "personal", "scopes": ["artifacts:read"]}, "kind"),
    ],
)
def test_bad_token_requests_are_refused(
    live_server: LiveServer, body: dict[str, Any], field: str
) -> None:
    r = live_server.admin.post("/api/v1/tokens", json={"name": "bad", **body})
    assert r.status_code == 422, r.text
    assert field in r.text


def test_resource_token_sees_only_its_channels(
    live_server: LiveServer, private_with_package: str, tmp_path: Path
) -> None:
    name = make_user(live_server)
    other = live_server.new_channel(privacy="private", prefix="other")
    grant(live_server, private_with_package, "read", user=name)
    grant(live_server, other, "write", user=name)
    token = token_for(live_server, name, kind="resource", resources={private_with_package: "read"})
    client = live_server.client(token)
    assert client.get(f"/conda/{private_with_package}/noarch/repodata.json").status_code == 200
    assert client.get(f"/conda/{other}/noarch/repodata.json").status_code == 404
    is_problem(client.get(f"/api/v1/channels/{other}"), 404)
    visible = {c["name"] for c in client.get("/api/v1/channels").json()}
    assert private_with_package in visible and other not in visible
    # a resource token cannot do more than its owner: write is not granted on this channel
    is_problem(
        client.delete(
            f"/api/v1/channels/{private_with_package}/files/noarch/dependent-1.0-0.conda"
        ),
        403,
    )
    # and it has no global powers
    is_problem(client.post("/api/v1/channels", json={"name": unique("c")}), 403)
    # py-rattler with the token in the URL solves and installs
    records = solve_specs(
        f"{live_server.url}/t/{token}/conda/{private_with_package}",
        ["dependent 2.*"],
        tmp_path / "c",
    )
    assert {r.name.normalized for r in records} == {"dependent", "dependency"}
    install_records(records, tmp_path / "env", tmp_path / "pkgs")


def test_scope_token_without_the_scope_is_refused(live_server: LiveServer) -> None:
    token = token_for_admin(live_server, kind="scope", scopes=["audit:read"])
    client = live_server.client(token)
    assert client.get("/api/v1/audit?limit=1").status_code == 200
    is_problem(
        client.post("/api/v1/users", json={"username": unique("u"), "password": PASSWORD}),
        403,
        "access:scope",
    )
    is_problem(client.post("/api/v1/channels", json={"name": unique("c")}), 403)
    who = client.get("/api/v1/whoami").json()
    assert (
        who["token_kind"] == "scope" and not who["admin"] and who["permissions"] == ["audit:read"]
    )


def token_for_admin(live: LiveServer, **body: Any) -> str:
    r = live.admin.post("/api/v1/tokens", json={"name": unique("t"), "expires_in_days": 5, **body})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def test_service_account_token_made_by_admin(
    live_server: LiveServer, private_with_package: str
) -> None:
    account = unique("ci")
    r = live_server.admin.post(
        "/api/v1/service-accounts", json={"name": account, "description": "CI"}
    )
    assert r.status_code == 201 and r.json()["kind"] == "service"
    grant(live_server, private_with_package, "write", user=account)
    token = token_for_admin(live_server, user=account)
    who = live_server.client(token).get("/api/v1/whoami").json()
    assert who["username"] == account and who["kind"] == "service"
    assert (
        live_server.client(token).get(f"/api/v1/channels/{private_with_package}/files").status_code
        == 200
    )
    # nobody but admins makes tokens for others
    name = make_user(live_server)
    user_token = token_for(live_server, name)
    is_problem(
        live_server.client(user_token).post("/api/v1/tokens", json={"name": "x", "user": account}),
        403,
    )
    # a service account has no password to sign in with
    assert live_server.client().get("/api/v1/whoami", auth=(account, "")).status_code == 401


# groups, grants, privacy ------------------------------------------------------------------------


def test_group_grant_gives_and_takes_access(
    live_server: LiveServer, private_with_package: str
) -> None:
    name = make_user(live_server)
    token = token_for(live_server, name)
    client = live_server.client(token)
    path = f"/conda/{private_with_package}/noarch/repodata.json"
    assert client.get(path).status_code == 404  # signed in, no grant: hidden, not forbidden
    assert live_server.client().get(path).status_code == 401
    group = unique("g")
    assert live_server.admin.post("/api/v1/groups", json={"name": group}).status_code == 201
    assert live_server.admin.put(f"/api/v1/groups/{group}/members/{name}").status_code == 200
    grant(live_server, private_with_package, "read", group=group)
    assert client.get(path).status_code == 200
    members = live_server.admin.get(f"/api/v1/channels/{private_with_package}/members").json()
    assert {"kind": "group", "name": group, "level": "read", "source": "local"} in members[
        "members"
    ]
    # read is not write
    is_problem(
        client.delete(
            f"/api/v1/channels/{private_with_package}/files/noarch/dependent-1.0-0.conda"
        ),
        403,
    )
    # a reader cannot manage members
    is_problem(
        client.put(
            f"/api/v1/channels/{private_with_package}/members",
            json={"user": name, "level": "manage"},
        ),
        403,
    )
    assert live_server.admin.delete(f"/api/v1/groups/{group}/members/{name}").status_code == 200
    assert client.get(path).status_code == 404


def test_authenticated_channel(live_server: LiveServer) -> None:
    name = live_server.new_channel(privacy="authenticated", prefix="auth")
    live_server.wait_published(name)
    path = f"/conda/{name}/noarch/repodata.json"
    assert live_server.client().get(path).status_code == 401
    user = make_user(live_server)
    assert live_server.client(token_for(live_server, user)).get(path).status_code == 200
    r = live_server.admin.patch(f"/api/v1/channels/{name}", json={"privacy": "public"})
    assert r.status_code == 200
    live_server.container.locator.invalidate_channels()  # this process; a replica within the bound
    answers(lambda: live_server.client().get(path), 200, within=SERVING_BOUND_S)
    is_problem(live_server.admin.patch(f"/api/v1/channels/{name}", json={"privacy": "secret"}), 422)


def test_grant_mistakes(live_server: LiveServer) -> None:
    channel = live_server.new_channel(prefix="gm")
    url = f"/api/v1/channels/{channel}/members"
    is_problem(
        live_server.admin.put(url, json={"user": "nobody-here", "level": "read"}),
        404,
        "user:not-found",
    )
    is_problem(
        live_server.admin.put(url, json={"group": "no-group-here", "level": "read"}),
        404,
        "group:not-found",
    )
    is_problem(live_server.admin.put(url, json={"level": "read"}), 422)
    assert live_server.admin.put(url, json={"user": "admin", "level": "owner"}).status_code == 422
    is_problem(live_server.admin.delete(url, params={"user": "admin"}), 404, "grant:not-found")


# roles -----------------------------------------------------------------------------------------


def test_custom_role_gives_category_levels(
    live_server: LiveServer, private_with_package: str
) -> None:
    auditor = unique("auditor")
    r = live_server.admin.post(
        "/api/v1/roles",
        json={"name": auditor, "permissions": {"audit": "read", "channels": "read"}},
    )
    assert r.status_code == 201, r.text
    assert "audit:read" in r.json()["permissions"] and "audit:manage" not in r.json()["permissions"]
    name = make_user(live_server)
    token = token_for(live_server, name)
    client = live_server.client(token)
    is_problem(client.get("/api/v1/audit"), 403)
    group = unique("g")
    live_server.admin.post("/api/v1/groups", json={"name": group})
    live_server.admin.put(f"/api/v1/groups/{group}/members/{name}")
    r = live_server.admin.post(f"/api/v1/roles/{auditor}/assignments", json={"group": group})
    assert r.status_code == 200 and r.json()["holders"] == [
        {"kind": "group", "name": group, "source": "local"}
    ]
    answers(lambda: client.get("/api/v1/audit?limit=1"), 200)  # other replicas: within 1 s
    assert client.get(f"/conda/{private_with_package}/noarch/repodata.json").status_code == 200
    is_problem(
        client.post("/api/v1/users", json={"username": unique("u"), "password": PASSWORD}), 403
    )
    # no escalation: holding role:write is not enough to hand out admin
    granter = unique("granter")
    live_server.admin.post(
        "/api/v1/roles", json={"name": granter, "permissions": {"roles": "write"}}
    )
    live_server.admin.post(f"/api/v1/roles/{granter}/assignments", json={"user": name})

    def refused_as_escalation() -> None:  # role:write held: other replicas within a second
        answer = client.post("/api/v1/roles/admin/assignments", json={"user": name})
        is_problem(answer, 403, "role:escalation")

    eventually(refused_as_escalation, within=AUTH_BOUND_S)
    # built-in roles cannot be changed, unknown categories are named
    is_problem(live_server.admin.patch("/api/v1/roles/admin", json={"description": "x"}), 409)
    r = live_server.admin.post(
        "/api/v1/roles", json={"name": unique("r"), "permissions": {"planets": "read"}}
    )
    assert r.status_code == 422 and "planets" in r.text


# audit -----------------------------------------------------------------------------------------


def test_audit_records_who_what_when_where(live_server: LiveServer) -> None:
    name = make_user(live_server)
    bad = live_server.client().get("/api/v1/whoami", auth=(name, "wrong-password"))
    assert bad.status_code == 401
    token = token_for(live_server, name)
    live_server.admin.patch(f"/api/v1/users/{name}", json={"email": "new@example.org"})
    events = live_server.admin.get("/api/v1/audit", params={"target": name}).json()["events"]
    kinds = [e["event_type"] for e in events]
    assert "user.create" in kinds and "user.update" in kinds and "auth.failed" in kinds
    update = next(e for e in events if e["event_type"] == "user.update")
    assert update["before"]["email"] is None and update["after"]["email"] == "new@example.org"
    assert update["actor"] == "admin" and update["ip"] == "127.0.0.1" and update["request_id"]
    failed = next(e for e in events if e["event_type"] == "auth.failed")
    assert failed["outcome"] == "failure" and failed["actor_kind"] == "anonymous"
    mine = live_server.admin.get("/api/v1/audit", params={"actor": name, "type": "token."}).json()
    assert [e["event_type"] for e in mine["events"]] == ["token.create"]
    assert token not in str(mine) and token[:12] not in str(mine)
    page = live_server.admin.get("/api/v1/audit", params={"limit": 2}).json()
    older = live_server.admin.get(
        "/api/v1/audit", params={"limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert older["events"][0]["seq"] < page["events"][-1]["seq"]
    report = live_server.admin.get("/api/v1/audit/verify").json()
    assert report["ok"] and report["checked"] >= len(events)
    csv_text = live_server.admin.get("/api/v1/audit/export", params={"format": "csv"}).text
    assert csv_text.startswith("seq,") and "user.create" in csv_text
    is_problem(live_server.admin.get("/api/v1/audit", params={"since": "yesterday"}), 422)


@pytest.fixture
def own_server(tmp_path: Path, backend: str) -> Iterator[LiveServer]:
    with (
        fresh_database(backend, tmp_path, PG_URL) as db_url,
        run_server(tmp_path, db_url, auth={"login_attempts_per_minute": 5}) as live,
    ):
        yield live


def test_tampering_breaks_the_chain_and_updates_are_refused(own_server: LiveServer) -> None:
    make_user(own_server)
    make_user(own_server)
    engine = create_engine(own_server.settings.db_url)
    with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE audit_events SET actor_name = 'mallory'"))
    with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("DELETE FROM audit_events"))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text("TRUNCATE audit_events"))
    assert own_server.admin.get("/api/v1/audit/verify").json()["ok"]
    with engine.begin() as conn:  # someone with the database owner's powers edits history
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
        seq = conn.execute(
            text("SELECT min(seq) FROM audit_events WHERE event_type = 'user.create'")
        ).scalar()
        conn.execute(
            text("UPDATE audit_events SET actor_name = 'mallory' WHERE seq = :s"), {"s": seq}
        )
    report = own_server.admin.get("/api/v1/audit/verify").json()
    assert report == {
        **report,
        "ok": False,
        "broken_at": seq,
        "problem": "event content was changed",
    }
    engine.dispose()


def test_lockout_and_rate_limit(own_server: LiveServer) -> None:
    name = make_user(own_server)
    client = own_server.client()
    for _ in range(5):
        assert (
            client.get("/api/v1/whoami", auth=(name, f"wrong-{uuid.uuid4().hex}")).status_code
            == 401
        )
    limited = client.get("/api/v1/whoami", auth=(name, PASSWORD + "x"))
    is_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) > 0
    # the right password is also held back while the address is limited
    assert client.get("/api/v1/whoami", auth=(name, PASSWORD)).status_code == 429
    forget_address_limits(own_server)
    for _ in range(5):
        client.get("/api/v1/whoami", auth=(name, f"wrong-{uuid.uuid4().hex}"))
    forget_address_limits(own_server)
    # 10 failures lock this name from this address, and say so the same way for any name
    r = client.get("/api/v1/whoami", auth=(name, PASSWORD))
    is_problem(r, 401, "auth:locked")
    for _ in range(10):
        client.get("/api/v1/whoami", auth=("no-such-account", f"wrong-{uuid.uuid4().hex}"))
        forget_address_limits(own_server)
    ghost = client.get("/api/v1/whoami", auth=("no-such-account", PASSWORD))
    is_problem(ghost, 401, "auth:locked")
    assert ghost.json()["detail"] == r.json()["detail"]
    assert "exist" not in r.json()["detail"]
    events = own_server.admin.get("/api/v1/audit", params={"type": "auth.failed"}).json()["events"]
    assert len(events) >= 10 and all(e["outcome"] == "failure" for e in events)


def forget_address_limits(live: LiveServer) -> None:
    """Drop the per-address counts (kept in the database), keeping those per name and address."""
    from sqlalchemy import delete

    from stockade.auth.models import SignInFailures

    with live.container.factory.begin() as session:
        session.execute(delete(SignInFailures).where(SignInFailures.key.startswith("ip:")))


def test_no_secret_reaches_logs_errors_or_redirects(
    live_server: LiveServer, private_with_package: str
) -> None:
    """What the server prints (its configured log handler), answers and redirects: no secret."""
    name = make_user(live_server)
    token = token_for(live_server, name)
    revoked = token_for(live_server, name)
    rid = next(
        t["id"]
        for t in live_server.client(token).get("/api/v1/tokens").json()
        if t["prefix"] == revoked[:8]
    )
    live_server.client(token).delete(f"/api/v1/tokens/{rid}")
    secrets = [token, revoked, PASSWORD, "wrong-password-123"]
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler))
    printed = io.StringIO()
    previous = handler.setStream(printed)
    logging.getLogger().setLevel("DEBUG")
    bodies: list[str] = []
    c = live_server.client()
    for response in (
        c.get(f"/t/{token}/conda/{private_with_package}/noarch/repodata.json"),
        c.get(f"/conda/t/{revoked}/{private_with_package}/noarch/repodata.json"),
        c.get(f"/t/{revoked}/conda/{private_with_package}/noarch/nothing.conda"),
        c.get("/api/v1/whoami", headers={"authorization": f"Bearer {revoked}"}),
        c.get("/api/v1/whoami", auth=(name, "wrong-password-123")),
        c.get("/api/v1/whoami", auth=(name, PASSWORD)),
        c.get(f"/api/v1/channels/{private_with_package}?token={token}"),
        c.get(f"/login?next=/t/{token}/x", follow_redirects=False),
        c.get(f"/t/{token}/", follow_redirects=False),
    ):
        bodies.append(response.text + str(dict(response.headers)))
    logging.getLogger().setLevel("INFO")
    handler.setStream(previous)  # type: ignore[arg-type]
    logged = printed.getvalue()
    assert "/t/***/" in logged or "stk-***" in logged  # the requests were logged, scrubbed
    for secret in secrets:
        assert secret not in logged
        for body in bodies:
            assert secret not in body
