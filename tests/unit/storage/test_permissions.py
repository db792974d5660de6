"""File modes: blobs, staging files and the data folder are private (group-readable for nginx)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.storage.errors import DataFolderError
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.permissions import secure_data_dir
from stockade.storage.staging import StagingWriter


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """As a process that never set its umask (the blob store must not rely on it)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("loose_umask")
@pytest.mark.parametrize(
    ("group_readable", "dir_mode", "file_mode"), [(False, 0o700, 0o600), (True, 0o750, 0o640)]
)
def test_blobs_have_explicit_modes(
    tmp_path: Path, group_readable: bool, dir_mode: int, file_mode: int
) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs", group_readable=group_readable)
    sha = store.put_bytes(b"content")
    path = store.path_for(sha)
    assert _mode(path) == file_mode
    assert _mode(path.parent) == dir_mode
    assert _mode(path.parent.parent) == dir_mode
    assert _mode(tmp_path / "blobs") == dir_mode
    assert _mode(store.staging_dir()) == 0o700
    writer = StagingWriter(store.staging_dir(), "x", max_size=10)
    assert _mode(writer.path) == 0o600
    writer.abort()


@pytest.mark.usefixtures("loose_umask")
@pytest.mark.parametrize(("group_blobs", "blob_mode"), [(False, 0o600), (True, 0o640)])
def test_an_existing_world_readable_data_folder_is_tightened(
    tmp_path: Path, group_blobs: bool, blob_mode: int
) -> None:
    data = tmp_path / "data"
    blob = data / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x")
    (data / "stockade.db").write_bytes(b"")
    (data / "locks").mkdir()
    (data / "locks" / "publish-1.lock").write_bytes(b"")
    outside = tmp_path / "elsewhere.db"
    outside.write_bytes(b"")
    for path in (data, blob.parent, blob.parent.parent, data / "blobs", data / "locks"):
        os.chmod(path, 0o755)
    secure_data_dir(data, blob_dir=data / "blobs", extra_files=(outside,), group_blobs=group_blobs)
    assert os.umask(0o022) == 0o077  # what the process creates from now on is private
    assert _mode(data) == (0o750 if group_blobs else 0o700)
    assert _mode(data / "stockade.db") == 0o600
    assert _mode(outside) == 0o600
    assert _mode(blob) == blob_mode
    assert _mode(blob.parent) == (0o750 if group_blobs else 0o700)
    assert _mode(data / "locks") == 0o700
    assert _mode(data / "locks" / "publish-1.lock") == 0o600


@pytest.mark.usefixtures("loose_umask")
def test_switching_x_accel_redirect_on_and_off_sets_the_blob_modes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = FilesystemBlobStore(data / "blobs")
    blob = store.path_for(store.put_bytes(b"content"))
    leftover = StagingWriter(store.staging_dir(), "x", max_size=10)
    modes = [data, data / "blobs", blob.parent, blob]
    try:
        secure_data_dir(data, blob_dir=data / "blobs", group_blobs=True)
        assert [_mode(path) for path in modes] == [0o750, 0o750, 0o750, 0o640]
        assert _mode(store.staging_dir()) == 0o700  # staging stays private
        assert _mode(leftover.path) == 0o600
        secure_data_dir(data, blob_dir=data / "blobs", group_blobs=False)
        assert [_mode(path) for path in modes] == [0o700, 0o700, 0o700, 0o600]
    finally:
        leftover.abort()


@pytest.mark.usefixtures("loose_umask")
def test_a_folder_that_cannot_be_made_private_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: object, _mode: int) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(os, "chmod", refuse)
    with pytest.raises(DataFolderError) as caught:
        secure_data_dir(tmp_path / "data", blob_dir=tmp_path / "data" / "blobs")
    assert str(tmp_path / "data") in caught.value.detail
    assert "Operation not permitted" in caught.value.detail
