"""Feeds pass the outbound guard (issue 11, item 6): an internal address in any spelling is never
fetched, the error does not say why a connection failed, and an API key never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.outbound import OutboundPolicy
from stockade.vulns.errors import FeedFetchError
from stockade.vulns.feedsync import FeedSync
from stockade.vulns.models import VulnFeed
from tests.integration.vulns.support import add_feed
from tests.support.upstream import Upstream, self_signed_cert, server_tls_context

KEY = "K3Y-do-not-show"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "0x7f.0.0.1", "[::ffff:127.0.0.1]"])
def test_a_feed_on_an_internal_address_is_never_fetched(
    container: Container, admin: Principal, tmp_path: Path, host: str
) -> None:
    (tmp_path / "kev.json").write_text("{}")
    cert, key = self_signed_cert(tmp_path)
    with Upstream(tmp_path, ssl_context=server_tls_context(cert, key)) as canary:
        port = canary.url.rsplit(":", 1)[1]
        url = f"HTTPS://{host}:{port}/kev.json?apiKey={KEY}"
        feed = add_feed(container, admin, "kev", url, "kev")
        with pytest.raises(FeedFetchError):
            FeedSync(container.factory).sync_feed(feed)  # the default policy: strict
        assert canary.requests == []
    with container.factory() as session:
        row = session.get(VulnFeed, feed)
        assert row is not None
        assert row.last_status == "failed"
        assert "refused by the server's outbound policy" in (row.last_error or "")
        assert KEY not in (row.last_error or "") and KEY not in str(row.last_error)


def test_an_unreachable_feed_says_not_why(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    from tests.support.server import free_port

    port = free_port()  # nothing listens: "connection refused" must not be told
    feed = add_feed(container, admin, "kev", f"https://127.0.0.1:{port}/kev.json", "kev")
    with pytest.raises(FeedFetchError):
        FeedSync(container.factory, outbound=OutboundPolicy(allow_loopback=True)).sync_feed(feed)
    with container.factory() as session:
        row = session.get(VulnFeed, feed)
        assert row is not None and row.last_status == "unreachable"  # no answer (issue 12)
        assert (row.last_error or "").endswith("cannot be reached"), row.last_error
        assert "refused" not in (row.last_error or "").lower()
