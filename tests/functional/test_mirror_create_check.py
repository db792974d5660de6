"""A mirror's source is checked when it is created, over the CLI, the REST API and the web form
(issue 12, item 12): a source the server cannot reach is a 4xx problem (CLI: ``error: …`` and exit
code 1), and nothing is created, not even the channel that would have been made for it."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.functional.test_ui import csrf_of, sign_in
from tests.support.cli import admin_cli, run
from tests.support.mirror_data import TEST_RECIPES
from tests.support.server import ADMIN_PASSWORD, LiveServer

pytestmark = pytest.mark.functional
API = "/api/v1"


@pytest.fixture
def cli(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return admin_cli(live_server, monkeypatch, tmp_path, columns=200)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _nothing_made(live: LiveServer, name: str) -> None:
    admin = live.admin
    assert admin.get(f"{API}/mirrors/{name}").status_code == 404
    assert admin.get(f"{API}/channels/{name}").status_code == 404


def _delete(live: LiveServer, name: str) -> None:
    assert live.admin.delete(f"{API}/mirrors/{name}").status_code == 204
    assert live.admin.delete(f"{API}/channels/{name}").status_code in (200, 204)


def test_cli_refuses_a_source_it_cannot_reach(cli: CliRunner, live_server: LiveServer) -> None:
    ghost = _unique("ghost")
    out = " ".join(
        run(cli, "mirror", "create", ghost, "--source", "file:///nonexistent", code=1).split()
    )
    assert out.startswith("error: source: file:///nonexistent: no such folder on the server")
    assert "--no-check" in out and "[HTTP 422, mirror:source-check]" in out
    _nothing_made(live_server, ghost)
    # a real channel folder, but a subdir it does not have
    out = " ".join(
        run(cli, "mirror", "create", ghost, "--source", TEST_RECIPES.as_uri(), code=1).split()
    )
    assert "no repodata.json for linux-64 (it has: linux-fake, noarch" in out
    _nothing_made(live_server, ghost)
    # offline on purpose
    out = run(cli, "mirror", "create", ghost, "--source", "file:///nonexistent", "--no-check")
    assert f"mirror {ghost}" in out
    _delete(live_server, ghost)
    # and a real one passes the check
    out = run(
        cli, "mirror", "create", ghost,
        "--source", TEST_RECIPES.as_uri(), "--subdirs", "noarch,linux-fake",
    )  # fmt: skip
    assert f"mirror {ghost}" in out
    _delete(live_server, ghost)


def test_api_answers_a_problem_and_check_false_skips_it(live_server: LiveServer) -> None:
    ghost = _unique("ghost")
    body = {"name": ghost, "source": "file:///nonexistent", "subdirs": ["noarch"]}
    response = live_server.admin.post(f"{API}/mirrors", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "mirror:source-check"
    assert problem["field"] == "source"
    assert "file:///nonexistent: no such folder on the server" in problem["detail"]
    _nothing_made(live_server, ghost)
    response = live_server.admin.post(f"{API}/mirrors", json={**body, "check": False})
    assert response.status_code == 201, response.text
    _delete(live_server, ghost)
    # "check" is a boolean
    response = live_server.admin.post(f"{API}/mirrors", json={**body, "check": "maybe"})
    assert response.status_code == 422
    _nothing_made(live_server, ghost)


def _form(web: httpx.Client, **fields: str) -> httpx.Response:
    data = {"mode": "passive", "subdirs": "noarch", "schedule": "", "concurrency": "4", **fields}
    data["csrf_token"] = csrf_of(web.get("/mirrors").text)
    return web.post("/mirrors", data=data)


def test_web_form_checks_unless_told_not_to(live_server: LiveServer) -> None:
    web = live_server.client()
    assert sign_in(web, "admin", ADMIN_PASSWORD).status_code == 303
    ghost = _unique("ghost")
    answer = _form(web, name=ghost, source="file:///nonexistent")
    assert answer.status_code == 400, answer.status_code  # the form again, with the error
    assert "no such folder on the server" in answer.text
    _nothing_made(live_server, ghost)
    answer = _form(web, name=ghost, source="file:///nonexistent", no_check="1")
    assert answer.status_code == 303, answer.text
    assert live_server.admin.get(f"{API}/mirrors/{ghost}").status_code == 200
    _delete(live_server, ghost)
