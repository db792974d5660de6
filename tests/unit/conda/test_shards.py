"""Tests of stockade.conda.shards (CEP 16), checked against rattler-index's own shards."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from rattler.index import index_fs

from stockade.conda.repodata import encode_record
from stockade.conda.shards import (
    ShardRecords,
    build_shard,
    build_shard_index,
    package_name_from_filename,
    read_shard,
    read_shard_index,
    shard_filename,
    shard_names,
)
from stockade.core.errors import InvalidInputError
from tests.conftest import TESTDATA

NOARCH = TESTDATA / "channels" / "test-recipes" / "noarch"
PATCH_REPODATA = TESTDATA / "repodata" / "patch-linux-64" / "repodata_from_packages.json"
R_REPODATA = TESTDATA / "repodata" / "r-linux-64" / "repodata.json"


def _json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _pairs(doc: dict[str, Any], section: str) -> list[tuple[str, bytes]]:
    return [(fn, encode_record(r)) for fn, r in doc.get(section, {}).items()]


def _expected_shard_record(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for key in ("sha256", "md5", "legacy_bz2_md5"):
        if key in out:
            out[key] = bytes.fromhex(out[key])
    return out


def test_shards_roundtrip_with_binary_hashes() -> None:
    doc = _json(PATCH_REPODATA)
    groups = shard_names(_pairs(doc, "packages"), _pairs(doc, "packages.conda"))
    assert list(groups) == ["cross-python_emscripten-32", "emscripten_emscripten-32"]

    group = groups["cross-python_emscripten-32"]
    digest, data = build_shard(group.tar_bz2, group.conda, group.removed)

    assert digest == hashlib.sha256(data).digest()  # the address hashes the served bytes
    assert shard_filename(digest) == digest.hex() + ".msgpack.zst"
    shard = read_shard(data)
    assert list(shard) == ["packages", "packages.conda", "removed"]
    fn = "cross-python_emscripten-32-3.10.1-h60d57d3_8.tar.bz2"
    assert shard["packages"] == {fn: _expected_shard_record(doc["packages"][fn])}
    assert shard["packages"][fn]["sha256"] == bytes.fromhex(doc["packages"][fn]["sha256"])
    assert len(shard["packages"][fn]["sha256"]) == 32
    assert len(shard["packages"][fn]["md5"]) == 16
    assert shard["packages.conda"] == {
        k: _expected_shard_record(v) for k, v in doc["packages.conda"].items()
    }
    assert shard["removed"] == []


def test_legacy_bz2_md5_is_binary_too() -> None:
    record = {
        "name": "a",
        "version": "1",
        "build": "0",
        "legacy_bz2_md5": "00" * 16,
        "md5": "11" * 16,
    }
    _, data = build_shard([], [("a-1-0.conda", encode_record(record))])
    stored = read_shard(data)["packages.conda"]["a-1-0.conda"]
    assert stored["legacy_bz2_md5"] == bytes(16)
    assert stored["md5"] == b"\x11" * 16


def test_real_channel_grouping_covers_every_record_once() -> None:
    doc = _json(R_REPODATA)
    groups = shard_names(_pairs(doc, "packages"), [], doc["removed"])
    assert sum(len(g.tar_bz2) for g in groups.values()) == len(doc["packages"])
    assert {r["name"] for r in doc["packages"].values()} <= set(groups)
    for name, group in groups.items():
        assert all(json.loads(raw)["name"] == name for _, raw in group.tar_bz2)
    removed_fn = doc["removed"][0]
    assert removed_fn in groups[package_name_from_filename(removed_fn)].removed


def test_shards_are_deterministic_whatever_the_input_order() -> None:
    doc = _json(R_REPODATA)
    group = shard_names(_pairs(doc, "packages"), [])["r-base"]
    shuffled = list(group.tar_bz2)
    random.Random(7).shuffle(shuffled)
    assert build_shard(shuffled, [], ["b-1-0.conda", "a-1-0.conda"]) == build_shard(
        group.tar_bz2, [], ["a-1-0.conda", "b-1-0.conda", "a-1-0.conda"]
    )


def test_removed_only_shard() -> None:
    groups = shard_names([], [], ["Foo-Bar-1.0-0.tar.bz2"])
    assert groups == {"foo-bar": ShardRecords(removed=["Foo-Bar-1.0-0.tar.bz2"])}
    _, data = build_shard([], [], groups["foo-bar"].removed)
    assert read_shard(data) == {
        "packages": {},
        "packages.conda": {},
        "removed": ["Foo-Bar-1.0-0.tar.bz2"],
    }


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        (
            "cross-python_emscripten-32-3.10.1-h60d57d3_8.tar.bz2",
            "cross-python_emscripten-32",
        ),
        ("python-3.99.99-0.conda", "python"),
        ("_r-mutex-1.0.0-anacondar_1.tar.bz2", "_r-mutex"),
    ],
)
def test_package_name_from_filename(filename: str, name: str) -> None:
    assert package_name_from_filename(filename) == name


@pytest.mark.parametrize("filename", ["a-1.zip", "a-1.conda", "-1-0.conda", "noversion.tar.bz2"])
def test_package_name_from_bad_filename(filename: str) -> None:
    with pytest.raises(InvalidInputError):
        package_name_from_filename(filename)


def test_records_need_a_name_and_hex_hashes() -> None:
    with pytest.raises(InvalidInputError, match="has no name"):
        shard_names([("a-1-0.tar.bz2", b'{"version":"1"}')], [])
    with pytest.raises(InvalidInputError, match="sha256 is not hex"):
        build_shard([("a-1-0.tar.bz2", b'{"name":"a","sha256":"zz"}')], [])


def test_shard_index_format() -> None:
    digests = {
        "zlib": hashlib.sha256(b"z").digest(),
        "abc": hashlib.sha256(b"a").digest(),
    }
    moment = datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    index = read_shard_index(build_shard_index("linux-64", digests, created_at=moment))

    assert index == {
        "version": 1,
        "info": {
            "subdir": "linux-64",
            "base_url": "./",
            "shards_base_url": "./shards/",
            "created_at": "2024-05-01T12:30:00.123456Z",
        },
        "shards": {"abc": digests["abc"], "zlib": digests["zlib"]},
    }
    assert list(index["shards"]) == ["abc", "zlib"]


def test_shard_index_without_time_is_a_pure_function() -> None:
    digests = {"a": bytes(32)}
    built = build_shard_index("noarch", digests, base_url="../pkgs/", shards_base_url="s/")
    assert built == build_shard_index("noarch", digests, base_url="../pkgs/", shards_base_url="s/")
    assert read_shard_index(built)["info"] == {
        "subdir": "noarch",
        "base_url": "../pkgs/",
        "shards_base_url": "s/",
    }


def test_shard_index_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        build_shard_index("noarch", {"a": b"short"})
    with pytest.raises(ValueError, match="timezone-aware"):
        build_shard_index("noarch", {}, created_at=datetime(2024, 1, 1))


def test_readers_refuse_garbage() -> None:
    with pytest.raises(InvalidInputError):
        read_shard(b"not zstd")
    with pytest.raises(InvalidInputError):
        read_shard(zstandard.ZstdCompressor().compress(msgpack.packb([1, 2])))
    with pytest.raises(InvalidInputError):
        read_shard_index(zstandard.ZstdCompressor().compress(b"\xc1"))


def test_same_shards_as_rattler_index(tmp_path: Path) -> None:
    """rattler-index (prefix.dev's indexer) writes shards from the same packages: ours hold the
    same records, and its index digests are the SHA-256 of the compressed shard files, as ours."""
    channel = tmp_path / "channel"
    (channel / "noarch").mkdir(parents=True)
    for package in NOARCH.glob("*.conda"):
        shutil.copyfile(package, channel / "noarch" / package.name)
    asyncio.run(index_fs(channel, write_shards=True, force=True))
    rattler_repodata = _json(channel / "noarch" / "repodata.json")
    rattler_index = read_shard_index(
        (channel / "noarch" / "repodata_shards.msgpack.zst").read_bytes()
    )

    groups = shard_names([], _pairs(rattler_repodata, "packages.conda"))

    assert set(groups) == set(rattler_index["shards"])
    for name, group in groups.items():
        theirs_raw = (
            channel / "noarch" / "shards" / shard_filename(rattler_index["shards"][name])
        ).read_bytes()
        assert hashlib.sha256(theirs_raw).digest() == rattler_index["shards"][name]
        _, ours_raw = build_shard(group.tar_bz2, group.conda, group.removed)
        theirs, ours = read_shard(theirs_raw), read_shard(ours_raw)
        assert ours["packages.conda"] == theirs["packages.conda"]
        assert ours["packages"] == theirs["packages"] == {}
        assert sorted(theirs.get("removed", [])) == ours["removed"] == []


def test_created_at_defaults_to_utc_z_suffix() -> None:
    index = read_shard_index(
        build_shard_index("noarch", {}, created_at=datetime(2024, 1, 2, tzinfo=UTC))
    )
    assert index["info"]["created_at"] == "2024-01-02T00:00:00.000000Z"
    assert index["shards"] == {}
