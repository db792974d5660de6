"""OpenID Connect against a real provider (npm ``oidc-provider``) and a real Chromium.

The provider (``tests/support/oidc.py``) runs on loopback next to a live Stockade configured for
it: single sign-on through the provider's own login page, the callback's refusals (state,
expired flow, ``access_denied``), provider JWTs on the API, and signing out at both ends.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from sqlalchemy import select
from starlette.requests import Request

from stockade.audit.models import AuditEvent
from stockade.auth.models import Group, GroupMember, Role, RoleAssignment, User
from stockade.db.engine import transaction
from tests.support.oidc import (
    API_AUDIENCE,
    CI_CLIENT_ID,
    OTHER_RESOURCE,
    OidcProvider,
    oidc_settings,
    provider_dir_or_skip,
    run_oidc_provider,
)
from tests.support.server import LiveServer, free_port, fresh_database, run_server

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("oidc"), pytest.mark.one_config]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FLOW_COOKIE = "stockade_oidc_flow"


@dataclass(frozen=True)
class Sso:
    server: LiveServer
    provider: OidcProvider


@pytest.fixture(scope="module")
def sso(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sso]:
    """A Stockade whose single sign-on is the test provider (started once the server is up)."""
    provider_dir_or_skip()
    port = free_port()
    oidc = oidc_settings(f"http://127.0.0.1:{port}", group_roles={"readers": ["author"]})
    data_dir = tmp_path_factory.mktemp(f"oidc-{backend}")
    pg_url = os.environ.get("STOCKADE_TEST_PG_URL")
    with (
        fresh_database(backend, data_dir, pg_url) as db_url,
        run_server(data_dir, db_url, oidc=oidc) as live,
        run_oidc_provider(
            port,
            redirect_uris=[f"{live.url}/auth/oidc/callback"],
            post_logout_redirect_uris=[f"{live.url}/"],
        ) as provider,
    ):
        yield Sso(live, provider)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def follow(client: httpx.Client, url: str, *, until: str) -> httpx.Response:
    """GET ``url`` and follow redirects (across both servers) until a URL starting with ``until``."""
    for _ in range(12):
        response = client.get(url)
        if response.status_code not in (302, 303):
            return response
        url = urljoin(str(response.url), response.headers["location"])
        if url.startswith(until):
            return client.get(url)
    raise AssertionError("too many redirects")


def start_flow(sso: Sso, client: httpx.Client, next_url: str = "/") -> httpx.Response:
    response = client.get("/login/sso", params={"next": next_url})
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(f"{sso.provider.issuer}/auth?")
    return response


def assert_page(response: httpx.Response, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    for phrase in phrases:
        assert phrase in response.text, f"{phrase!r} not in the page"


# --- sign in through the provider's page in Chromium -----------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = os.environ.get("STOCKADE_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(f"Chromium not found at {executable} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.browser
def test_sign_in_with_sso_in_chromium_then_sign_out(sso: Sso, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    live = sso.server
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live.url}/login?next=/search")
    page.click("text=Sign in with Test SSO")
    page.wait_for_url(f"{sso.provider.issuer}/interaction/**")
    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "any password: the test provider does not check it")
    page.click("button[type=submit]")
    consent, signed_in = page.locator("button:has-text('Continue')"), page.locator(".who .user")
    expect(consent.or_(signed_in)).to_be_visible()
    if consent.is_visible():  # the provider asks for consent the first time
        consent.click()
    page.wait_for_url(f"{live.url}/search**")
    expect(page.locator(".who .user")).to_have_text("alice")
    cookie_names = {c["name"] for c in page.context.cookies(live.url)}
    assert "stockade_session" in cookie_names
    assert FLOW_COOKIE not in cookie_names

    with live.container.factory() as session:
        user = session.scalars(select(User).where(User.username == "alice")).one()
        assert (user.source, user.external_id) == ("oidc", f"{sso.provider.issuer}|alice")
        assert (user.email, user.display_name) == ("alice@example.test", "Alice Liddell")
        groups = session.scalars(
            select(Group).join(GroupMember).where(GroupMember.user_id == user.id)
        ).all()
        assert {(g.name, g.source) for g in groups} == {
            ("devs", "oidc"),
            ("devs_core", "oidc"),
            ("readers", "oidc"),
        }
        readers = next(g for g in groups if g.name == "readers")
        roles = session.scalars(
            select(Role.name).join(RoleAssignment).where(RoleAssignment.group_id == readers.id)
        ).all()
        assert list(roles) == ["author"]
        login = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event_type == "auth.login", AuditEvent.actor_name == "alice")
            .order_by(AuditEvent.seq.desc())
        ).first()
        assert login is not None
        assert login.details == {"method": "oidc"}

    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.click("text=Sign out")
    page.wait_for_load_state()
    if not page.url.startswith(sso.provider.issuer):
        # /logout signed out here only: end the provider's session with the helper it can use
        expect(page.locator(".who")).to_contain_text("Sign in")
        logout_url = sso_logout_url_of(live)
        assert logout_url is not None
        page.goto(logout_url)
    page.click("button[name=logout]")  # the provider's "Yes, sign me out"
    page.wait_for_url(f"{live.url}/")
    expect(page.locator(".who")).to_contain_text("Sign in")
    blocked = [m for m in console if "Content Security Policy" in m]
    assert not blocked, f"the sign-out redirect was blocked: {blocked}"
    page.goto(f"{live.url}/login/sso")
    expect(page.locator("input[name=login]")).to_be_visible()  # asked to sign in again
    page.close()


def sso_logout_url_of(live: LiveServer) -> str | None:
    from stockade.web.ui.sso import sso_logout_url

    host = urlsplit(live.url)
    app = SimpleNamespace(state=SimpleNamespace(container=live.container))
    scope = {
        "type": "http",
        "app": app,
        "method": "POST",
        "scheme": "http",
        "server": (host.hostname, host.port),
        "path": "/logout",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host.netloc.encode())],
    }
    try:
        return sso_logout_url(Request(scope))
    finally:
        for client in app.state.oidc_clients.values():
            client.close()


# --- the callback refuses what it must --------------------------------------------------------


def test_a_full_flow_over_http_and_a_replayed_callback(sso: Sso) -> None:
    """The same flow without a browser; replaying the callback then fails cleanly."""
    client = sso.server.client()
    login = unique("carol")
    start = start_flow(sso, client, "/search?q=x")
    callback = sso.provider.sign_in(client, start.headers["location"], login)
    assert callback.startswith(f"{sso.server.url}/auth/oidc/callback?")
    done = client.get(callback)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/search?q=x"
    assert FLOW_COOKIE not in client.cookies
    assert login in client.get("/").text
    assert_page(client.get(callback), 400, "expired or was already used")


def test_a_user_disabled_here_stays_out(sso: Sso) -> None:
    login = unique("erin")
    client = sso.server.client()
    callback = sso.provider.sign_in(client, start_flow(sso, client).headers["location"], login)
    assert client.get(callback).status_code == 303
    with transaction(sso.server.container.factory) as session:
        user = session.scalars(select(User).where(User.username == login)).one()
        user.is_active = False
    client = sso.server.client()
    callback = sso.provider.sign_in(client, start_flow(sso, client).headers["location"], login)
    assert_page(client.get(callback), 401, "disabled")
    assert "stockade_session" not in client.cookies
    with sso.server.container.factory() as session:
        user = session.scalars(select(User).where(User.username == login)).one()
        assert not user.is_active
        failed = session.scalars(
            select(AuditEvent).where(
                AuditEvent.event_type == "auth.failed", AuditEvent.target_name == login
            )
        ).all()
        assert [e.details for e in failed] == [
            {"method": "oidc", "reason": "auth:invalid-credentials"}
        ]


def test_state_mismatch_is_refused(sso: Sso) -> None:
    client = sso.server.client()
    start_flow(sso, client)
    assert FLOW_COOKIE in client.cookies
    response = client.get("/auth/oidc/callback", params={"code": "abc", "state": "forged"})
    assert_page(response, 400, "state mismatch")
    assert FLOW_COOKIE not in client.cookies  # the flow is spent either way
    assert "stockade_session" not in client.cookies


def test_callback_without_or_with_a_tampered_flow_cookie(sso: Sso) -> None:
    client = sso.server.client()
    response = client.get("/auth/oidc/callback", params={"code": "abc", "state": "s"})
    assert_page(response, 400, "expired or was already used")
    client.cookies.set(FLOW_COOKIE, "not-a-flow", path="/auth/oidc")
    response = client.get("/auth/oidc/callback", params={"code": "abc", "state": "s"})
    assert_page(response, 400, "expired or was already used")
    stale = base64.urlsafe_b64encode(b'["s","n","v","/",1000]').decode().rstrip("=")
    client.cookies.set(FLOW_COOKIE, stale, path="/auth/oidc")
    response = client.get("/auth/oidc/callback", params={"code": "abc", "state": "s"})
    assert_page(response, 400, "expired")


def test_cancelling_at_the_provider_shows_a_clear_page(sso: Sso) -> None:
    client = sso.server.client()
    start = start_flow(sso, client)
    page = follow(client, start.headers["location"], until=sso.provider.issuer + "/interaction/")
    assert 'name="login"' in page.text
    abort = urljoin(str(page.url) + "/", "abort")
    response = follow(client, abort, until=f"{sso.server.url}/auth/oidc/callback")
    assert_page(response, 400, "cancelled or refused at the identity provider", "access_denied")
    assert "End-User aborted" not in response.text  # the provider's own text is not shown


def test_flow_cookie_is_scoped_and_http_only(sso: Sso) -> None:
    client = sso.server.client()
    response = start_flow(sso, client, "https://evil.test/")
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"{FLOW_COOKIE}=")
    for part in ("httponly", "samesite=lax", "path=/auth/oidc", "max-age=600"):
        assert part in cookie
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{sso.server.url}/auth/oidc/callback"]
    assert "code_verifier" not in query


# --- provider JWTs on the API -----------------------------------------------------------------


def whoami(sso: Sso, token: str) -> httpx.Response:
    return sso.server.client(token).get("/api/v1/whoami")


def assert_refused(response: httpx.Response, token: str, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert token not in response.text
    assert all(token not in value for value in response.headers.values())
    assert reason in response.json()["detail"]


def test_client_credentials_jwt_is_a_workload_identity(sso: Sso) -> None:
    token = sso.provider.client_credentials_token()
    response = whoami(sso, token)
    assert response.status_code == 200, response.text
    assert response.json()["username"] == CI_CLIENT_ID
    assert response.json()["via"] == "oidc-token"
    assert response.json()["anonymous"] is False


def test_user_jwt_names_the_user_and_their_groups(sso: Sso) -> None:
    login = unique("dave")
    token = sso.provider.user_access_token(login)
    response = whoami(sso, token)
    assert response.status_code == 200, response.text
    assert response.json()["username"] == login
    with sso.server.container.factory() as session:
        user = session.scalars(select(User).where(User.username == login)).one()
        assert user.source == "oidc"
        names = session.scalars(
            select(Group.name).join(GroupMember).where(GroupMember.user_id == user.id)
        ).all()
        assert list(names) == ["devs"]


def test_wrong_audience_expired_and_tampered_jwts_are_refused(sso: Sso) -> None:
    provider = sso.provider
    other = provider.client_credentials_token(resource=OTHER_RESOURCE)
    assert_refused(whoami(sso, other), other, "audience")
    now = int(time.time())
    claims = {"sub": "ci-runner", "aud": API_AUDIENCE, "client_id": CI_CLIENT_ID}
    fresh = provider.forge({**claims, "exp": now + 300})
    assert whoami(sso, fresh).status_code == 200  # the forged key is the provider's key
    expired = provider.forge({**claims, "iat": now - 900, "exp": now - 600})
    assert_refused(whoami(sso, expired), expired, "expired")
    unknown_key = provider.forge({**claims, "exp": now + 300}, kid="rotated-away")
    assert_refused(whoami(sso, unknown_key), unknown_key, "does not publish")
    good = provider.client_credentials_token()
    header, payload, signature = good.split(".")
    flipped = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]
    tampered = f"{header}.{payload}.{flipped}"
    assert_refused(whoami(sso, tampered), tampered, "signature")
    failures = sso.server.container.factory().scalars(
        select(AuditEvent).where(AuditEvent.event_type == "auth.failed")
    )
    assert any((e.details or {}).get("method") == "oidc-token" for e in failures)


# --- without OIDC -----------------------------------------------------------------------------


def test_sso_is_absent_when_not_configured(live_server: LiveServer) -> None:
    client = live_server.client()
    assert "Sign in with" not in client.get("/login").text
    assert_page(client.get("/login/sso"), 404, "not configured")
    assert_page(client.get("/auth/oidc/callback?code=a&state=b"), 404, "not configured")
