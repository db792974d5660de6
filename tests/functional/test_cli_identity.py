"""`stockade user|group|role|token|audit …` against a live server, as an administrator runs them."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cli import admin_cli, run
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


@pytest.fixture
def cli(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return admin_cli(live_server, monkeypatch, tmp_path)


def test_users_groups_roles_and_grants(
    cli: CliRunner, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:6]
    user, group, role = f"ann-{suffix}", f"team-{suffix}", f"auditor-{suffix}"
    assert "created" in run(
        cli, "user", "create", user, "-p", "ann-password-1", "--email", "a@x.org"
    )
    assert user in run(cli, "user", "list", "-q", user)
    assert "created" in run(cli, "group", "create", group, "--description", "the team")
    run(cli, "group", "add", group, user)
    assert user in run(cli, "group", "show", group)
    run(cli, "role", "create", role, "-g", "audit=read", "-g", "channels=read")
    assert "audit:read" in run(cli, "role", "show", role)
    run(cli, "role", "assign", role, "--group", group)
    shown = json.loads(run(cli, "user", "show", user, "--json"))
    assert shown["groups"] == [group] and shown["roles"] == []
    account = f"ci-{suffix}"
    assert "service account" in run(cli, "user", "create-service", account)
    channel = live_server.new_channel(privacy="private", prefix="clig")
    live_server.admin.put(
        f"/api/v1/channels/{channel}/members", json={"user": account, "level": "write"}
    )
    out = run(cli, "token", "create", "ci", "--user", account, "-c", f"{channel}=write")
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("stk-") and "resource token" in out
    listing = run(cli, "token", "list", "--user", account)
    assert "resource" in listing and secret not in listing
    monkeypatch.setenv("STOCKADE_TOKEN", secret)
    assert account in run(cli, "whoami") and "restricted" in run(cli, "whoami")
    out = run(cli, "user", "list", code=1)  # the bot has no user:read
    assert "error:" in out and "HTTP 403" in out
    monkeypatch.setenv("STOCKADE_TOKEN", live_server.admin_token)
    run(cli, "user", "disable", user)
    assert "disabled" in run(cli, "user", "list", "-q", user)
    run(cli, "role", "unassign", role, "--group", group)
    run(cli, "group", "remove", group, user)
    run(cli, "group", "delete", group, "--yes")
    run(cli, "role", "delete", role, "--yes")
    run(cli, "user", "delete", user, "--yes")


def test_mistakes_are_messages(cli: CliRunner) -> None:
    out = run(cli, "role", "create", f"r-{uuid.uuid4().hex[:6]}", "-g", "planets=read", code=1)
    assert "planets" in out and "HTTP 422" in out
    out = run(cli, "role", "create", "x", "-g", "audit", code=1)
    assert "CATEGORY=LEVEL" in out
    out = run(cli, "token", "create", "t", "-s", "artifacts:read", "-c", "x=read", code=1)
    assert "either" in out
    out = run(cli, "group", "add", "no-such-group-here", "admin", code=1)
    assert "not found" in out
    out = run(cli, "role", "assign", "admin", code=1)
    assert "exactly one" in out
    out = run(cli, "audit", "query", "--since", "last tuesday", code=1)
    assert "--since" in out
    out = run(cli, "user", "delete", "admin", "--yes", code=1)
    assert "error:" in out


def test_audit_query_export_verify(cli: CliRunner, tmp_path: Path) -> None:
    name = f"aud-{uuid.uuid4().hex[:6]}"
    run(cli, "group", "create", name)
    assert "seq" in run(cli, "audit", "query", "--type", "group.", "-n", "5")  # the table
    events = json.loads(run(cli, "audit", "query", "--type", "group.", "-n", "500", "--json"))
    assert any(e["event_type"] == "group.create" and e["target_name"] == name for e in events)
    events = json.loads(run(cli, "audit", "query", "--actor", "admin", "-n", "3", "--json"))
    assert len(events) == 3 and all(e["actor"] == "admin" for e in events)
    assert re.search(r"audit chain intact: \d+ events", run(cli, "audit", "verify"))
    target = tmp_path / "audit.csv"
    run(cli, "audit", "export", str(target), "--format", "csv")
    assert target.read_text().startswith("seq,") and name in target.read_text()
