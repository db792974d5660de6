"""The blob store contract: every backend passes it (the filesystem, and S3 on a real S3 server:
moto's server mode, started once per session by ``tests/support/s3.py``)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from stockade.storage.errors import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStoreUnavailableError,
)
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.interfaces import BlobStore
from stockade.storage.local_copy import local_file
from stockade.storage.s3 import S3BlobStore
from stockade.storage.staging import stage_stream
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server

MIB = 1024 * 1024
BAD_NAMES = ["../../etc/passwd", "0" * 63, "G" * 64, "0" * 64 + "/x", ""]


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "filesystem":
        yield FilesystemBlobStore(tmp_path / "blobs")
        return
    s3: S3Server = request.getfixturevalue("s3_server")
    # a small threshold: the 3 MiB files below go up as multipart uploads
    yield s3.store(s3.new_bucket(), tmp_path / "staging", multipart_threshold=MIB, page_size=2)


def corrupt(store: BlobStore, sha256: str, data: bytes) -> None:
    """Replace a stored blob's bytes behind the store's back (disk or bucket damage)."""
    if isinstance(store, S3BlobStore):
        store.client.put_object(Bucket=store.bucket, Key=store.key_for(sha256), Body=data)
    else:
        path = store.local_path(sha256)
        assert path is not None
        path.write_bytes(data)


def _identity(store: BlobStore, sha256: str) -> object:
    """What changes when a blob is written again: the file's inode, the object's ETag and date."""
    if isinstance(store, FilesystemBlobStore):
        return store.path_for(sha256).stat().st_ino
    assert isinstance(store, S3BlobStore)
    head = store.client.head_object(Bucket=store.bucket, Key=store.key_for(sha256))
    return head["ETag"], head["LastModified"]


def test_put_bytes_is_content_addressed_and_idempotent(store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    sha = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    stored_at = store.modified_at(sha)
    kept = _identity(store, sha)
    assert store.put_bytes(b"hello") == sha
    assert _identity(store, sha) == kept  # not written again (its date may move: fsck's grace)
    assert before <= stored_at <= datetime.now(UTC) + timedelta(seconds=2)
    assert stored_at.tzinfo is not None
    assert store.read_bytes(sha) == b"hello"
    assert store.size(sha) == 5
    assert store.exists(sha)
    assert sha in set(store.iter_all())


def test_put_file_moves_staged_bytes_in(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(3 * MIB + 7))
    with source.open("rb") as fh:
        staged = stage_stream(fh, store.staging_dir(), "x.conda", max_size=10**9)
    assert staged.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert staged.md5 == hashlib.md5(source.read_bytes()).hexdigest()
    store.put_file(staged.path, staged.sha256)
    assert not staged.path.exists()
    with store.open(staged.sha256) as fh:
        assert fh.read() == source.read_bytes()
    assert store.size(staged.sha256) == 3 * MIB + 7
    store.verify(staged.sha256)


def test_put_file_of_stored_content_keeps_the_blob_and_drops_the_file(
    store: BlobStore, tmp_path: Path
) -> None:
    sha = store.put_bytes(b"first")
    kept = _identity(store, sha)
    again = store.staging_dir() / "again"
    again.write_bytes(b"first")
    store.put_file(again, sha)
    assert not again.exists()
    assert store.read_bytes(sha) == b"first"
    assert _identity(store, sha) == kept


def test_streaming_open_reads_in_chunks_and_seeks(store: BlobStore) -> None:
    data = os.urandom(2 * MIB + 123)
    sha = store.put_bytes(data)
    with store.open(sha) as fh:
        assert fh.read(10) == data[:10]
        fh.seek(MIB + 5)
        assert fh.read(100) == data[MIB + 5 : MIB + 105]
        fh.seek(5)
        assert fh.read() == data[5:]
        fh.seek(0)
        chunks = list(iter(lambda: fh.read(256 * 1024), b""))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) == 256 * 1024
    assert store.read_bytes(sha) == data


def test_missing_blob_and_bad_names(store: BlobStore) -> None:
    missing = "0" * 64
    assert not store.exists(missing)
    reads: list[Callable[[str], object]] = [
        store.open,
        store.read_bytes,
        store.size,
        store.modified_at,
        store.verify,
    ]
    for read in reads:
        with pytest.raises(BlobNotFoundError):
            read(missing)
    with pytest.raises(BlobNotFoundError), local_file(store, missing):
        pass
    store.delete(missing)  # deleting what is not there is fine
    for name in BAD_NAMES:
        for call in [*reads, store.exists, store.delete]:
            with pytest.raises(BlobNotFoundError, match="not a sha256"):
                call(name)
        with pytest.raises(BlobNotFoundError, match="not a sha256"):
            store.put_file(store.staging_dir() / "nothing", name)


def test_delete_and_iter_all(store: BlobStore) -> None:
    shas = {store.put_bytes(f"blob {i}".encode()) for i in range(5)}  # S3: pages of 2
    assert set(store.iter_all()) == shas
    gone = sorted(shas)[0]
    store.delete(gone)
    assert not store.exists(gone)
    assert set(store.iter_all()) == shas - {gone}


def test_verify_finds_damaged_bytes(store: BlobStore) -> None:
    sha = store.put_bytes(b"complete")
    store.verify(sha)
    corrupt(store, sha, b"corrupt")
    with pytest.raises(BlobIntegrityError):
        store.verify(sha)


def test_local_file_is_a_copy_removed_afterwards(store: BlobStore) -> None:
    sha = store.put_bytes(b"package bytes")
    with local_file(store, sha, ".conda") as path:
        assert path.read_bytes() == b"package bytes"
    if store.local_path(sha) is None:
        assert not path.exists()
        assert not list(store.staging_dir().iterdir())
    else:
        assert path.exists()  # the store's own file


def test_staging_is_private_and_refuses_oversized_streams(store: BlobStore, tmp_path: Path) -> None:
    assert stat.S_IMODE(store.staging_dir().stat().st_mode) == 0o700
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 4096)
    with source.open("rb") as fh, pytest.raises(Exception, match="upload limit"):
        stage_stream(fh, store.staging_dir(), "big.conda", max_size=1000, chunk=512)
    assert not [p for p in store.staging_dir().iterdir() if p.name.startswith("upload-")]


def test_filesystem_never_exposes_a_half_written_blob(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs")
    sha = store.put_bytes(b"complete")
    assert store.presigned_url(sha, "x.conda") is None
    assert all(
        p.parent == store.staging_dir() or p.name in (sha,) or p.is_dir()
        for p in (tmp_path / "blobs").rglob("*")
    )


# -- S3 only -------------------------------------------------------------------------------


@pytest.fixture
def s3_store(s3_server: S3Server, tmp_path: Path) -> S3BlobStore:
    return s3_server.store(
        s3_server.new_bucket(),
        tmp_path / "staging",
        prefix="/repo/",
        multipart_threshold=MIB,
        multipart_chunksize=5 * MIB,
    )


def test_s3_multipart_upload_above_the_threshold(s3_store: S3BlobStore, tmp_path: Path) -> None:
    data = os.urandom(6 * MIB + 1)  # parts are 5 MiB at least (S3's rule): two parts
    sha = hashlib.sha256(data).hexdigest()
    path = s3_store.staging_dir() / "big"
    path.write_bytes(data)
    s3_store.put_file(path, sha)
    assert not path.exists()
    head = s3_store.client.head_object(
        Bucket=s3_store.bucket, Key=f"repo/{sha[:2]}/{sha[2:4]}/{sha}"
    )
    assert head["ETag"].endswith('-2"')  # a multipart upload of two parts
    assert s3_store.read_bytes(sha) == data


def test_s3_presigned_url_serves_the_bytes_named(s3_store: S3BlobStore) -> None:
    data = b"conda package bytes"
    sha = s3_store.put_bytes(data)
    url = s3_store.presigned_url(
        sha,
        'numpy-1.0-0.conda"; evil=1',
        60,
        content_type="application/octet-stream",
        cache_control="private, max-age=31536000, immutable",
    )
    assert url is not None and "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-disposition"] == (
        'attachment; filename="numpy-1.0-0.conda___evil_1"'
    )
    assert response.headers["cache-control"] == "private, max-age=31536000, immutable"
    # (moto does not check signatures unless its IAM emulation is on: not tested here)
    with pytest.raises(BlobNotFoundError):
        s3_store.presigned_url("../x", "x.conda")


def test_s3_public_endpoint_signs_for_the_clients_host(s3_server: S3Server, tmp_path: Path) -> None:
    public = s3_server.endpoint.replace("127.0.0.1", "localhost")
    bucket = s3_server.new_bucket()
    signer = boto3.session.Session().client(
        "s3",
        endpoint_url=public,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    store = s3_server.store(bucket, tmp_path / "staging", presign_client=signer)
    sha = store.put_bytes(b"by another name")
    url = store.presigned_url(sha, "x.conda")
    assert url is not None and url.startswith(public + "/")
    assert httpx.get(url).content == b"by another name"


def test_s3_errors_other_than_not_found_are_never_swallowed(
    s3_server: S3Server, tmp_path: Path
) -> None:
    no_bucket = s3_server.store("stockade-no-such-bucket", tmp_path / "a")
    with pytest.raises(BlobStoreUnavailableError, match="NoSuchBucket"):
        no_bucket.put_bytes(b"x")
    with pytest.raises(BlobStoreUnavailableError, match="NoSuchBucket"):
        no_bucket.open("0" * 64)
    staged = no_bucket.staging_dir() / "staged"
    staged.write_bytes(b"x")
    with pytest.raises(BlobStoreUnavailableError, match="NoSuchBucket"):
        no_bucket.put_file(staged, hashlib.sha256(b"x").hexdigest())
    assert staged.exists()  # not stored: the caller still owns it
    with pytest.raises(BlobStoreUnavailableError):
        list(no_bucket.iter_all())
    down = boto3.session.Session().client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # nothing listens on the discard port
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    unreachable = S3BlobStore(down, "stockade-any", tmp_path / "b")
    for call in (unreachable.exists, unreachable.size, unreachable.open):
        with pytest.raises(BlobStoreUnavailableError) as caught:
            call("0" * 64)
        assert SECRET_KEY not in caught.value.detail
        assert caught.value.code == "storage:unavailable"


def test_check_reachable_passes_on_a_usable_store_and_names_what_is_missing(
    store: BlobStore, s3_server: S3Server, tmp_path: Path
) -> None:
    store.check_reachable()
    if isinstance(store, FilesystemBlobStore):  # the volume was not mounted, or went away
        gone = FilesystemBlobStore(tmp_path / "gone")
        (tmp_path / "gone" / "tmp").rmdir()
        (tmp_path / "gone").rmdir()
        with pytest.raises(BlobStoreUnavailableError, match="gone"):
            gone.check_reachable()
        return
    # HEAD of a key answers 404 alike for a missing blob and a missing bucket: the bucket's own
    # HEAD tells them apart
    no_bucket = s3_server.store("stockade-no-such-bucket", tmp_path / "a")
    assert no_bucket.exists("0" * 64) is False
    with pytest.raises(BlobStoreUnavailableError, match="stockade-no-such-bucket"):
        no_bucket.check_reachable()


def test_s3_reader_is_a_stream_not_a_whole_read(s3_store: S3BlobStore) -> None:
    data = os.urandom(3 * MIB)
    sha = s3_store.put_bytes(data)
    with s3_store.open(sha) as fh:
        assert isinstance(fh, io.BufferedReader)
        assert fh.read(1) == data[:1]
        raw = fh.raw
        assert raw.tell() <= MIB  # one buffer read from the body, not the whole object


def test_storing_existing_bytes_again_makes_them_young(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsck --repair collects orphans older than its grace: bytes stored again (an upload of a
    package that had become an orphan) must not keep their old date, or they could be collected
    between this store and the commit of the row naming them."""
    sha = store.put_bytes(b"stored again")
    if isinstance(store, FilesystemBlobStore):
        old = (datetime.now(UTC) - timedelta(days=2)).timestamp()
        os.utime(store.path_for(sha), (old, old))
        before = store.modified_at(sha)
    else:  # S3 keeps LastModified to the second, and no server lets a client set it
        monkeypatch.setattr("stockade.storage.s3._REFRESH_AFTER", timedelta(0))
        before = store.modified_at(sha)
        time.sleep(1.1)
    store.put_bytes(b"stored again")
    again = store.modified_at(sha)
    assert again > before
    staged = store.staging_dir() / "again"
    staged.write_bytes(b"stored again")
    if isinstance(store, FilesystemBlobStore):
        os.utime(store.path_for(sha), (old, old))
        store.put_file(staged, sha)
        assert store.modified_at(sha) > before
    assert store.read_bytes(sha) == b"stored again"
