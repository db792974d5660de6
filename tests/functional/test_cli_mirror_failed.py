"""A failed mirror run: the steps it never reached are "skipped" (API, CLI), and `mirror runs`
wraps its summary at word boundaries instead of cutting words."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cli import admin_cli, run
from tests.support.mirror_data import TEST_RECIPES
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


@pytest.fixture
def cli(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return admin_cli(live_server, monkeypatch, tmp_path)


def test_failed_run_skips_later_steps(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = tmp_path / "upstream"
    shutil.copytree(TEST_RECIPES, upstream)
    mirror = f"gone-{uuid.uuid4().hex[:8]}"
    run(cli, "mirror", "create", mirror, "--source", upstream.as_uri(), "--subdirs", "noarch")
    shutil.rmtree(upstream)  # the upstream disappears: the run fails while fetching

    monkeypatch.setenv("COLUMNS", "200")
    out = run(cli, "mirror", "run", mirror, "--follow", code=1)
    assert "failed" in out and "pending" not in out
    assert re.search(r"steps: .*failed.*skipped", " ".join(out.split())), out

    (failed,) = json.loads(run(cli, "mirror", "runs", mirror, "--json"))
    assert failed["state"] == "failed"
    states = [s["state"] for s in failed["steps"]]
    assert "pending" not in states and "failed" in states
    after = states[states.index("failed") + 1 :]
    assert after and set(after) == {"skipped"}, states
    assert "pending" not in run(cli, "mirror", "show", mirror)

    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal: the summary wraps, whole words
    out = run(cli, "mirror", "runs", mirror)
    cells = set(re.findall(r"[^\s│┃|]+", out))
    assert len(failed["summary"]) > 60, failed["summary"]  # longer than the old cut
    words = [w for w in failed["summary"].split() if len(w) < 12]
    assert words and all(w in cells for w in words), (words, out)
