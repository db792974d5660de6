"""What the serving maps may hold (review of issue 18): bounded in bytes as well as entries, with
an accounting close to the memory really held, and names no channel, subdir or file can have."""

from __future__ import annotations

import tracemalloc

import pytest

from stockade.channels.servable import (
    ArtifactPointer,
    ServableFiles,
    possible_channel,
    possible_filename,
    possible_subdir,
)

LONG_SUBDIR = "linux-" + "a" * 58  # 64 characters: the longest possible
LONG_FILE = "p" * 505 + ".conda"  # 511 characters


def _held(fill: ServableFiles, count: int, pointers: bool) -> int:
    """Bytes traced while ``count`` distinct long names go into ``fill``."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        version = (1, 2, 3)
        for n in range(count):
            subdir, filename = LONG_SUBDIR[:-6] + f"{n:06d}", f"{n:06d}" + LONG_FILE
            value = None
            if pointers:
                value = ArtifactPointer(f"{n:064x}", 10**6 + n, 1.7e9 + n, None, subdir, filename)
            fill.put((10**6 + n, subdir, filename), version, value)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("pointers", [False, True], ids=["misses", "found"])
def test_the_files_map_is_bounded_in_bytes_and_counts_them_honestly(pointers: bool) -> None:
    bound = 2 * 1024**2
    files = ServableFiles(max_entries=10**9, max_bytes=bound)
    held = _held(files, 20_000, pointers)
    assert files.nbytes <= bound
    assert len(files) < 20_000  # the oldest went
    assert held <= bound * 1.25, f"{held} bytes held for a bound of {bound}"
    # The newest is still there; the accounting matches what is left.
    assert files.get(
        (10**6 + 19_999, LONG_SUBDIR[:-6] + "019999", "019999" + LONG_FILE), (1, 2, 3)
    )[0]
    for key in list(files):
        files.drop(key)
    assert files.nbytes == 0


def test_an_entry_put_again_is_counted_once() -> None:
    files = ServableFiles(max_bytes=10**6)
    key = (1, "noarch", "x-1-0.conda")
    files.put(key, None, None)
    once = files.nbytes
    files.put(key, (1, 1, 1), None)
    assert files.nbytes == once
    files.clear()
    assert files.nbytes == 0 and len(files) == 0


@pytest.mark.parametrize(
    ("name", "possible"),
    [
        ("main", True),
        ("org/team/sub/leaf", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("a/b/c/d/e", False),  # deeper than channels may be
        ("main/shards", False),  # a reserved word
        ("Main", False),
        ("ma in", False),
        ("main\n", False),
        ("", False),
    ],
)
def test_possible_channel(name: str, possible: bool) -> None:
    assert possible_channel(name) is possible


@pytest.mark.parametrize(
    ("subdir", "possible"),
    [
        ("noarch", True),
        ("linux-64", True),
        ("osx-arm64", True),
        ("linux-aarch_64", True),  # mirrored subdirs may have '_' in their arch
        (LONG_SUBDIR, True),
        (LONG_SUBDIR + "a", False),
        ("linux", False),
        ("Linux-64", False),
        ("linux-64\n", False),
        ("linux.64", False),
        ("", False),
    ],
)
def test_possible_subdir(subdir: str, possible: bool) -> None:
    assert possible_subdir(subdir) is possible


@pytest.mark.parametrize(
    ("filename", "possible"),
    [
        ("x-1-0.conda", True),
        ("p" * 506 + ".conda", True),  # 512: the column
        ("p" * 507 + ".conda", False),
        ("x-1-0\x00.conda", False),
        ("x-1-0\x7f.conda", False),
        ("", False),
    ],
)
def test_possible_filename(filename: str, possible: bool) -> None:
    assert possible_filename(filename) is possible
