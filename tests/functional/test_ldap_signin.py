"""LDAP users end to end: a live server configured for a real slapd, over HTTP and the CLI."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import own_server
from tests.support.cli import run
from tests.support.server import LiveServer
from tests.support.slapd import PEOPLE, SERVICE_PASSWORD, Person, Slapd, run_slapd

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [pytest.mark.functional, pytest.mark.one_config]

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ROLE_MAP = {"admins": ["admin"]}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as directory:
        yield directory


@pytest.fixture(scope="module")
def ldap_server(
    slapd: Slapd, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server whose users come from slapd (StartTLS, checked against the test CA)."""
    ldap = slapd.settings(start_tls=True, group_roles=ROLE_MAP, sync_schedule=None)
    with own_server(backend, tmp_path_factory, "ldap-server", ldap=ldap) as live:
        yield live


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.delenv("STOCKADE_URL", raising=False)
    monkeypatch.delenv("STOCKADE_TOKEN", raising=False)
    return CliRunner()


def new_person(slapd: Slapd, *groups: str) -> Person:
    """A user of this test only (the module's directory is shared)."""
    suffix = uuid.uuid4().hex[:6]
    person = Person(f"gina{suffix}", f"gina-password-{suffix}", "Gina Green", f"g{suffix}@ex.org")
    slapd.add_person(person)
    for group in groups:
        slapd.add_member(group, person)
    return person


def whoami(server: LiveServer, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.get("/api/v1/whoami", auth=(username, password))


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no csrf_token field in the page"
    return found.group(1)


def sign_in(server: LiveServer, username: str, password: str) -> httpx.Response:
    client = server.client()
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
    )


def user_detail(server: LiveServer, username: str) -> dict[str, object]:
    response = server.admin.get(f"/api/v1/users/{username}")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def token_of(server: LiveServer, username: str, password: str) -> str:
    response = httpx.post(
        f"{server.url}/api/v1/tokens",
        json={"name": "ldap-test", "expires_in_days": 1},
        auth=(username, password),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


# --- signing in --------------------------------------------------------------------------------


def test_ldap_user_signs_in_with_basic_auth(ldap_server: LiveServer) -> None:
    response = whoami(ldap_server, "alice", PEOPLE["alice"].password)
    assert response.status_code == 200, response.text
    who = response.json()
    assert (who["username"], who["anonymous"], who["admin"]) == ("alice", False, False)
    assert who["via"] == "ldap"
    detail = user_detail(ldap_server, "alice")
    assert detail["source"] == "ldap" and detail["is_active"] is True
    assert detail["email"] == "alice@example.org"
    assert detail["groups"] == ["developers", "staff"]  # staff through the nested group


def test_directory_group_mapped_to_admin_gives_admin(ldap_server: LiveServer) -> None:
    response = whoami(ldap_server, "carol", PEOPLE["carol"].password)
    assert response.status_code == 200, response.text
    assert response.json()["admin"] is True
    assert (
        ldap_server.client(token_of(ldap_server, "carol", PEOPLE["carol"].password))
        .get("/api/v1/users")
        .status_code
        == 200
    )


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "not-the-password"), ("nobody", "whatever-1"), ("*)(uid=*", "alice-password-1")],
)
def test_wrong_credentials_are_refused(
    ldap_server: LiveServer, username: str, password: str
) -> None:
    response = whoami(ldap_server, username, password)
    assert response.status_code == 401, response.text
    assert "wrong username or password" in response.json()["detail"]


def test_disabled_directory_user_is_refused(ldap_server: LiveServer) -> None:
    response = whoami(ldap_server, "dave", PEOPLE["dave"].password)
    assert response.status_code == 401, response.text
    # the same answer as a wrong password: a sign-in attempt does not reveal the account's state
    assert "wrong username or password" in response.json()["detail"]
    response = sign_in(ldap_server, "dave", PEOPLE["dave"].password)
    assert response.status_code == 401
    assert "wrong username or password" in response.text.lower()
    assert user_detail(ldap_server, "dave")["is_active"] is False


def test_sign_in_through_the_web_form(ldap_server: LiveServer) -> None:
    response = sign_in(ldap_server, "bob", PEOPLE["bob"].password)
    assert response.status_code == 303, response.text
    assert "stockade_session=" in response.headers["set-cookie"]
    response = sign_in(ldap_server, "bob", "wrong-password")
    assert response.status_code == 401
    assert "wrong username or password" in response.text.lower()


def test_disabled_or_removed_in_the_directory_loses_access_at_next_login(
    ldap_server: LiveServer, slapd: Slapd
) -> None:
    gina, hana = new_person(slapd, "developers"), new_person(slapd)
    for person in (gina, hana):
        assert sign_in(ldap_server, person.uid, person.password).status_code == 303
    assert user_detail(ldap_server, gina.uid)["groups"] == ["developers", "staff"]
    slapd.disable(gina)
    slapd.delete_user(hana)
    response = sign_in(ldap_server, gina.uid, gina.password)
    assert response.status_code == 401 and "wrong username or password" in response.text.lower()
    assert user_detail(ldap_server, gina.uid)["is_active"] is False
    assert sign_in(ldap_server, hana.uid, hana.password).status_code == 401
    detail = user_detail(ldap_server, hana.uid)
    assert detail["is_active"] is False
    assert detail["disabled_reason"] == "not found in ldap"


def test_local_admin_still_signs_in(ldap_server: LiveServer) -> None:
    assert ldap_server.admin.get("/api/v1/whoami").json()["admin"] is True


# --- the API -----------------------------------------------------------------------------------


def test_api_test_and_sync_as_admin(ldap_server: LiveServer) -> None:
    response = ldap_server.admin.post("/api/v1/ldap/test", json={"username": "erin"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["tls"] == "starttls" and report["users"] >= 6 and report["groups"] == 5
    assert report["user"]["groups"] == ["staff"] and report["user"]["active"] is True
    assert SERVICE_PASSWORD not in response.text
    response = ldap_server.admin.post("/api/v1/ldap/sync")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["users"] >= 6 and result["groups"] == 5
    assert user_detail(ldap_server, "frank")["groups"] == ["loop-a", "loop-b"]
    assert user_detail(ldap_server, "dave")["is_active"] is False


def test_api_refuses_non_admins(ldap_server: LiveServer) -> None:
    token = token_of(ldap_server, "bob", PEOPLE["bob"].password)
    for path in ("/api/v1/ldap/test", "/api/v1/ldap/sync"):
        response = ldap_server.client(token).post(path)
        assert response.status_code == 403, response.text
        anonymous = ldap_server.client().post(path)
        assert anonymous.status_code == 401, anonymous.text


def test_api_on_a_server_without_ldap(live_server: LiveServer) -> None:
    response = live_server.admin.post("/api/v1/ldap/sync")
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "ldap:not-configured"


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_test_and_sync(
    cli: CliRunner, ldap_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_URL", ldap_server.url)
    monkeypatch.setenv("STOCKADE_TOKEN", ldap_server.admin_token)
    out = run(cli, "ldap", "test")
    assert f"connected to {ldap_server.settings.ldap.url}" in out and "starttls" in out
    assert re.search(r"\d+ users \(\d+ disabled\), 5 groups", out), out
    out = run(cli, "ldap", "test", "--user", "alice")
    assert "developers, staff" in out and "uid=alice,ou=people" in out
    assert "not found" in run(cli, "ldap", "test", "--user", "nobody")
    out = run(cli, "ldap", "sync")
    assert out.startswith("synchronized") and "5 groups" in out and "skipped" in out


def test_cli_as_non_admin_fails_with_a_message(
    cli: CliRunner, ldap_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_URL", ldap_server.url)
    monkeypatch.setenv("STOCKADE_TOKEN", token_of(ldap_server, "bob", PEOPLE["bob"].password))
    for command in ("test", "sync"):
        out = run(cli, "ldap", command, code=1)
        assert "error:" in out and "HTTP 403" in out and "Traceback" not in out


def test_lockout_follows_the_account_whatever_the_spelling(
    ldap_server: LiveServer, slapd: Slapd
) -> None:
    person = new_person(slapd)
    assert whoami(ldap_server, person.uid, person.password).status_code == 200
    for attempt in range(10):
        spelled = [person.uid.upper(), f" {person.uid}", person.uid.capitalize()][attempt % 3]
        assert whoami(ldap_server, spelled, f"wrong-{attempt}").status_code == 401
    response = whoami(ldap_server, person.uid.upper(), person.password)
    assert response.status_code == 401 and response.json()["code"] == "auth:locked"


def test_a_name_the_directory_does_not_know_disables_nobody(
    ldap_server: LiveServer, slapd: Slapd
) -> None:
    person = new_person(slapd)
    assert whoami(ldap_server, person.uid, person.password).status_code == 200
    # the same account spelled in a way the directory does not resolve
    assert whoami(ldap_server, person.uid + "_x", "whatever").status_code == 401
    assert user_detail(ldap_server, person.uid)["is_active"] is True
