"""A slow channel's ``channeldata.json`` is built in a process of its own (``jobs/apart.py``,
``[publication] channeldata_apart_ms``): the server serves what that process built, the same
document as a build in the server's own process, and each upload is reflected."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from stockade.channels.models import Channel
from stockade.channels.publication_channeldata import build_channeldata
from stockade.jobs.apart import build_channeldata_apart
from tests.conftest import PG_URL
from tests.support.cves import upload
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.slow]


def _served(live: LiveServer, channel: str, version: str) -> bytes:
    """The channel's channeldata.json once it shows aiohttp at ``version``."""
    deadline = time.monotonic() + 60
    while True:
        response = live.client().get(f"/conda/{channel}/channeldata.json")
        assert response.status_code == 200, response.text
        packages: dict[str, Any] = response.json()["packages"]
        if packages.get("aiohttp", {}).get("version") == version:
            return response.content
        assert time.monotonic() < deadline, f"channeldata.json never showed {version}: {packages}"
        time.sleep(0.1)


def test_slow_channels_build_channeldata_apart(backend: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (
        fresh_database(backend, data_dir, PG_URL) as db_url,
        run_server(
            data_dir, db_url, cluster=False, publication={"channeldata_apart_ms": 0}
        ) as live,
    ):
        publisher = live.container.publisher
        real = publisher.channeldata_apart
        assert real is not None, "the job edge gives the publisher its builder"
        built: list[str] = []

        def counting(channel_id: int) -> str:
            sha = real(channel_id)
            built.append(sha)
            return sha

        publisher.channeldata_apart = counting
        channel = live.new_channel()
        upload(live, channel, tmp_path, "aiohttp", "3.7.3", "0")
        first = _served(live, channel, "3.7.3")
        assert hashlib.sha256(first).hexdigest() in built
        upload(live, channel, tmp_path, "aiohttp", "3.7.4", "0")
        second = _served(live, channel, "3.7.4")
        assert hashlib.sha256(second).hexdigest() in built

        with live.container.read_factory() as session:
            channel_id = session.query(Channel.id).filter(Channel.name == channel).scalar()
        apart = build_channeldata_apart(live.container.settings, channel_id)
        here = build_channeldata(live.container.read_factory, live.container.blobs, channel_id)
        assert apart == here == hashlib.sha256(second).hexdigest()
