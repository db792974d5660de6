"""`stockade channel update --scan-…` sets a channel's scan settings; `channel show` shows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import admin_cli, run
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


def test_scan_settings_from_the_cli(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli = admin_cli(live_server, monkeypatch, tmp_path, columns=200)
    channel = live_server.new_channel(prefix="cli-scan")
    run(
        cli, "channel", "update", channel, "--scan-uploads", "serve-first", "--scan-errors", "serve"
    )
    shown = run(cli, "channel", "show", channel)
    assert "uploads serve-first, suspicious serve, errors serve" in shown
    data = live_server.admin.get(f"/api/v1/channels/{channel}").json()
    assert (data["scan_uploads"], data["scan_errors"]) == ("serve-first", "serve")
    bad = run(cli, "channel", "update", channel, "--scan-uploads", "later", code=1)
    assert "scan_uploads" in bad
