"""Reading never waits for a writer (SQLite, the embedded default).

SQLite has one write lock. A long writer (the switch of a first mirror run, a big publication)
holds it for seconds; a request that only reads must not queue behind it. Token checks and the
credential cache's revision check used to open write transactions, so every authenticated GET
waited (once for 10 s in CI).

Every GET route of the application (API, pages, conda paths, health and metrics) is requested,
signed in with a token, a web session or nothing, while another connection holds the write lock
and with the server's credential cache emptied (so the credentials are checked again). Each must
answer, and not with a 5xx; path parameters name the channel, package and file the fixture
made (an id that does not exist answers 404, which still reads).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from stockade.web.credentials import SESSION_COOKIE
from tests.conftest import TESTDATA
from tests.support.offline_app import flat_routes, offline_app
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

pytestmark = [
    pytest.mark.functional,
    pytest.mark.one_backend,  # SQLite's one write lock is the subject
]

PACKAGE = TESTDATA / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
#: Routes that do not read the database for a GET (or answer by redirecting elsewhere).
NOT_READS = {"/docs/oauth2-redirect", "/favicon.ico"}
#: Reads that write by design: the audit log records who took the file, in the same transaction.
AUDITED = {"/api/v1/cve/export", "/api/v1/quarantine/{artifact_id}/file"}


def get_routes() -> list[str]:
    with offline_app() as app:
        return sorted(
            {
                route.path
                for route in flat_routes(app.routes)
                if "GET" in (getattr(route, "methods", None) or set())
                and route.path not in NOT_READS | AUDITED
            }
        )


ROUTES = get_routes()


def fill(path: str, channel: str) -> str:
    values = {
        "channel:path": channel,
        "name:path": channel,
        "package": "dependency",
        "subdir": "noarch",
        "filename": PACKAGE.name,
        "path:path": f"{channel}/noarch/repodata.json",
        "username": "admin",
    }
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), "1"), path)


@contextmanager
def write_lock_held(database: Path) -> Iterator[None]:
    """Another connection in the middle of a write transaction."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def web_session(live: LiveServer) -> str:
    with httpx.Client(base_url=live.url, timeout=60) as client:
        form = CSRF_RE.search(client.get("/login").text)
        assert form is not None
        data = {"username": "admin", "password": ADMIN_PASSWORD, "next": "/"}
        response = client.post("/login", data={**data, "csrf_token": form.group(1)})
        assert response.status_code == 303, response.text
        cookie = client.cookies.get(SESSION_COOKIE)
        assert cookie
        return cookie


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    data_dir = tmp_path_factory.mktemp("reads")
    with fresh_database("sqlite", data_dir, None) as db_url, run_server(data_dir, db_url) as live:
        channel = live.new_channel(privacy="private", prefix="reads")
        assert live.upload(channel, PACKAGE).status_code == 201
        live.wait_published(channel)
        yield live, channel


def answer(client: httpx.Client, url: str) -> int:
    with client.stream("GET", url) as response:  # an event stream is not read to its end
        return response.status_code


@pytest.mark.parametrize("who", ["token", "session", "anonymous"])
def test_every_get_answers_while_a_writer_holds_the_lock(
    server: tuple[LiveServer, str], who: str
) -> None:
    live, channel = server
    token = live.admin_token
    cookies = {SESSION_COOKIE: web_session(live)} if who == "session" else {}
    urls = [fill(path, channel) for path in ROUTES] + [
        f"/{channel}/noarch/repodata.json",
        f"/{channel}/noarch/{PACKAGE.name}",
        f"/t/{token}/{channel}/noarch/repodata.json",
        f"/t/{token}/{channel}/noarch/{PACKAGE.name}",
    ]
    client = live.client(token if who == "token" else None, cookies=cookies)
    for url in urls:  # used once before: a token's or session's first use is written
        answer(client, url)
    authenticator = live.container.authenticator
    database = make_url(live.settings.db_url).database
    assert database is not None
    with write_lock_held(Path(database)):
        authenticator.forget_locally()
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = dict(zip(urls, pool.map(lambda url: answer(client, url), urls), strict=True))
    failed = {url: status for url, status in statuses.items() if status >= 500}
    assert not failed, failed
