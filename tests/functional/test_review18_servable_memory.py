"""Review of issue 18 (servable map): what an anonymous client can make a process remember.

``ServableFiles`` (100,000 entries) and the locator's index pointers (100,000 entries) remember
misses too, bounded by count only. Package names longer than the columns (subdir 64, filename
512 characters) exist nowhere, yet each such request is remembered with its full key: with the
request line uvicorn accepts, an anonymous client of a public channel can make every worker keep
100,000 x (subdir + filename) bytes, gigabytes, without credentials.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import LiveServer

pytestmark = [pytest.mark.functional]

REQUESTS = 64
LONG = 16 * 1024  # characters in each of subdir and filename


def _remembered_bytes(live: LiveServer) -> int:
    locator = live.container.locator
    files = sum(len(k[1]) + len(k[2]) for k in list(locator.files._entries))
    indexes = sum(len(k[1]) for k in list(locator._indexes))
    return files + indexes


def test_names_no_package_can_have_are_not_remembered(live_server: LiveServer) -> None:
    channel = live_server.new_channel(prefix="mem")
    before = _remembered_bytes(live_server)
    with httpx.Client(base_url=live_server.url, timeout=60) as anonymous:
        for i in range(REQUESTS):
            subdir = f"{i:08d}" + "s" * LONG
            name = f"{i:08d}" + "f" * LONG
            assert anonymous.get(f"/conda/{channel}/{subdir}/{name}.conda").status_code == 404
            assert anonymous.get(f"/conda/{channel}/{subdir}/repodata.json").status_code == 404
    grown = _remembered_bytes(live_server) - before
    # 64 requests of 32 KiB names: nothing of them needs remembering (no such name can exist).
    assert grown < 256 * 1024, f"{grown} bytes of impossible names remembered"
