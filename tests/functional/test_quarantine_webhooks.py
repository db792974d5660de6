"""A quarantine reaches the channel's webhooks: a signed ``artifact.quarantined`` delivery naming
the file and the rules, to a real HTTP receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PG_URL
from tests.support.hostile import HOSTILE
from tests.support.server import fresh_database, run_server
from tests.support.webhook_receiver import receiving

pytestmark = [pytest.mark.functional]


def test_a_quarantine_is_delivered_to_the_channels_webhooks(backend: str, tmp_path: Path) -> None:
    case = next(c for c in HOSTILE if c.scanner == "link-script" and c.verdict == "malicious")
    hostile = case.build(tmp_path)
    fast = {"backoff_s": [0.2], "poll_s": 0.2, "timeout_s": 5, "allow_loopback": True}
    with (
        receiving() as receiver,
        fresh_database(backend, tmp_path / "db", PG_URL) as db_url,
        run_server(tmp_path / "data", db_url, webhooks=fast) as live,
    ):
        channel = live.new_channel(prefix="wh-scan")
        hook = live.admin.post(
            f"/api/v1/channels/{channel}/webhooks",
            json={"url": f"{receiver.url}/scan", "events": ["artifact.quarantined"]},
        )
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        assert live.upload(channel, hostile).status_code == 201
        (call,) = receiver.wait(lambda c: c.event == "artifact.quarantined")
    assert call.verifies(secret)
    body = call.json
    assert body["channel"] == channel and body["status"] == "malicious"
    assert body["artifact"]["filename"] == hostile.name
    assert case.rule in {f["rule"] for f in body["findings"]}
