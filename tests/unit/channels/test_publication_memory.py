"""Issue 18 target 4: the pieces a publisher keeps between publications give what a fresh build
gives (run_exports entries, record checks, shard memos) and stay bounded."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from stockade.channels.publication_exports import encode_entry, run_exports_json
from stockade.channels.publication_memory import ShardMemos, release_memory
from stockade.channels.publication_shards import ShardMemo
from stockade.conda.channeldata import build_run_exports_json
from stockade.conda.records import RecordChecker
from stockade.conda.repodata import encode_record

EXPORTS: list[tuple[str, dict[str, Any] | None]] = [
    ("b-1-0.tar.bz2", {"weak": ["b >=1"], "strong": ["libb"]}),
    ("a-1-0.tar.bz2", None),
    ("é-2-0.conda", {}),  # non-ASCII names sort the same way
    ("c-1-0.conda", {"noarch": ["c"], "weak_constrains": ["d <2"]}),
    ("a-1-0.conda", {"weak": ["a"]}),
]


def test_run_exports_json_is_byte_identical_to_the_reference_builder() -> None:
    entries = {fn: encode_entry(value) for fn, value in EXPORTS}
    tar_bz2 = [fn for fn, _ in EXPORTS if fn.endswith(".tar.bz2")]
    conda = [fn for fn, _ in EXPORTS if fn.endswith(".conda")]
    expected = build_run_exports_json(
        "linux-64",
        [(fn, v) for fn, v in EXPORTS if fn.endswith(".tar.bz2")],
        [(fn, v) for fn, v in EXPORTS if fn.endswith(".conda")],
    )
    assert run_exports_json("linux-64", entries, tar_bz2, conda) == expected


def test_an_invalid_record_is_reported_on_every_publication_not_only_the_first() -> None:
    checker = RecordChecker()
    good = encode_record({"name": "a", "version": "1", "build": "0", "build_number": 0})
    bad = encode_record({"name": "b", "version": "1..2", "build": "0", "build_number": 0})
    rows = ([1, 2], ["a-1-0.conda", "b-1..2-0.conda"], [good, bad])
    first = checker.invalid_rows(*rows)
    assert list(first) == ["b-1..2-0.conda"]
    assert checker.invalid_rows(*rows) == first  # the fast path never skips a known-bad row
    assert checker.invalid_rows([1], ["a-1-0.conda"], [good]) == {}
    # a new row (a new id) is checked even when its bytes equal a row seen before
    assert list(checker.invalid_rows([3], ["b-again.conda"], [bad])) == ["b-again.conda"]


def test_shard_memos_are_bounded_in_records_least_recently_published_first() -> None:
    memos = ShardMemos(max_records=10)

    def memo(size: int) -> ShardMemo:
        return ShardMemo("", dict.fromkeys(range(size), "n"), {"n": "f"})

    memos.put(1, memo(4))
    memos.put(2, memo(4))
    memos.put(1, memo(4))  # republished: now the most recent
    memos.put(3, memo(4))
    assert memos.get(2) is None and memos.get(1) is not None and memos.get(3) is not None
    memos.put(4, memo(11))  # larger than the bound alone: not kept
    assert memos.get(4) is None
    memos.forget(1)
    assert memos.get(1) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_memory_trims_the_heap_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert release_memory() is True


def test_kept_run_exports_entries_hold_their_own_size_not_orjsons_buffer() -> None:
    """orjson.dumps returns small outputs inside a 4 KiB buffer: 25,000 kept entries of a
    100,000-record subdir held 97 MB before."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_entry({"weak": [f"pkg{i} >=1.0"]}) for i in range(1000)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 1000
    assert used < 400 * 1000  # ~150 bytes each; 4 KiB each before
