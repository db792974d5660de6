"""The blob store contract; every backend must pass it (filesystem today, S3 later)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from stockade.storage.errors import BlobIntegrityError, BlobNotFoundError
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.interfaces import BlobStore
from stockade.storage.staging import stage_stream


@pytest.fixture(params=["filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


def test_put_bytes_is_content_addressed_and_idempotent(store: BlobStore) -> None:
    sha = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert store.put_bytes(b"hello") == sha
    assert store.read_bytes(sha) == b"hello"
    assert store.size(sha) == 5
    assert store.exists(sha)
    assert sha in set(store.iter_all())


def test_put_file_moves_staged_bytes_in(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    with source.open("rb") as fh:
        staged = stage_stream(fh, store.staging_dir(), "x.conda", max_size=10**9)
    assert staged.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert staged.md5 == hashlib.md5(source.read_bytes()).hexdigest()
    store.put_file(staged.path, staged.sha256)
    assert not staged.path.exists()
    with store.open(staged.sha256) as fh:
        assert fh.read() == source.read_bytes()


def test_missing_blob_and_bad_names(store: BlobStore) -> None:
    with pytest.raises(BlobNotFoundError):
        store.open("0" * 64)
    with pytest.raises(BlobNotFoundError):
        store.open("../../etc/passwd")
    store.delete("0" * 64)  # deleting what is not there is fine


def test_staging_refuses_oversized_streams(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 4096)
    with source.open("rb") as fh, pytest.raises(Exception, match="upload limit"):
        stage_stream(fh, store.staging_dir(), "big.conda", max_size=1000, chunk=512)
    assert not [p for p in store.staging_dir().iterdir() if p.name.startswith("upload-")]


def test_filesystem_never_exposes_a_half_written_blob(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    sha = store.put_bytes(b"complete")
    path = store.local_path(sha)
    assert path is not None
    path.write_bytes(b"corrupt")  # simulate disk damage: verify catches it
    with pytest.raises(BlobIntegrityError):
        store.verify(sha)
    assert all(
        p.parent == store.staging_dir() or p.name in (sha,) or p.is_dir()
        for p in (tmp_path / "blobs").rglob("*")
    )
