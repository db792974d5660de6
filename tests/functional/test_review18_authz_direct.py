"""Review of issue 18 (auth_request endpoint): ``GET /_stockade/authz`` is mounted on every
Stockade, behind nginx or not. nginx marks its location ``internal``, but a Stockade that clients
reach directly (the plain deployment: no nginx, no ``x_accel_redirect``) answers it to anyone:
each call records a package download (status and bytes as the caller's ``X-Original-Range`` and
``X-Original-If-None-Match`` say) although no byte of the file was sent. Download reports and the
vulnerability exposure report (who downloaded an affected build) read those rows.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from stockade.audit.downloads import Download, write_batch
from stockade.db.engine import transaction
from tests.support.server import LiveServer

pytestmark = [pytest.mark.functional]

PACKAGE = "dependency-1.0-0.conda"


def _flush(live: LiveServer) -> None:
    def write(batch: list[Download]) -> None:
        with transaction(live.container.factory) as session:
            write_batch(session, batch)

    live.container.downloads.flush(write, drain=True)


def _recorded(live: LiveServer, channel: str) -> list[dict[str, object]]:
    _flush(live)
    response = live.admin.get("/api/v1/downloads", params={"limit": 1000, "channel": channel})
    assert response.status_code == 200, response.text
    return list(response.json()["downloads"])


def test_a_direct_authz_call_records_no_download(live_server: LiveServer, testdata: Path) -> None:
    assert not live_server.settings.x_accel_redirect  # Stockade alone: no nginx in front
    channel = live_server.new_channel(prefix="authz")
    package = testdata / "channels" / "test-recipes" / "noarch" / PACKAGE
    assert live_server.upload(channel, package).status_code == 201
    live_server.wait_published(channel)
    path = f"/conda/{channel}/noarch/{PACKAGE}"
    deadline = time.monotonic() + 60
    while live_server.admin.head(path).status_code != 200:  # its verdict (a HEAD is no download)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _recorded(live_server, channel) == []
    with httpx.Client(base_url=live_server.url, timeout=30) as anonymous:
        for _ in range(5):
            anonymous.get("/_stockade/authz", headers={"x-original-uri": path})  # 200 + blob
    assert _recorded(live_server, channel) == [], "downloads recorded for bytes never sent"
