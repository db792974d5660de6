"""``stockade audit export --to`` into a folder someone else prepared (issue 17 attacks): a planted
link is refused with the reason and a non-zero exit, never a traceback, and nothing is written
through the link."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from stockade.audit import export as export_module
from stockade.audit.export import LOCK_FILE, STATE_FILE, TMP_PREFIX
from stockade.cli.audit_files import export_to_folder
from stockade.container import Container
from tests.integration.audit.test_audit_export import export, record

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


def test_a_file_planted_at_the_temporary_name_is_never_written(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user of a shared folder plants a hard link to a file of theirs at the next
    temporary name (after the leftovers are removed): the export must not write the log into it
    (it would be theirs to read, whatever the mode the export asks for)."""
    record(container, 1)
    folder, theirs = tmp_path / "out", tmp_path / "theirs"
    folder.mkdir()
    theirs.write_text("mine")
    theirs.chmod(0o644)
    monkeypatch.setattr(export_module.os, "getpid", lambda: 4242)
    (folder / f"{TMP_PREFIX}4242.tmp").hardlink_to(theirs)
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(()))  # planted after the sweep
    with pytest.raises(OSError):
        export(container, folder)
    assert theirs.read_text() == "mine"
