"""`stockade audit export --to FOLDER` (a one-off of the scheduled export, on the server) and
`stockade audit verify-export`, against a live server's data folder and database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cli import admin_cli, run
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional


@pytest.fixture
def cli(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    settings = live_server.settings
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("STOCKADE_DATABASE_URL", settings.db_url)
    return admin_cli(live_server, monkeypatch, tmp_path)


def test_export_to_a_folder_is_incremental_and_verifies(
    cli: CliRunner, live_server: LiveServer, tmp_path: Path
) -> None:
    folder = tmp_path / "audit-export"
    live_server.new_channel(prefix="audx")  # at least one event
    out = run(cli, "audit", "export", "--to", str(folder), "--format", "csv")
    first = sorted(folder.glob("audit-*.csv"))
    assert len(first) == 1 and f"wrote {first[0]}" in out.replace("\n", "")
    assert "intact" in run(cli, "audit", "verify-export", str(folder))
    assert "no new audit events" in run(cli, "audit", "export", "--to", str(folder), "-f", "csv")
    live_server.new_channel(prefix="audx")
    run(cli, "audit", "export", "--to", str(folder), "-f", "csv")
    files = sorted(folder.glob("audit-*.csv"))
    assert len(files) == 2  # only the new events, in a file of their own
    first_end = int(files[0].name.split("-")[2])
    assert int(files[1].name.split("-")[1]) == first_end + 1
    assert "intact" in run(cli, "audit", "verify-export", *map(str, files))
    text = files[1].read_text()
    files[1].write_text(text.replace("audx-", "evil-", 1))
    out = run(cli, "audit", "verify-export", str(folder), code=1)
    assert "audit export broken" in out and "changed" in out


def test_export_to_a_folder_refuses_mixed_or_bad_arguments(cli: CliRunner, tmp_path: Path) -> None:
    out = run(cli, "audit", "export", "x.jsonl", "--to", str(tmp_path / "f"), code=1)
    assert "--to exports every new event" in out
    assert "--format" in run(cli, "audit", "export", "--to", str(tmp_path), "-f", "xml", code=1)
    assert "give a file" in run(cli, "audit", "export", code=1)
    (tmp_path / "file").write_text("")
    assert "not a folder" in run(cli, "audit", "export", "--to", str(tmp_path / "file"), code=1)
    assert "neither" in run(cli, "audit", "verify-export", str(tmp_path / "missing"), code=1)
    assert "no audit export files" in run(cli, "audit", "verify-export", str(tmp_path), code=1)
