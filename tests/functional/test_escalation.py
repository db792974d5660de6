"""Nobody hands out power they do not hold: regression tests from the security review."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.eventually import AUTH_BOUND_S, eventually
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional
PASSWORD = "correct-horse-battery"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def user_with_role(live: LiveServer, levels: dict[str, str]) -> tuple[str, httpx.Client]:
    name, role = unique("u"), unique("role")
    assert (
        live.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD}).status_code
        == 201
    )
    r = live.admin.post("/api/v1/roles", json={"name": role, "permissions": levels})
    assert r.status_code == 201, r.text
    assert (
        live.admin.post(f"/api/v1/roles/{role}/assignments", json={"user": name}).status_code == 200
    )
    token = (
        live.client()
        .post("/api/v1/tokens", json={"name": "t", "expires_in_days": 2}, auth=(name, PASSWORD))
        .json()["token"]
    )
    return name, live.client(token)


def refused(response: httpx.Response, code: str | None = None) -> None:
    assert response.status_code == 403, response.text
    if code:
        assert response.json()["code"] == code, response.json()


def test_users_write_cannot_take_over_an_admin_or_join_an_admin_group(
    live_server: LiveServer,
) -> None:
    _, client = user_with_role(live_server, {"users": "write"})
    refused(
        client.patch("/api/v1/users/admin", json={"password": "taken-over-1"}), "user:escalation"
    )
    refused(client.patch("/api/v1/users/admin", json={"is_active": False}), "user:escalation")
    admins = unique("ops")
    live_server.admin.post("/api/v1/groups", json={"name": admins})
    live_server.admin.post("/api/v1/roles/admin/assignments", json={"group": admins})
    created = unique("sock")
    assert (
        client.post("/api/v1/users", json={"username": created, "password": PASSWORD}).status_code
        == 201
    )
    refused(client.put(f"/api/v1/groups/{admins}/members/{created}"), "group:escalation")
    # a group whose role grants more than the actor holds
    auditors, role = unique("aud"), unique("auditor")
    live_server.admin.post("/api/v1/groups", json={"name": auditors})
    live_server.admin.post("/api/v1/roles", json={"name": role, "permissions": {"audit": "read"}})
    live_server.admin.post(f"/api/v1/roles/{role}/assignments", json={"group": auditors})
    refused(client.put(f"/api/v1/groups/{auditors}/members/{created}"), "role:escalation")
    # a group holding a channel grant the actor lacks
    channel = live_server.new_channel(privacy="private", prefix="esc")
    readers = unique("readers")
    live_server.admin.post("/api/v1/groups", json={"name": readers})
    live_server.admin.put(
        f"/api/v1/channels/{channel}/members", json={"group": readers, "level": "read"}
    )
    refused(client.put(f"/api/v1/groups/{readers}/members/{created}"), "grant:escalation")
    # what the actor may do: manage a plain group and a plain user
    plain = unique("plain")
    assert client.post("/api/v1/groups", json={"name": plain}).status_code == 201
    assert client.put(f"/api/v1/groups/{plain}/members/{created}").status_code == 200
    assert (
        client.patch(f"/api/v1/users/{created}", json={"password": "new-password-2"}).status_code
        == 200
    )


def test_roles_manage_cannot_widen_roles(live_server: LiveServer) -> None:
    name, client = user_with_role(live_server, {"roles": "manage"})
    mine = live_server.admin.get(f"/api/v1/users/{name}").json()["roles"][0]
    everything = dict.fromkeys(("channels", "users", "system", "audit", "roles"), "manage")
    refused(
        client.patch(f"/api/v1/roles/{mine}", json={"permissions": everything}), "role:escalation"
    )
    refused(
        client.post(
            "/api/v1/roles", json={"name": unique("r"), "permissions": {"system": "manage"}}
        )
    )
    assert (
        client.post(
            "/api/v1/roles", json={"name": unique("r"), "permissions": {"roles": "read"}}
        ).status_code
        == 201
    )
    assert "system:manage" not in client.get("/api/v1/whoami").json()["permissions"]


def test_users_manage_cannot_mint_a_token_for_an_admin_service_account(
    live_server: LiveServer,
) -> None:
    bot = unique("bot")
    live_server.admin.post("/api/v1/service-accounts", json={"name": bot})
    live_server.admin.post("/api/v1/roles/admin/assignments", json={"user": bot})
    _, client = user_with_role(live_server, {"users": "manage"})
    refused(client.post("/api/v1/tokens", json={"name": "x", "user": bot}), "user:escalation")
    plain = unique("bot")
    live_server.admin.post("/api/v1/service-accounts", json={"name": plain})
    assert client.post("/api/v1/tokens", json={"name": "x", "user": plain}).status_code == 201


def test_restricted_tokens_cannot_see_or_revoke_their_owners_tokens(
    live_server: LiveServer,
) -> None:
    name = unique("u")
    live_server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    channel = live_server.new_channel(prefix="rt")
    http = live_server.client()
    personal = http.post("/api/v1/tokens", json={"name": "p"}, auth=(name, PASSWORD)).json()
    scoped = http.post(
        "/api/v1/tokens",
        json={"name": "r", "kind": "resource", "resources": {channel: "read"}},
        auth=(name, PASSWORD),
    ).json()
    client = live_server.client(scoped["token"])
    refused(client.get("/api/v1/tokens"), "access:restricted-token")
    refused(client.delete(f"/api/v1/tokens/{personal['id']}"), "access:restricted-token")
    assert client.delete(f"/api/v1/tokens/{scoped['id']}").status_code == 200  # itself: fine
    assert live_server.client(personal["token"]).get("/api/v1/whoami").status_code == 200


def test_hidden_and_missing_channels_look_the_same_to_token_requests(
    live_server: LiveServer,
) -> None:
    name = unique("u")
    live_server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    hidden = live_server.new_channel(privacy="private", prefix="hid")
    answers = [
        live_server.client().post(
            "/api/v1/tokens",
            json={"name": "r", "kind": "resource", "resources": {channel: "read"}},
            auth=(name, PASSWORD),
        )
        for channel in (hidden, "no-such-channel-zz")
    ]
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json()["detail"].replace(hidden, "X") == answers[1].json()["detail"].replace(
        "no-such-channel-zz", "X"
    )


def test_password_changes(live_server: LiveServer) -> None:
    name = unique("u")
    live_server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    token = (
        live_server.client()
        .post("/api/v1/tokens", json={"name": "t"}, auth=(name, PASSWORD))
        .json()["token"]
    )
    own = live_server.client(token)
    r = own.patch(f"/api/v1/users/{name}", json={"password": "another-pass-1"})
    assert r.status_code == 422 and r.json()["code"] == "user:wrong-password"
    r = own.patch(
        f"/api/v1/users/{name}", json={"password": "another-pass-1", "current_password": "nope"}
    )
    assert r.status_code == 422
    failed = live_server.admin.get(
        "/api/v1/audit", params={"actor": name, "type": "auth.failed"}
    ).json()
    assert failed["events"] and failed["events"][0]["details"]["method"] == "password-change"
    r = own.patch(
        f"/api/v1/users/{name}", json={"password": "another-pass-1", "current_password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    # an admin reset signs the user out of every browser
    login = live_server.client().get("/login")
    csrf = login.text.split('name="csrf_token" value="')[1].split('"')[0]
    with live_server.client() as browser:
        browser.cookies.update(login.cookies)
        signed = browser.post(
            "/login",
            data={"username": name, "password": "another-pass-1", "csrf_token": csrf, "next": "/"},
        )
        assert signed.status_code == 303, signed.text
        assert browser.get("/api/v1/whoami").json()["username"] == name
        live_server.admin.patch(f"/api/v1/users/{name}", json={"password": "reset-by-admin-1"})

        def signed_out() -> None:
            assert browser.get("/api/v1/whoami").json()["anonymous"] is True

        eventually(signed_out, within=AUTH_BOUND_S)  # at once here, within a second elsewhere


def test_token_as_basic_auth_username_works_and_is_never_audited(live_server: LiveServer) -> None:
    token = live_server.admin_token
    r = live_server.client().get("/api/v1/whoami", auth=(token, ""))
    assert r.status_code == 200 and r.json()["username"] == "admin"
    bad = ("stk-" + "x" * 43, "stk_" + "x" * 43)  # the form issued now, and the older one
    for name in bad:
        assert live_server.client().get("/api/v1/whoami", auth=(name, "")).status_code == 401
    events = live_server.admin.get("/api/v1/audit/export", params={"format": "json"}).text
    assert token not in events and not any(name in events for name in bad)


def test_audit_filters_and_export_edge_cases(live_server: LiveServer) -> None:
    audit = "/api/v1/audit"
    assert live_server.admin.get(audit, params={"since": "2024-01-01T00:00:00"}).status_code == 200
    r = live_server.admin.get(audit, params={"since": "0001-01-01T00:00:00+14:00"})
    assert r.status_code == 422, r.text
    live_server.client().get("/api/v1/whoami", auth=("=HYPERLINK(1)", "x"))
    csv_text = live_server.admin.get(f"{audit}/export", params={"format": "csv"}).text
    assert ",=HYPERLINK" not in csv_text and "'=HYPERLINK(1)" in csv_text
    page = live_server.admin.get("/admin/audit", params={"before": "\u00b2"})  # "²".isdigit()
    assert page.status_code == 200, page.text


def unit_resources(**resources: Any) -> Any:
    from stockade.auth.permissions import Level
    from stockade.auth.principal import Principal

    return Principal(1, "x", resources={k: Level.parse(v) for k, v in resources.items()})


def test_a_wildcard_resource_covers_the_channel_itself() -> None:
    from stockade.auth.permissions import Level

    principal = unit_resources(**{"team/*": "write"})
    assert principal.resource_cap("team") == Level.WRITE
    assert principal.resource_cap("team/sub/deeper") == Level.WRITE
    assert principal.resource_cap("teams") == Level.NONE


def test_ipv6_clients_are_limited_per_64() -> None:
    """The counts themselves live in the database: tests/integration/auth/test_shared_state.py."""
    from stockade.auth.ratelimit import address_key, client_key

    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("2001:db8::99") == address_key("2001:db8::1")
    assert address_key("2001:db9::1") != address_key("2001:db8::1")


def test_a_session_cookie_alone_changes_nothing_through_the_api(live_server: LiveServer) -> None:
    name = unique("u")
    live_server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    login = live_server.client().get("/login")
    csrf = login.text.split('name="csrf_token" value="')[1].split('"')[0]
    with live_server.client() as browser:
        browser.cookies.update(login.cookies)
        browser.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": csrf})
        assert browser.get("/api/v1/whoami").json()["username"] == name  # reading is fine
        r = browser.post("/api/v1/channels", json={"name": unique("c")})
        assert r.status_code == 403 and r.json()["code"] == "csrf:missing"
        page = browser.get("/account").text
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        r = browser.post(
            "/api/v1/channels", json={"name": unique("c")}, headers={"X-CSRF-Token": token}
        )
        assert r.status_code == 201, r.text


def test_https_public_url_makes_cookies_secure() -> None:
    from stockade.settings import load_settings

    assert load_settings(public_url="https://repo.example.org").auth.secure_cookies is True
    assert load_settings().auth.secure_cookies is False
    explicit = load_settings(public_url="https://x.example", auth={"secure_cookies": False})
    assert explicit.auth.secure_cookies is False


def test_users_manage_can_do_nothing_to_an_admin_account(live_server: LiveServer) -> None:
    """Issue 11: a users:manage holder revoked an admin's tokens. The class: every action
    users:manage (with roles:write) allows, taken against an admin account, is refused."""
    _, manager = user_with_role(live_server, {"users": "manage", "roles": "write"})
    target = unique("adm")
    admin = live_server.admin
    assert admin.post(
        "/api/v1/users", json={"username": target, "password": PASSWORD, "admin": True}
    ).is_success
    token = (
        live_server.client()
        .post("/api/v1/tokens", json={"name": "t", "expires_in_days": 2}, auth=(target, PASSWORD))
        .json()
    )
    plain_group, plain_role = unique("g"), unique("r")
    assert admin.post("/api/v1/groups", json={"name": plain_group}).is_success
    assert admin.put(f"/api/v1/groups/{plain_group}/members/{target}").is_success
    assert admin.post(
        "/api/v1/roles", json={"name": plain_role, "permissions": {"users": "read"}}
    ).is_success
    assert admin.post(f"/api/v1/roles/{plain_role}/assignments", json={"user": target}).is_success
    other_group = unique("g")
    assert admin.post("/api/v1/groups", json={"name": other_group}).is_success
    attempts = {
        "revoke token": manager.delete(f"/api/v1/tokens/{token['id']}"),
        "create token": manager.post(
            "/api/v1/tokens", json={"name": "x", "expires_in_days": 1, "user": target}
        ),
        "password reset": manager.patch(
            f"/api/v1/users/{target}", json={"password": "taken-over-1"}
        ),
        "password reset, tokens revoked": manager.patch(
            f"/api/v1/users/{target}", json={"password": "taken-over-1", "revoke_tokens": True}
        ),
        "disable (ends sessions)": manager.patch(
            f"/api/v1/users/{target}", json={"is_active": False}
        ),
        "delete": manager.delete(f"/api/v1/users/{target}"),
        "join group": manager.put(f"/api/v1/groups/{other_group}/members/{target}"),
        "leave group": manager.delete(f"/api/v1/groups/{plain_group}/members/{target}"),
        "grant role": manager.post(
            f"/api/v1/roles/{plain_role}/assignments", json={"user": target}
        ),
        "take role": manager.delete(
            f"/api/v1/roles/{plain_role}/assignments", params={"user": target}
        ),
    }
    for action, response in attempts.items():
        assert response.status_code == 403, (action, response.status_code, response.text)
        assert response.json()["code"] in {"user:escalation", "access:denied"}, action
    # nothing changed: the token works, the account is whole
    assert live_server.client(token["token"]).get("/api/v1/whoami").json()["admin"] is True
    shown = admin.get(f"/api/v1/users/{target}").json()
    assert shown["is_active"] and plain_group in shown["groups"] and plain_role in shown["roles"]
    # the same actions on a plain user are allowed (the refusals are about the admin)
    plain = unique("p")
    assert admin.post("/api/v1/users", json={"username": plain, "password": PASSWORD}).is_success
    plain_token = (
        live_server.client()
        .post("/api/v1/tokens", json={"name": "t", "expires_in_days": 2}, auth=(plain, PASSWORD))
        .json()
    )
    assert manager.delete(f"/api/v1/tokens/{plain_token['id']}").status_code == 200
    assert manager.put(f"/api/v1/groups/{other_group}/members/{plain}").status_code == 200
    assert (
        manager.post(f"/api/v1/roles/{plain_role}/assignments", json={"user": plain}).status_code
        == 200
    )
    assert manager.patch(f"/api/v1/users/{plain}", json={"is_active": False}).status_code == 200
