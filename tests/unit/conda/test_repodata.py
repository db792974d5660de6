"""Tests of stockade.conda.repodata against real repodata documents (tests/data)."""

from __future__ import annotations

import bz2
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import rattler
import zstandard

from stockade.conda.repodata import (
    build_repodata_json,
    compress_bz2,
    compress_zst,
    decode_record,
    empty_repodata_json,
    encode_record,
)
from stockade.core.errors import InvalidInputError
from tests.conftest import TESTDATA

REAL_REPODATA = [
    TESTDATA / "channels" / "test-recipes" / "noarch" / "repodata.json",
    TESTDATA / "channels" / "test-recipes" / "linux-fake" / "repodata.json",
    TESTDATA / "channels" / "test-recipes" / "osx-fake" / "repodata.json",
    TESTDATA / "channels" / "test-recipes" / "win-fake" / "repodata.json",
    TESTDATA / "channels" / "index-hotfix" / "osx-64" / "repodata.json",
    TESTDATA / "repodata" / "r-linux-64" / "repodata.json",  # 4,211 records and a removed entry
    TESTDATA / "repodata" / "pytorch-linux-64" / "repodata.json",
]


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _build_from(doc: dict[str, Any], *, shuffle: bool = False) -> bytes:
    tar_bz2 = [(fn, encode_record(r)) for fn, r in doc.get("packages", {}).items()]
    conda = [(fn, encode_record(r)) for fn, r in doc.get("packages.conda", {}).items()]
    if shuffle:
        random.Random(4).shuffle(tar_bz2)
        random.Random(2).shuffle(conda)
    return build_repodata_json(doc["info"]["subdir"], tar_bz2, conda, doc.get("removed", []))


@pytest.mark.parametrize("path", REAL_REPODATA, ids=lambda p: "/".join(p.parts[-2:]))
def test_roundtrip_real_repodata_field_for_field(path: Path) -> None:
    original = _load(path)
    built = json.loads(_build_from(original))  # the stdlib parser: valid JSON

    assert list(built) == [
        "info",
        "packages",
        "packages.conda",
        "removed",
        "repodata_version",
    ]
    assert built["info"] == {"subdir": original["info"]["subdir"]}
    assert built["repodata_version"] == 1
    assert built["removed"] == sorted(original.get("removed", []))
    for section in ("packages", "packages.conda"):
        expected = original.get(section, {})
        assert list(built[section]) == sorted(expected)  # sorted by filename
        assert built[section] == expected  # every record, field for field


@pytest.mark.parametrize("path", REAL_REPODATA[:1] + REAL_REPODATA[-2:], ids=str)
def test_output_does_not_depend_on_input_order(path: Path) -> None:
    original = _load(path)
    assert _build_from(original, shuffle=True) == _build_from(original)


def test_output_is_what_rattler_reads(tmp_path: Path) -> None:
    original = _load(REAL_REPODATA[0])
    target = tmp_path / "noarch" / "repodata.json"
    target.parent.mkdir()
    target.write_bytes(_build_from(original))

    records = rattler.RepoData.from_path(target).into_repo_data(rattler.Channel("local"))

    by_name = {r.file_name: r for r in records}
    assert set(by_name) == set(original["packages.conda"])
    for filename, record in original["packages.conda"].items():
        sha256 = by_name[filename].sha256
        assert sha256 is not None
        assert sha256.hex() == record["sha256"]
        assert str(by_name[filename].version) == record["version"]
        assert [str(d) for d in by_name[filename].depends] == record["depends"]


def test_encode_record_is_canonical_compact_sorted() -> None:
    record = {
        "version": "1.0",
        "name": "ünïcode",
        "depends": ["a >=1"],
        "info": {"z": 1, "a": 2},
    }
    encoded = encode_record(record)
    assert encoded == (
        b'{"depends":["a >=1"],"info":{"a":2,"z":1},"name":"\xc3\xbcn\xc3\xafcode","version":"1.0"}'
    )
    assert decode_record(encoded) == record


@pytest.mark.parametrize("path", REAL_REPODATA[:1] + REAL_REPODATA[-2:-1], ids=str)
def test_encode_record_matches_stdlib_canonical_form(path: Path) -> None:
    for record in _load(path).get("packages", {}).values():
        expected = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert encode_record(record) == expected.encode()


def test_encode_record_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(InvalidInputError) as info:
        encode_record({"depends": {"a", "b"}})
    assert info.value.code == "record:not-json"


def test_decode_record_refuses_non_objects() -> None:
    with pytest.raises(InvalidInputError):
        decode_record(b"[1, 2]")


def test_filenames_are_json_escaped() -> None:
    odd = 'we"ird\\name-1.0-0.conda'
    built = json.loads(build_repodata_json("noarch", [], [(odd, b'{"name":"x"}')], []))
    assert built["packages.conda"] == {odd: {"name": "x"}}


def test_duplicate_filenames_are_refused() -> None:
    pairs = [("a-1-0.tar.bz2", b"{}"), ("a-1-0.tar.bz2", b"{}")]
    with pytest.raises(ValueError, match="duplicate"):
        build_repodata_json("noarch", pairs, [], [])


def test_removed_is_deduplicated_and_sorted() -> None:
    built = json.loads(
        build_repodata_json("noarch", [], [], ["b-1-0.conda", "a-1-0.conda", "b-1-0.conda"])
    )
    assert built["removed"] == ["a-1-0.conda", "b-1-0.conda"]


def test_info_extra_and_base_url_make_repodata_v2() -> None:
    plain = json.loads(build_repodata_json("linux-64", [], [], [], info_extra={"note": "x"}))
    assert plain["info"] == {"note": "x", "subdir": "linux-64"}
    assert plain["repodata_version"] == 1

    based = json.loads(
        build_repodata_json(
            "linux-64",
            [],
            [],
            [],
            info_extra={"base_url": "https://h/c/linux-64/", "subdir": "no"},
        )
    )
    assert based["info"] == {"base_url": "https://h/c/linux-64/", "subdir": "linux-64"}
    assert based["repodata_version"] == 2


def test_empty_repodata_matches_conda_index_empty_subdir() -> None:
    conda_index_empty = _load(TESTDATA / "channels" / "index-hotfix" / "noarch" / "repodata.json")
    assert json.loads(empty_repodata_json("noarch")) == conda_index_empty


@pytest.mark.parametrize("size", [0, 1000, 3 << 20])
def test_compressions_roundtrip(size: int) -> None:
    data = (os.urandom(64).hex().encode() * (size // 128 + 1))[:size]
    zst = compress_zst(data)
    assert zstandard.ZstdDecompressor().decompress(zst) == data  # frame carries the size
    assert bz2.decompress(compress_bz2(data)) == data


def test_compressed_repodata_is_real_repodata() -> None:
    raw = _build_from(_load(REAL_REPODATA[-2]))
    assert zstandard.ZstdDecompressor().decompress(compress_zst(raw, level=10)) == raw
    assert bz2.decompress(compress_bz2(raw, level=1)) == raw
