"""Review of issue 11 item 12, then issue 14: a policy stored with ``signed_only`` was refused
new assignments while no signature could be verified. Upstream signatures are now verified
against a mirror's trusted root, so such a policy is assigned like any other."""

from __future__ import annotations

import uuid

import pytest

from stockade.db.engine import transaction
from stockade.policies.models import PolicyRow
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


def test_a_stored_signed_only_policy_is_assigned(live_server: LiveServer) -> None:
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    with transaction(live_server.container.factory) as session:
        session.add(PolicyRow(name=name, definition={"signed_only": True}))
    channel = live_server.new_channel(prefix="unmet")
    admin = live_server.admin
    assigned = admin.post(f"/api/v1/policies/{name}/assignments", json={"channel": channel})
    assert assigned.status_code == 201, assigned.text
    shown = admin.get(f"/api/v1/policies/{name}").json()
    assert [a["channel"] for a in shown["assignments"]] == [channel]
    created = admin.post(
        "/api/v1/policies",
        json={"name": f"new-{uuid.uuid4().hex[:8]}", "definition": {"signed_only": True}},
    )
    assert created.status_code == 201, created.text
