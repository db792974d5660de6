"""A client's X-Forwarded-For reaches bounded columns: kept cut, never refused by PostgreSQL.

uvicorn believes X-Forwarded-For from the trusted proxies (by default loopback, as here) and makes
its last untrusted entry the client's address, whatever text it is. A web session and a token's
last use keep the address in 64 characters: over that, on PostgreSQL, the sign-in and the first
use of a token in each minute were refused with a 422 "values the database cannot store"
(tests/integration/test_bounded_columns.py has the rest).
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import select

from stockade.auth.models import ApiToken, WebSession
from stockade.web.credentials import SESSION_COOKIE
from tests.support.eventually import eventually
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = pytest.mark.functional
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SPOOFED = "spoofed-" * 12  # 96 characters, no comma: uvicorn keeps all of it as the address
FORWARDED = {"X-Forwarded-For": f"203.0.113.7, {SPOOFED}"}


def test_a_token_used_with_a_long_forwarded_address(live_server: LiveServer) -> None:
    created = live_server.admin.post("/api/v1/tokens", json={"name": f"fw-{uuid.uuid4().hex}"})
    assert created.status_code == 201, created.text
    token, token_id = created.json()["token"], created.json()["id"]
    response = live_server.client(token).get("/api/v1/whoami", headers=FORWARDED)
    assert response.status_code == 200, response.text

    def recorded() -> None:  # written beside the request (auth/token_touch.py)
        with live_server.container.read_factory() as session:
            assert session.get_one(ApiToken, token_id).last_used_ip == SPOOFED[:64]

    eventually(recorded, within=30)


def test_a_sign_in_with_a_long_forwarded_address(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60, headers=FORWARDED) as client:
        form = CSRF_RE.search(client.get("/login").text)
        assert form is not None
        data = {"username": "admin", "password": ADMIN_PASSWORD, "next": "/"}
        response = client.post("/login", data={**data, "csrf_token": form.group(1)})
        assert response.status_code == 303, response.text
        assert client.cookies.get(SESSION_COOKIE)
    with live_server.container.read_factory() as session:
        ips = session.scalars(select(WebSession.ip).where(WebSession.ip.startswith("spoofed-")))
        assert set(ips) == {SPOOFED[:64]}
