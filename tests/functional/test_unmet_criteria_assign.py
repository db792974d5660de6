"""Review of issue 11 item 12: a policy stored with ``signed_only`` before that criterion was
refused keeps its existing assignments (each exclusion says why), but is not assigned anywhere
new: that would empty another channel."""

from __future__ import annotations

import uuid

import pytest

from stockade.db.engine import transaction
from stockade.policies.models import PolicyRow
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


def test_a_stored_signed_only_policy_is_not_assigned_anew(live_server: LiveServer) -> None:
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    with transaction(live_server.container.factory) as session:
        session.add(PolicyRow(name=name, definition={"signed_only": True}))
    channel = live_server.new_channel(prefix="unmet")
    admin = live_server.admin
    assigned = admin.post(f"/api/v1/policies/{name}/assignments", json={"channel": channel})
    assert assigned.status_code == 422, assigned.text
    assert assigned.json()["code"] == "policy:unmet-criterion"
    assert assigned.json()["field"] == "signed_only"
    shown = admin.get(f"/api/v1/policies/{name}").json()
    assert shown["assignments"] == []
    plain = f"plain-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/v1/policies", json={"name": plain}).status_code == 201
    ok = admin.post(f"/api/v1/policies/{plain}/assignments", json={"channel": channel})
    assert ok.status_code == 201, ok.text
