"""Commands that write to the data folder make it private without changing anything process-wide:
only ``serve`` and ``worker`` move the process's temporary files into the data folder. (A backup run
in a test process moved every later temporary folder there, and clamd's socket path grew past
the 108 bytes a unix socket allows.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

from stockade.cli.server import private_files
from stockade.settings import load_settings


def test_a_command_leaves_the_temporary_folder_alone(tmp_path: Path) -> None:
    before = tempfile.tempdir
    private_files(load_settings(data_dir=tmp_path / "data"))
    assert tempfile.tempdir == before
    assert (tmp_path / "data").stat().st_mode & 0o077 == 0


def test_a_server_spools_into_its_data_folder(tmp_path: Path) -> None:
    before = tempfile.tempdir
    try:
        private_files(load_settings(data_dir=tmp_path / "data"), server=True)
        assert tempfile.tempdir == str(tmp_path / "data" / "spool")
    finally:
        tempfile.tempdir = before
