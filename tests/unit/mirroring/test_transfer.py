"""Retry rules, the verifying temporary file, zstd frames, and the file:// source."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zstandard

from stockade.mirroring.sources import FileSource, SourceConfig, UpstreamError, Validators
from stockade.mirroring.transfer import (
    ChecksumMismatchError,
    RetryPolicy,
    VerifyingSink,
    decompress_zst,
    is_transient_status,
)


def test_retry_policy() -> None:
    policy = RetryPolicy(retries=3, backoff_s=0.5, max_delay_s=3)
    assert [policy.delay(a, None) for a in range(4)] == [0.5, 1.0, 2.0, 3]
    assert policy.delay(0, "2") == 2.0
    assert policy.delay(0, "600") == 3
    assert policy.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 1.0
    assert [s for s in (200, 304, 404, 429, 500, 503) if is_transient_status(s)] == [429, 500, 503]


def test_verifying_sink(tmp_path: Path) -> None:
    data = b"abc" * 1000
    sink = VerifyingSink(tmp_path, hashlib.sha256(data).hexdigest(), len(data), "a.conda")
    sink.write(data[:10])
    sink.write(data[10:])
    path = sink.finish()
    assert path.read_bytes() == data

    sink = VerifyingSink(tmp_path, "f" * 64, None, "b.conda")
    sink.write(data)
    with pytest.raises(ChecksumMismatchError, match=r"expected f{64}"):
        sink.finish()
    assert not sink.path.exists()

    sink = VerifyingSink(tmp_path, "f" * 64, 5, "c.conda")
    with pytest.raises(ChecksumMismatchError) as info:
        sink.write(b"123456")  # more than the record's size: stop at once
    assert info.value.code == "mirror:size-mismatch"
    sink.abort()
    assert sorted(tmp_path.iterdir()) == [path]


def test_decompress_all_frames() -> None:
    compressor = zstandard.ZstdCompressor()
    assert decompress_zst(compressor.compress(b"ab") + compressor.compress(b"cd")) == b"abcd"
    with pytest.raises(UpstreamError):
        decompress_zst(compressor.compress(b"x" * 1000)[:-3])


def _channel(tmp_path: Path) -> tuple[FileSource, Path]:
    root = tmp_path / "chan"
    (root / "linux-64").mkdir(parents=True)
    (root / "linux-64" / "repodata.json").write_bytes(b'{"packages": {}}')
    (root / "linux-64" / "a-1-0.conda").write_bytes(b"package")
    return FileSource(SourceConfig(root.as_uri())), root


def test_file_source_repodata(tmp_path: Path) -> None:
    src, root = _channel(tmp_path)
    first = src.fetch_repodata("linux-64", None)
    assert first.variant == "repodata.json"
    assert first.raw == b'{"packages": {}}'
    stat = (root / "linux-64" / "repodata.json").stat()
    assert first.validators.etag == f"{stat.st_mtime_ns}-{stat.st_size}"
    assert src.fetch_repodata("linux-64", first.validators).not_modified

    os.utime(root / "linux-64" / "repodata.json", ns=(1, 1))  # touched, same bytes
    touched = src.fetch_repodata("linux-64", first.validators)
    assert touched.not_modified
    assert touched.validators.etag != first.validators.etag

    (root / "linux-64" / "repodata.json").write_bytes(b'{"packages": {"x": 1}}')
    assert src.fetch_repodata("linux-64", touched.validators).raw == b'{"packages": {"x": 1}}'

    zst = zstandard.ZstdCompressor().compress(b"{}")
    (root / "linux-64" / "repodata.json.zst").write_bytes(zst)
    preferred = src.fetch_repodata("linux-64", Validators())
    assert (preferred.variant, preferred.json_bytes()) == ("repodata.json.zst", b"{}")


def test_file_source_errors(tmp_path: Path) -> None:
    src, _root = _channel(tmp_path)
    with pytest.raises(UpstreamError) as info:
        src.fetch_repodata("osx-64", None)
    assert info.value.code == "mirror:no-subdir"
    gone = FileSource(SourceConfig((tmp_path / "nothing").as_uri()))
    with pytest.raises(UpstreamError) as info:
        gone.fetch_repodata("osx-64", None)
    assert info.value.code == "mirror:upstream-unreachable"


def test_file_source_files_stay_inside_the_channel(tmp_path: Path) -> None:
    src, _root = _channel(tmp_path)
    (tmp_path / "secret.txt").write_bytes(b"secret")
    dest = tmp_path / "dest"
    dest.mkdir()
    good = hashlib.sha256(b"package").hexdigest()
    path = src.fetch_file("linux-64", "a-1-0.conda", dest, sha256=good, size=7)
    assert path.read_bytes() == b"package"
    escape = src.file_url("linux-64", "secret.txt", "../../")
    with pytest.raises(UpstreamError) as info:
        src.fetch_file("linux-64", "secret.txt", dest, sha256="0" * 64, size=None, url=escape)
    assert info.value.code == "mirror:bad-repodata"
    with pytest.raises(UpstreamError) as info:
        src.fetch_file("linux-64", "b-1-0.conda", dest, sha256=good, size=None)
    assert info.value.code == "mirror:upstream-status"
    with pytest.raises(ChecksumMismatchError):
        src.fetch_file("linux-64", "a-1-0.conda", dest, sha256="0" * 64, size=None)
    assert list(dest.iterdir()) == [path]
