"""Feed sources are checked when a feed is added or its URL changes (issue 12, item 12): a source the
server cannot use is a 422 problem saying what is wrong (CLI: the message and a non-zero exit) and
nothing is created; ``check: false`` / ``--no-check`` adds one that is offline on purpose."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.functional.test_identity_api import is_problem, make_user, token_for
from tests.support.cves import cli_for, unique
from tests.support.cves import run_cli as run
from tests.support.server import LiveServer, free_port

pytestmark = pytest.mark.functional
FEEDS = "/api/v1/cve/feeds"
CODE = "vulns:feed-source-check"


def missing(tmp_path: Path) -> str:
    return (tmp_path / f"nonexistent-{uuid.uuid4().hex[:8]}").as_uri()


def kev_file(tmp_path: Path) -> Path:
    path = tmp_path / "kev.json"
    path.write_text(json.dumps({"catalogVersion": "1", "count": 0, "vulnerabilities": []}))
    return path


def test_a_feed_of_a_missing_path_is_refused_and_not_created(
    live_server: LiveServer, tmp_path: Path
) -> None:
    name, url = unique("feed"), missing(tmp_path)
    answer = live_server.admin.post(FEEDS, json={"name": name, "url": url, "format": "osv"})
    is_problem(answer, 422, CODE)
    assert "does not exist" in answer.json()["detail"]
    assert answer.json().get("field") == "url"
    assert live_server.admin.get(f"{FEEDS}/{name}").status_code == 404

    body = {"name": name, "url": url, "format": "osv", "check": False}
    made = live_server.admin.post(FEEDS, json=body)  # offline on purpose
    assert made.status_code == 201, made.text


def test_a_changed_url_is_checked_too(live_server: LiveServer, tmp_path: Path) -> None:
    name, good = unique("feed"), kev_file(tmp_path).as_uri()
    made = live_server.admin.post(FEEDS, json={"name": name, "url": good, "format": "kev"})
    assert made.status_code == 201, made.text
    gone = missing(tmp_path)
    is_problem(live_server.admin.patch(f"{FEEDS}/{name}", json={"url": gone}), 422, CODE)
    assert live_server.admin.get(f"{FEEDS}/{name}").json()["url"] == good
    is_problem(live_server.admin.patch(f"{FEEDS}/{name}", json={"format": "epss"}), 422, CODE)
    kept = live_server.admin.patch(f"{FEEDS}/{name}", json={"schedule": "0 4 * * *"})
    assert kept.status_code == 200, kept.text  # no new source: nothing to check
    moved = live_server.admin.patch(f"{FEEDS}/{name}", json={"url": gone, "check": False})
    assert moved.status_code == 200 and moved.json()["url"] == gone


@pytest.mark.parametrize(
    ("fmt", "what"),
    [("epss", "kev"), ("bundle", "kev"), ("bundle", "folder"), ("nvd", "text")],
)
def test_a_source_of_another_format_is_refused(
    live_server: LiveServer, tmp_path: Path, fmt: str, what: str
) -> None:
    sources = {
        "kev": kev_file(tmp_path),
        "folder": tmp_path,
        "text": tmp_path / "notes.txt",
    }
    (tmp_path / "notes.txt").write_text("not JSON at all\n")
    body = {"name": unique("feed"), "url": sources[what].as_uri(), "format": fmt}
    answer = live_server.admin.post(FEEDS, json=body)
    is_problem(answer, 422, CODE)
    assert live_server.admin.get(f"{FEEDS}/{body['name']}").status_code == 404


def test_sources_that_look_right_are_added(live_server: LiveServer, tmp_path: Path) -> None:
    folder = tmp_path / "advisories"
    folder.mkdir()  # empty: filled later
    for url, fmt in ((kev_file(tmp_path).as_uri(), "kev"), (folder.as_uri(), "osv")):
        made = live_server.admin.post(FEEDS, json={"name": unique("f"), "url": url, "format": fmt})
        assert made.status_code == 201, made.text


def test_an_https_source_that_does_not_answer_is_refused(live_server: LiveServer) -> None:
    url = f"https://127.0.0.1:{free_port()}/kev.json?apiKey=S3CRET-key"
    answer = live_server.admin.post(FEEDS, json={"name": unique("f"), "url": url, "format": "kev"})
    is_problem(answer, 422, CODE)
    assert "cannot be reached" in answer.json()["detail"]
    assert "S3CRET" not in answer.text and "refused" not in answer.json()["detail"]


def test_callers_without_cve_manage_learn_nothing_of_server_files(
    live_server: LiveServer, tmp_path: Path
) -> None:
    user = make_user(live_server)
    client = live_server.client(token_for(live_server, user))
    answers = [
        client.post(FEEDS, json={"name": unique("f"), "url": url, "format": "kev"})
        for url in (kev_file(tmp_path).as_uri(), missing(tmp_path))
    ]
    assert {a.status_code for a in answers} == {403}
    assert answers[0].json()["code"] == answers[1].json()["code"]


def test_cli_feed_add_checks_and_no_check_skips(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = cli_for(monkeypatch, tmp_path, live_server)
    name, url = unique("feed"), missing(tmp_path)
    out = run(cli, "cve", "feed", "add", name, "--url", url, "--format", "osv", code=1)
    assert "does not exist" in out
    assert live_server.admin.get(f"{FEEDS}/{name}").status_code == 404
    out = run(cli, "cve", "feed", "add", name, "--url", url, "--format", "osv", "--no-check")
    assert name in out
