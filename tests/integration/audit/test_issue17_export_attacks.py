"""``stockade audit export --to`` into a folder someone else prepared (issue 17 attacks): a planted
link is refused with the reason and a non-zero exit, never a traceback, and nothing is written
through the link."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from stockade.audit.export import LOCK_FILE, STATE_FILE
from stockade.cli.audit_files import export_to_folder
from stockade.container import Container
from tests.integration.audit.test_audit_export import record

pytestmark = pytest.mark.xdist_group("issue17-attacks")


@pytest.mark.parametrize("planted", [LOCK_FILE, STATE_FILE])
def test_a_planted_link_is_refused_with_the_reason(
    container: Container,
    tmp_path: Path,
    planted: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record(container, 1)
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(container.settings.data_dir))
    monkeypatch.setenv("STOCKADE_DATABASE_URL", container.settings.db_url)
    folder, victim = tmp_path / "out", tmp_path / "victim"
    folder.mkdir()
    victim.write_text("keep")
    (folder / planted).symlink_to(victim)
    with pytest.raises(typer.Exit) as exited:
        export_to_folder(folder, None)
    assert exited.value.exit_code == 1
    assert "error:" in capsys.readouterr().err
    assert victim.read_text() == "keep"
