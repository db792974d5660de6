"""``storage/backup.py``'s refusals and checks, without a server (the round trip through a live
server is tests/functional/test_backup_restore.py). The database does not matter here: SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stockade.storage.backup import Installation, backup, restore
from stockade.storage.errors import BackupError
from stockade.storage.filesystem import FilesystemBlobStore
from tests.support.templates import clone_sqlite

pytestmark = pytest.mark.one_backend


def _server(folder: Path, *, migrated: bool = True) -> tuple[Installation, FilesystemBlobStore]:
    if migrated:
        clone_sqlite(folder / "stockade.db")
    store = FilesystemBlobStore(folder / "blobs")
    files = {"secret.key": folder / "secret.key", "keys": folder / "keys"}
    return Installation(f"sqlite:///{folder / 'stockade.db'}", files, lambda: store), store


def test_backup_refuses_a_folder_holding_something_else(tmp_path: Path) -> None:
    source, _ = _server(tmp_path / "server")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match="not empty"):
        backup(source, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere" / "stockade.db").exists()


def test_damaged_blobs_are_left_out_of_a_backup_and_of_a_restore(tmp_path: Path) -> None:
    source, store = _server(tmp_path / "server")
    (tmp_path / "server" / "secret.key").write_bytes(b"k" * 44)
    good, bad = store.put_bytes(b"good bytes"), store.put_bytes(b"bad bytes")
    store.path_for(bad).write_bytes(b"rotten bytes")
    summary = backup(source, tmp_path / "backup")
    assert summary.damaged == [bad] and summary.copied == 1
    assert json.loads((tmp_path / "backup" / "BACKUP.json").read_text())["files"] == ["secret.key"]

    again = backup(source, tmp_path / "backup")  # into the same folder: only what is new
    assert again.copied == 0 and again.blobs == 2

    copy = tmp_path / "backup" / "blobs" / good[:2] / good[2:4] / good
    copy.write_bytes(b"changed in the backup")
    target, new_store = _server(tmp_path / "new", migrated=False)
    restored = restore(tmp_path / "backup", target)
    assert restored.damaged == [good] and not new_store.exists(good)
    assert (tmp_path / "new" / "secret.key").read_bytes() == b"k" * 44


def test_restore_refuses_an_unfinished_backup_a_used_database_and_another_key(
    tmp_path: Path,
) -> None:
    source, _ = _server(tmp_path / "server")
    (tmp_path / "server" / "secret.key").write_bytes(b"k" * 44)
    backup(source, tmp_path / "backup")

    used, _ = _server(tmp_path / "used")  # a migrated database: it has tables
    with pytest.raises(BackupError, match="already has tables"):
        restore(tmp_path / "backup", used)

    other, _ = _server(tmp_path / "other", migrated=False)
    (tmp_path / "other" / "secret.key").write_bytes(b"x" * 44)
    with pytest.raises(BackupError, match=r"secret\.key already exist"):
        restore(tmp_path / "backup", other)
    assert (tmp_path / "other" / "secret.key").read_bytes() == b"x" * 44

    (tmp_path / "backup" / "BACKUP.json").unlink()
    fresh, _ = _server(tmp_path / "fresh", migrated=False)
    with pytest.raises(BackupError, match="no finished backup"):
        restore(tmp_path / "backup", fresh)
