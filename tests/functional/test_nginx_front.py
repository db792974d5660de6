"""The documented nginx front with ``auth_request`` (issue 18, target 2), run for real.

nginx is started with deploy/nginx/stockade.conf (the file docs/deployment-nginx.md shows) in
front of a live Stockade. Checked: nginx itself sends private files and answers 304s for every
token form; every access decision stays Stockade's (anonymous, wrong token, no grant); a revoked
token, a channel made private and a removed member are refused within the documented bound
(polled, never timed otherwise); no credential reaches nginx's logs or cache in clear.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import own_server
from tests.support.nginx_front import SITE, Front, modules_dir, nginx_binary, nginx_front
from tests.support.server import LiveServer, free_port

# one_config: what this checks does not depend on the deployment; it runs once, on the cluster
# configuration when PostgreSQL is there (make test), else on SQLite (tests/conftest.py).
pytestmark = [
    pytest.mark.functional,
    pytest.mark.one_config,
    pytest.mark.skipif(
        nginx_binary() is None or modules_dir() is None,
        reason="nginx and its set-misc module are needed (scripts/test-env installs them)",
    ),
]
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"
REPODATA = "noarch/repodata.json.zst"
#: The documented bound (docs/deployment-nginx.md): nginx keeps an answer 2 s, Stockade's own
#: caches (credentials, channels) take up to 2 s more to see a change made by another process.
NGINX_SECONDS = 2.0
STOCKADE_SECONDS = 2.0
MARGIN = 3.0  # polling and a loaded machine


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One server (cluster=False): nginx serves blobs from the server's own blob folder
    # (x_accel_redirect), which the cluster's S3 store has no counterpart of.
    with own_server(
        backend, tmp_path_factory, "nginx-front", x_accel_redirect="/_blobs/", cluster=False
    ) as live:
        yield live


@pytest.fixture(scope="module")
def front(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    upstream = server.url.removeprefix("http://")
    blobs = server.settings.data_dir / "blobs"
    prefix = tmp_path_factory.mktemp("nginx-front")
    with nginx_front(upstream=upstream, blobs=blobs, prefix=prefix, port=free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def package(testdata: Path) -> Path:
    return sorted((testdata / "channels" / "test-recipes" / "noarch").glob("depend*.conda"))[0]


def channel_with(server: LiveServer, package: Path, privacy: str) -> str:
    name = server.new_channel(privacy=privacy, prefix="ngx")
    assert server.upload(name, package).status_code == 201
    server.wait_published(name)
    return name


def member(server: LiveServer, channel: str) -> tuple[str, str, int]:
    """A new user with read on ``channel``: (name, token, token id)."""
    name = f"reader-{secrets.token_hex(4)}"
    server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    r = server.admin.put(
        f"/api/v1/channels/{channel}/members", json={"level": "read", "user": name}
    )
    assert r.status_code == 200, r.text
    issued = server.client().post(
        "/api/v1/tokens", json={"name": "ci", "expires_in_days": 2}, auth=(name, PASSWORD)
    )
    assert issued.status_code == 201, issued.text
    return name, str(issued.json()["token"]), int(issued.json()["id"])


def forms(base: str, channel: str, path: str, token: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Every way a conda client carries a token: URL, header."""
    basic = base64.b64encode(f"user:{token}".encode()).decode()
    return {
        "bearer": (f"{base}/conda/{channel}/{path}", {"authorization": f"Bearer {token}"}),
        "/t/": (f"{base}/t/{token}/conda/{channel}/{path}", {}),
        "/conda/t/": (f"{base}/conda/t/{token}/{channel}/{path}", {}),
        "basic": (f"{base}/conda/{channel}/{path}", {"authorization": f"Basic {basic}"}),
    }


def from_nginx(response: httpx.Response) -> bool:
    """Stockade puts an X-Request-Id on every answer; a blob nginx sent itself has none."""
    return "x-request-id" not in response.headers


def poll_until(check: Callable[[], bool], limit: float) -> float:
    """Seconds until ``check()`` held (polled every 0.1 s); fails past ``limit``."""
    started = time.monotonic()
    while not check():
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"still not refused after {elapsed:.1f} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_tested_configuration_is_the_documented_one() -> None:
    doc = (ROOT / "docs" / "deployment-nginx.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", doc, re.DOTALL)
    assert SITE.read_text() in blocks
    ttl = re.search(r"proxy_cache_valid 200 401 (\d+)s;", SITE.read_text())
    assert ttl is not None and float(ttl.group(1)) == NGINX_SECONDS


def test_private_files_are_sent_by_nginx_for_every_token_form(
    server: LiveServer, front: Front, package: Path
) -> None:
    channel = channel_with(server, package, "private")
    _, token, _ = member(server, channel)
    direct = server.client(token).get(f"/conda/{channel}/{REPODATA}")
    assert direct.status_code == 200
    blob = f'"{hashlib.sha256(package.read_bytes()).hexdigest()}"'
    with httpx.Client(timeout=30) as http:
        for form, (url, headers) in forms(front.url, channel, REPODATA, token).items():
            first = http.get(url, headers=headers)
            assert first.status_code == 200, (form, first.text)
            assert first.content == direct.content, form
            assert first.headers["etag"] == direct.headers["etag"], form
            assert first.headers["content-type"] == "application/zstd", form
            assert first.headers["cache-control"] == direct.headers["cache-control"], form
            again = http.get(url, headers={**headers, "if-none-match": first.headers["etag"]})
            assert again.status_code == 304, form
            assert from_nginx(again) and from_nginx(http.get(url, headers=headers)), form
            pkg_url, pkg_headers = forms(front.url, channel, f"noarch/{package.name}", token)[form]
            got = http.get(pkg_url, headers=pkg_headers)
            assert got.status_code == 200, (form, got.text)
            assert got.content == package.read_bytes() and got.headers["etag"] == blob, form
            assert got.headers["content-type"] == "application/octet-stream", form
            ranged = http.get(pkg_url, headers={**pkg_headers, "range": "bytes=0-9"})
            assert ranged.status_code == 206 and ranged.content == package.read_bytes()[:10]
            assert http.head(pkg_url, headers=pkg_headers).status_code == 200


def test_every_refusal_is_stockades(server: LiveServer, front: Front, package: Path) -> None:
    channel = channel_with(server, package, "private")
    _, token, _ = member(server, channel)
    outsider = member(server, channel_with(server, package, "private"))[1]
    url = f"{front.url}/conda/{channel}/{REPODATA}"
    with httpx.Client(timeout=30) as http:
        assert http.get(url, headers={"authorization": f"Bearer {token}"}).status_code == 200
        anonymous = http.get(url)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        wrong = http.get(url, headers={"authorization": "Bearer stk-" + "x" * 43})
        assert wrong.status_code == 401
        assert http.get(url, headers={"authorization": f"Bearer {outsider}"}).status_code == 404
        missing = http.get(
            f"{front.url}/conda/{channel}/noarch/nothing-1.0-0.conda",
            headers={"authorization": f"Bearer {token}"},
        )
        assert missing.status_code == 404
        # a method conda does not use: Stockade answers it, not the blob location
        assert http.post(url, headers={"authorization": f"Bearer {token}"}).status_code == 405


def test_a_revoked_token_is_refused_within_the_bound(
    server: LiveServer, front: Front, package: Path
) -> None:
    channel = channel_with(server, package, "private")
    _, token, token_id = member(server, channel)
    url, headers = forms(front.url, channel, REPODATA, token)["bearer"]
    with httpx.Client(timeout=30) as http:
        assert http.get(url, headers=headers).status_code == 200  # cached by nginx from here
        revoked = server.client(token).delete(f"/api/v1/tokens/{token_id}")
        assert revoked.status_code == 200, revoked.text
        took = poll_until(
            lambda: http.get(url, headers=headers).status_code == 401,
            NGINX_SECONDS + STOCKADE_SECONDS + MARGIN,
        )
    print(f"revoked token refused after {took:.1f} s")  # reported, never asserted on


def test_a_channel_made_private_is_refused_within_the_bound(
    server: LiveServer, front: Front, package: Path
) -> None:
    channel = channel_with(server, package, "public")
    url = f"{front.url}/conda/{channel}/{REPODATA}"
    with httpx.Client(timeout=30) as http:
        first = http.get(url)
        assert first.status_code == 200 and from_nginx(http.get(url))
        changed = server.admin.patch(f"/api/v1/channels/{channel}", json={"privacy": "private"})
        assert changed.status_code == 200, changed.text
        poll_until(
            lambda: http.get(url).status_code == 401, NGINX_SECONDS + STOCKADE_SECONDS + MARGIN
        )


def test_a_removed_member_is_refused_within_the_bound(
    server: LiveServer, front: Front, package: Path
) -> None:
    channel = channel_with(server, package, "private")
    name, token, _ = member(server, channel)
    url, _ = forms(front.url, channel, REPODATA, token)["/t/"]
    with httpx.Client(timeout=30) as http:
        assert http.get(url).status_code == 200
        removed = server.admin.delete(f"/api/v1/channels/{channel}/members", params={"user": name})
        assert removed.status_code == 200, removed.text
        poll_until(
            lambda: http.get(url).status_code == 404, NGINX_SECONDS + STOCKADE_SECONDS + MARGIN
        )


class Lines(logging.Handler):
    """Every log line of the process (the live server runs in it), as rendered."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_no_credential_in_nginx_logs_or_cache(
    server: LiveServer, front: Front, package: Path
) -> None:
    channel = channel_with(server, package, "private")
    _, token, _ = member(server, channel)
    stockade_log = Lines()
    logging.getLogger().addHandler(stockade_log)
    try:
        with httpx.Client(timeout=30) as http:
            for url, headers in forms(front.url, channel, REPODATA, token).values():
                assert http.get(url, headers=headers).status_code == 200
            http.get(f"{front.url}/t/{token}/api/v1/whoami")  # any path with a URL token
    finally:
        logging.getLogger().removeHandler(stockade_log)
    # nginx buffers its access log (flushed every second, as documented): wait for the lines
    deadline = time.monotonic() + 10
    while True:
        logged = front.access_log.read_text()
        if ("/t/***/conda/" in logged and "/conda/t/***/" in logged) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    assert "/t/***/conda/" in logged and "/conda/t/***/" in logged, logged
    cached = b"".join(p.read_bytes() for p in front.cache.rglob("*") if p.is_file())
    assert cached.count(b"\nKEY: ") >= 3  # answers were cached, under hashes
    basic = base64.b64encode(f"user:{token}".encode())
    for where, text in (
        ("access log", logged.encode()),
        ("error log", front.error_log.read_bytes()),
        ("cache", cached),
    ):
        assert token.encode() not in text, where
        assert basic not in text, where
    stockade_lines = "\n".join(stockade_log.lines)
    assert "/_stockade/authz" in stockade_lines
    assert token not in stockade_lines


def test_a_basic_password_is_never_cached(server: LiveServer, front: Front, package: Path) -> None:
    """A fast hash of a password could be guessed from a cache key: such answers are not kept."""
    channel = channel_with(server, package, "private")
    name, _, _ = member(server, channel)
    url = f"{front.url}/conda/{channel}/{REPODATA}"
    before = sorted(p for p in front.cache.rglob("*") if p.is_file())
    with httpx.Client(timeout=30) as http:
        for _ in range(2):
            got = http.get(url, auth=(name, PASSWORD))
            assert got.status_code == 200 and from_nginx(got)
    assert sorted(p for p in front.cache.rglob("*") if p.is_file()) == before


def test_downloads_nginx_sends_are_recorded(
    server: LiveServer, front: Front, package: Path
) -> None:
    """Stockade records the package downloads it lets nginx send (a HEAD downloads nothing)."""
    channel = channel_with(server, package, "private")
    name, token, token_id = member(server, channel)
    url, headers = forms(front.url, channel, f"noarch/{package.name}", token)["bearer"]
    with httpx.Client(timeout=30) as http:
        assert http.head(url, headers=headers).status_code == 200
        got = http.get(url, headers={**headers, "user-agent": "conda/24.1"})
        assert got.status_code == 200 and from_nginx(got)
        etag = got.headers["etag"]
        assert http.get(url, headers={**headers, "if-none-match": etag}).status_code == 304
    deadline = time.monotonic() + 30
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(rows) < 2:
        listed = server.admin.get("/api/v1/downloads", params={"channel": channel})
        rows = listed.json()["downloads"]
        time.sleep(0.5)
    assert sorted((r["status"], r["bytes"]) for r in rows) == [
        (200, package.stat().st_size),
        (304, 0),
    ]
    assert {(r["principal"], r["token_id"], r["filename"]) for r in rows} == {
        (name, token_id, package.name)
    }
    assert any(r["user_agent"] == "conda/24.1" for r in rows)
