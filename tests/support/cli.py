"""The CLI in tests: a runner signed in as the live server's admin, and one invocation checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockade.cli.main import app
from tests.support.server import LiveServer


def admin_cli(
    live_server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    columns: int | None = None,
) -> CliRunner:
    """A runner acting as the server's admin with a profile of its own (``columns``: the width
    Rich tables get, e.g. 200 for one line per row)."""
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("STOCKADE_URL", live_server.url)
    monkeypatch.setenv("STOCKADE_TOKEN", live_server.admin_token)
    if columns is not None:
        monkeypatch.setenv("COLUMNS", str(columns))
    return CliRunner()


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    """Run ``stockade ARGS``: the exit code is ``code`` and no traceback is printed."""
    result = cli.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output
