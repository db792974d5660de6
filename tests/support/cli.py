"""The CLI in tests: a runner signed in as the live server's admin, and one invocation checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console
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
    _console_widths(monkeypatch, columns)
    return CliRunner()


def _console_widths(monkeypatch: pytest.MonkeyPatch, columns: int | None) -> None:
    """Rich consoles made when a command module is imported keep the ``COLUMNS`` of that moment:
    right for a real command (a process of its own), wrong here, where many commands run in one
    process and a module may first be imported during a test that asked for another width."""
    for name, module in list(sys.modules.items()):
        if name.startswith("stockade.cli"):
            for value in list(vars(module).values()):
                if isinstance(value, Console):
                    monkeypatch.setattr(value, "_width", columns)


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    """Run ``stockade ARGS``: the exit code is ``code`` and no traceback is printed."""
    result = cli.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output
