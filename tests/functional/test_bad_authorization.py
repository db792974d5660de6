"""An ``Authorization`` header that cannot be read is refused with 401 on every surface, never a
500 and never silently anonymous (issue 11, low items): the REST API, the conda channel
endpoints (public and private, fast path and HEAD), the web UI, and the ``/t/TOKEN/`` forms."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import own_server
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


# what the header carries, and whether it is unreadable (refused as malformed) or a readable
# name and password that cannot belong to anyone (refused as wrong credentials)
HEADERS = {
    "non-ascii bytes": b"Basic \xff\xfe\xfd\xe9",
    "latin-1 letters in base64": b"Basic YWRt\xe9aW46cHc=",
    "not base64": b"Basic !!!not-base64!!!",
    "base64 of non-UTF-8": b"Basic " + b64(b"\xff\xfe:\xfa\xfb"),
    "NUL in the name": b"Basic " + b64(b"ad\x00min:password"),
    "NUL in the password": b"Basic " + b64(b"admin:pass\x00word"),
    "very long name": b"Basic " + b64(b"a" * 20000 + b":x"),
    "UTF-8 name": b"Basic " + b64("\u00e9\u00e8:\u00fc".encode()),
    "non-ascii bearer": b"Bearer stk-\xe9\xe8\xff" + b"a" * 40,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[LiveServer]:
    """A server of its own: these failures count against the test client's address."""
    with own_server(
        backend, tmp_path_factory, "badauth", auth={"login_attempts_per_minute": 1000}
    ) as live:
        yield live


@pytest.fixture(scope="module")
def channels(server: LiveServer, testdata: Path) -> dict[str, str]:
    made = {}
    for privacy in ("public", "private"):
        name = server.new_channel(privacy=privacy, prefix=privacy[:4])
        files = sorted((testdata / "channels/test-recipes/noarch").glob("dependency*.conda"))
        assert server.upload(name, *files).status_code == 201
        server.wait_published(name)
        made[privacy] = name
    return made


def surfaces(server: LiveServer, channels: dict[str, str]) -> list[tuple[str, str, str]]:
    pub, priv = channels["public"], channels["private"]
    token = server.admin_token
    return [
        ("GET", "/api/v1/whoami", "api"),
        ("GET", "/api/v1/channels", "api"),
        ("POST", "/api/v1/channels", "api"),
        ("GET", f"/api/v1/channels/{priv}", "api"),
        ("GET", f"/conda/{pub}/noarch/repodata.json", "conda"),
        ("HEAD", f"/conda/{pub}/noarch/repodata.json", "conda"),
        ("GET", f"/conda/{priv}/noarch/repodata.json", "conda"),
        ("GET", f"/conda/{priv}/channeldata.json", "conda"),
        ("GET", "/", "ui"),
        ("GET", "/account", "ui"),
        ("GET", f"/channels/{pub}", "ui"),
        ("GET", f"/t/bad\u00e9token/conda/{priv}/noarch/repodata.json", "conda"),
        ("GET", f"/conda/t/{'stk-' + 'x' * 43}/{priv}/noarch/repodata.json", "conda"),
        ("GET", f"/t/{token}/api/v1/whoami", "api"),
    ]


def test_unreadable_authorization_is_401_everywhere(
    server: LiveServer, channels: dict[str, str]
) -> None:
    client = server.client()
    failures = []
    for label, header in HEADERS.items():
        for method, path, surface in surfaces(server, channels):
            headers = {"authorization": header}
            if method == "POST":
                headers["content-type"] = "application/json"
            response = client.request(
                method, path, headers=headers, content=b"{}" if method == "POST" else None
            )
            if response.status_code >= 500:
                failures.append(f"{label} {method} {path}: {response.status_code}")
                continue
            if path.startswith("/t/" + server.admin_token):
                continue  # the URL token is the credential; the header is not looked at
            if response.status_code != 401:
                failures.append(f"{label} {method} {path}: {response.status_code}")
            elif surface != "ui" and method != "HEAD":
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["status"] == 401
    assert not failures, "\n".join(failures)


def test_a_readable_header_still_works_after_all_that(server: LiveServer) -> None:
    good = b"Basic " + b64(f"{server.admin_token}:".encode())
    r = server.client().get("/api/v1/whoami", headers={"authorization": good})
    assert r.status_code == 200 and r.json()["admin"] is True
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_odd_characters_in_the_sign_in_form_are_wrong_credentials(server: LiveServer) -> None:
    client = server.client()
    for username, password in (
        ("ad\x00min", "x" * 8),
        ("admin", "pass\x00word"),
        ("\u00e9", "\u00fc" * 9),
    ):
        page = client.get("/login")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        form = {"username": username, "password": password, "csrf_token": csrf}
        response = client.post("/login", data=form)
        assert response.status_code == 401, (username, response.status_code)
        assert "wrong username or password" in response.text.lower()
