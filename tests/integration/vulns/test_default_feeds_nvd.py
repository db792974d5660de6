"""The default ``nvd`` feed reads the NVD API 2.0 page by page, then only what changed (issue 12,
item 7): a local TLS server answers like the API, with the real NVD records of the test data."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.outbound import ClientOptions, OutboundPolicy, guarded_client
from stockade.db.engine import transaction
from stockade.vulns.errors import FeedFetchError
from stockade.vulns.feedsync import FeedService, FeedSync
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.models import VulnFeed
from stockade.vulns.nvd_api import is_nvd_api
from tests.integration.vulns.support import VULNS
from tests.support.upstream import self_signed_cert, server_tls_context

RECORDS = json.loads((VULNS / "nvd-api-2.0" / "cves-pypi-aliases.json").read_text())
PER_PAGE = 2  # the real API answers 2,000 at most; two pages of these three records


class FakeNvd:
    """Answers ``/rest/json/cves/2.0`` as the NVD does, ``PER_PAGE`` results a page; a request
    with ``lastModStartDate`` gets ``changed`` (none by default)."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.queries: list[dict[str, list[str]]] = []
        self.changed: list[dict[str, Any]] = []
        self.status = 200  # another: answered with no body
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                fake.queries.append(query)
                body = json.dumps(fake.page(query)).encode() if fake.status == 200 else b""
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        items = self.changed if "lastModStartDate" in query else RECORDS["vulnerabilities"]
        start = int(query.get("startIndex", ["0"])[0])
        chunk = items[start : start + PER_PAGE]
        return {**RECORDS, "resultsPerPage": len(chunk), "startIndex": start,
                "totalResults": len(items), "vulnerabilities": chunk}  # fmt: skip

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/rest/json/cves/2.0"


@pytest.fixture
def nvd(tmp_path: Path) -> Iterator[tuple[FakeNvd, ssl.SSLContext]]:
    cert, key = self_signed_cert(tmp_path)
    fake = FakeNvd(server_tls_context(cert, key))
    fake.thread.start()
    yield fake, ssl.create_default_context(cafile=cert)
    fake.server.shutdown()
    fake.server.server_close()


def feed_row(container: Container, feed_id: int) -> VulnFeed:
    with container.factory() as session:
        row = session.get(VulnFeed, feed_id)
        assert row is not None
        return row


def test_the_nvd_api_is_read_page_by_page_then_incrementally(
    container: Container, admin: Principal, nvd: tuple[FakeNvd, ssl.SSLContext]
) -> None:
    fake, trust = nvd
    assert is_nvd_api(fake.url, "nvd") and not is_nvd_api(fake.url, "osv")
    with transaction(container.factory) as session:
        feed_id = FeedService(session).create(admin, "nvd", fake.url, "nvd").id
    options = ClientOptions(verify=trust, timeout=10)
    with guarded_client(OutboundPolicy(allow_loopback=True), options) as client:
        syncer = FeedSync(container.factory, client=client, nvd_pause_s=0)
        before = utcnow()
        first = syncer.sync_feed(feed_id)
        assert [q["startIndex"] for q in fake.queries] == [["0"], ["2"]]
        assert all("lastModStartDate" not in q for q in fake.queries)  # the first: everything
        assert first.new == 3 and not first.not_modified
        row = feed_row(container, feed_id)
        assert row.last_status == "ok" and row.last_modified is not None
        with container.factory() as session:
            stored = session.scalar(select(func.count()).where(VulnRow.feed_id == feed_id))
        assert stored == 3

        fake.queries.clear()
        again = syncer.sync_feed(feed_id)  # nothing changed since the first started
        assert len(fake.queries) == 1 and again.not_modified
        (start,), (end,) = fake.queries[0]["lastModStartDate"], fake.queries[0]["lastModEndDate"]
        assert start.startswith(before.strftime("%Y-%m-%dT%H:%M")) and end >= start
        assert feed_row(container, feed_id).last_status == "unchanged"

        changed = json.loads(json.dumps(RECORDS["vulnerabilities"][0]))
        changed["cve"]["descriptions"][0]["value"] += " (updated)"
        fake.changed = [changed]
        fake.queries.clear()
        third = syncer.sync_feed(feed_id)
        assert third.changed == 1 and len(fake.queries) == 1

        with transaction(container.factory) as session:  # long ago: everything again
            feed = session.get(VulnFeed, feed_id)
            assert feed is not None
            feed.last_modified = (utcnow() - timedelta(days=121)).isoformat()
        fake.queries.clear()
        syncer.sync_feed(feed_id)
        assert [q["startIndex"] for q in fake.queries] == [["0"], ["2"]]
        assert all("lastModStartDate" not in q for q in fake.queries)


@pytest.mark.parametrize(
    ("status", "state"), [(503, "unreachable"), (504, "unreachable"), (404, "failed")]
)
def test_a_host_that_is_down_is_unreachable_an_error_is_failed(
    container: Container,
    admin: Principal,
    nvd: tuple[FakeNvd, ssl.SSLContext],
    status: int,
    state: str,
) -> None:
    fake, trust = nvd
    fake.status = status
    with transaction(container.factory) as session:
        feed_id = FeedService(session).create(admin, "nvd", fake.url, "nvd").id
    options = ClientOptions(verify=trust, timeout=10)
    with guarded_client(OutboundPolicy(allow_loopback=True), options) as client:
        with pytest.raises(FeedFetchError):
            FeedSync(container.factory, client=client, nvd_pause_s=0).sync_feed(feed_id)
    row = feed_row(container, feed_id)
    assert row.last_status == state and f"HTTP {status}" in (row.last_error or "")
