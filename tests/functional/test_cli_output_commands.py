"""The output convention of every CLI command that prints data (issue 12, item 9): lists print
tables, shows print key/value panels, and ``--json`` prints the API's JSON indented by two spaces,
byte for byte what ``json.dumps(api_answer, indent=2)`` gives (stable for scripts)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.support.cli import admin_cli, run
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional

WIDTH = 80


@pytest.fixture
def cli(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return admin_cli(live_server, monkeypatch, tmp_path, columns=WIDTH)


def api(live: LiveServer, path: str, **params: Any) -> Any:
    response = live.admin.get(f"/api/v1{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def same_json(out: str, expected: object) -> None:
    """``out`` is the API's answer, indented as ``--json`` prints it everywhere."""
    assert out == json.dumps(expected, indent=2, default=str) + "\n"


def human(out: str) -> None:
    """A rendering for people: not JSON, and every line fits the terminal."""
    assert not out.lstrip().startswith(("{", "[")), out
    assert all(len(line) <= WIDTH for line in out.splitlines()), out


def test_channel_show_is_a_panel_and_json_stays_the_same(
    cli: CliRunner, live_server: LiveServer
) -> None:
    name = live_server.new_channel("private", "out-show")
    live_server.wait_published(name)  # its subdirs' dates move until then
    out = run(cli, "channel", "show", name)
    human(out)
    assert "privacy" in out and "private" in out and "url" in out and "subdir" in out
    expected = {**api(live_server, f"/channels/{name}"), "subdirs": []}
    expected["subdirs"] = api(live_server, f"/channels/{name}/subdirs")
    same_json(run(cli, "channel", "show", name, "--json"), expected)
    human(run(cli, "channel", "list"))
    same_json(run(cli, "channel", "list", "--json"), api(live_server, "/channels"))


def test_channel_files_takes_json(cli: CliRunner, live_server: LiveServer) -> None:
    name = live_server.new_channel("public", "out-files")
    same_json(run(cli, "channel", "files", name, "--json"), [])
    human(run(cli, "channel", "files", name))


def test_whoami_and_token_list_take_json(cli: CliRunner, live_server: LiveServer) -> None:
    same_json(run(cli, "whoami", "--json"), api(live_server, "/whoami"))
    out = run(cli, "token", "list")
    human(out)
    same_json(run(cli, "token", "list", "--json"), api(live_server, "/tokens"))
    assert all("token" not in t for t in json.loads(run(cli, "token", "list", "--json")))


def test_policy_show_is_a_panel_not_raw_json(cli: CliRunner, live_server: LiveServer) -> None:
    name = f"out-{uuid.uuid4().hex[:8]}"
    run(cli, "policy", "create", name, "--platforms", "noarch,linux-64", "--keep-latest", "2")
    out = run(cli, "policy", "show", name)
    human(out)
    assert "platforms" in out and "keep_latest" in out and "nothing yet" in out
    same_json(run(cli, "policy", "show", name, "--json"), api(live_server, f"/policies/{name}"))
    same_json(run(cli, "policy", "list", "--json"), api(live_server, "/policies"))


def test_identity_shows_are_panels(cli: CliRunner, live_server: LiveServer) -> None:
    group = f"out-{uuid.uuid4().hex[:8]}"
    run(cli, "group", "create", group, "--description", "[bold]not markup[/bold]")
    out = run(cli, "group", "show", group)
    human(out)
    assert "[bold]not markup[/bold]" in out  # text from the server is never Rich markup
    same_json(run(cli, "group", "show", group, "--json"), api(live_server, f"/groups/{group}"))
    out = run(cli, "user", "show", "admin")
    human(out)
    assert "admin" in out and "groups" in out and "roles" in out
    same_json(run(cli, "user", "show", "admin", "--json"), api(live_server, "/users/admin"))
    out = run(cli, "role", "show", "author")
    human(out)
    assert "permissions" in out and "channel:create" in out
    run(cli, "group", "delete", group, "--yes")


def test_audit_verify_takes_json(cli: CliRunner, live_server: LiveServer) -> None:
    assert json.loads(run(cli, "audit", "verify", "--json"))["ok"] is True
    assert "audit chain intact" in run(cli, "audit", "verify")
