"""An attacker's review of the outbound guard over HTTP (issue 11 follow-up): a channel manager
who is not an admin must not learn what the server's resolver says about internal names.
Nothing leaves the machine (``localhost`` resolves to loopback, refused by default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.test_identity_api import is_problem, make_user, token_for
from tests.support.server import fresh_database, run_server

pytestmark = [pytest.mark.functional]

REFUSED = "webhook:refused-destination"


def test_a_refused_webhook_tells_a_non_admin_no_address(tmp_path: Path) -> None:
    with (
        fresh_database("sqlite", tmp_path, None) as db_url,
        run_server(tmp_path, db_url, outbound={"allow_loopback": False}) as live,
    ):
        manager = live.client(token_for(live, make_user(live)))
        channel = "wh-attack"
        assert manager.post("/api/v1/channels", json={"name": channel}).status_code == 201
        hooks = f"/api/v1/channels/{channel}/webhooks"
        for url in ("http://localhost:8080/x", "http://169.254.169.254/latest/"):
            answer = manager.post(hooks, json={"url": url})
            is_problem(answer, 422, REFUSED)
            detail = answer.json()["detail"]
            assert "refused by the server's outbound policy" in detail
            for leak in ("127.0.0.1", "169.254", "resolves", "loopback", "link-local"):
                assert leak not in detail, detail
        made = manager.post(hooks, json={"url": "https://hooks.example.invalid/h"})
        assert made.status_code == 201, made.text
        answer = manager.patch(f"{hooks}/{made.json()['id']}", json={"url": "http://localhost/"})
        is_problem(answer, 422, REFUSED)
        assert "127.0.0.1" not in answer.json()["detail"]
        # an admin (who sets the policy) is told why
        answer = live.admin.post(hooks, json={"url": "http://localhost:8080/x"})
        is_problem(answer, 422, REFUSED)
        assert "resolves to 127.0.0.1" in answer.json()["detail"]
