"""A new password ends the account's other sessions; its tokens are revoked on request (API flag,
UI checkbox, CLI option); an admin's reset ends every session (issue 11, low items)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from stockade.cli.main import app
from tests.support.eventually import holds
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional
PASSWORD = "correct-horse-battery"


def new_user(live: LiveServer) -> str:
    name = f"pw-{uuid.uuid4().hex[:8]}"
    r = live.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return name


def token_of(live: LiveServer, name: str, password: str = PASSWORD) -> str:
    r = live.client().post(
        "/api/v1/tokens", json={"name": "t", "expires_in_days": 2}, auth=(name, password)
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def browser(live: LiveServer, name: str, password: str = PASSWORD) -> httpx.Client:
    """A signed-in browser session (cookie)."""
    client = live.client()
    page = client.get("/login")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": csrf})
    assert r.status_code in (200, 303), r.text
    assert who(client) == name
    return client


def who(client: httpx.Client) -> str | None:
    body = client.get("/api/v1/whoami").json()
    return None if body.get("anonymous") else str(body["username"])


def page_csrf(client: httpx.Client) -> str:
    return client.get("/account").text.split('name="csrf_token" value="')[1].split('"')[0]


def token_works(live: LiveServer, token: str) -> bool:
    return live.client(token).get("/api/v1/whoami").status_code == 200


def test_api_change_ends_other_sessions_and_keeps_tokens_unless_asked(
    live_server: LiveServer,
) -> None:
    name = new_user(live_server)
    token = token_of(live_server, name)
    here, elsewhere = browser(live_server, name), browser(live_server, name)
    r = here.patch(
        f"/api/v1/users/{name}",
        json={"password": "second-password-2", "current_password": PASSWORD},
        headers={"X-CSRF-Token": page_csrf(here)},
    )
    assert r.status_code == 200, r.text
    assert who(here) == name  # the session that changed it stays
    holds(lambda: who(elsewhere) is None)  # every other session ended (replicas: within 1 s)
    assert token_works(live_server, token)  # tokens stay unless asked
    # with revoke_tokens, through a token: the tokens go too (this one included)
    other = token_of(live_server, name, "second-password-2")
    r = live_server.client(token).patch(
        f"/api/v1/users/{name}",
        json={
            "password": "third-password-3",
            "current_password": "second-password-2",
            "revoke_tokens": True,
        },
    )
    assert r.status_code == 200, r.text
    holds(lambda: not token_works(live_server, token) and not token_works(live_server, other))
    holds(lambda: who(here) is None)  # changed through a token: no session is kept
    listed = live_server.admin.get("/api/v1/tokens", params={"user": name}).json()
    assert listed and all(t["revoked_at"] for t in listed)


def test_ui_change_with_the_checkbox_revokes_tokens(live_server: LiveServer) -> None:
    name = new_user(live_server)
    token = token_of(live_server, name)
    here, elsewhere = browser(live_server, name), browser(live_server, name)
    form = {
        "current_password": PASSWORD,
        "new_password": "ui-password-22",
        "confirm_password": "ui-password-22",
        "csrf_token": page_csrf(here),
    }
    assert 'name="revoke_tokens"' in here.get("/account").text
    r = here.post("/account/password", data={**form, "revoke_tokens": "yes"})
    assert r.status_code in (200, 303), r.text
    assert who(here) == name
    holds(lambda: who(elsewhere) is None and not token_works(live_server, token))
    # without the checkbox: sessions end, tokens stay
    token = token_of(live_server, name, "ui-password-22")
    elsewhere = browser(live_server, name, "ui-password-22")
    form = {
        **form,
        "current_password": "ui-password-22",
        "new_password": "ui-password-33",
        "confirm_password": "ui-password-33",
        "csrf_token": page_csrf(here),
    }
    assert here.post("/account/password", data=form).status_code in (200, 303)
    holds(lambda: who(elsewhere) is None)
    assert who(here) == name and token_works(live_server, token)


def test_admin_reset_ends_every_session(live_server: LiveServer) -> None:
    name = new_user(live_server)
    session = browser(live_server, name)
    token = token_of(live_server, name)
    r = live_server.admin.patch(
        f"/api/v1/users/{name}", json={"password": "reset-by-admin-9", "revoke_tokens": True}
    )
    assert r.status_code == 200, r.text
    assert who(session) is None and not token_works(live_server, token)


def test_cli_revoke_tokens_option(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = new_user(live_server)
    token = token_of(live_server, name)
    spare = token_of(live_server, name)
    session = browser(live_server, name)
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("STOCKADE_URL", live_server.url)
    monkeypatch.setenv("STOCKADE_TOKEN", token)
    answers = iter([PASSWORD, "cli-password-44"])  # current, then new
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    result = CliRunner().invoke(
        app, ["user", "update", name, "--reset-password", "--revoke-tokens"]
    )
    assert result.exit_code == 0, result.output
    assert "revoked" in result.output
    assert not token_works(live_server, spare) and who(session) is None
    result = CliRunner().invoke(app, ["user", "update", name, "--revoke-tokens"])
    assert result.exit_code == 1 and "--reset-password" in result.output
