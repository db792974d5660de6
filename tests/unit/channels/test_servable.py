"""The in-memory map of servable files: an entry holds only under the version it was read under,
the map stays bounded, and the shared state is read again once older than the bound or after a
local change."""

from __future__ import annotations

import time

from sqlalchemy.orm import sessionmaker

from stockade.channels.servable import CHECK_SECONDS, ArtifactPointer, ServableFiles, ServingState

POINTER = ArtifactPointer("a" * 64, 10, 0.0, subdir="noarch", filename="x-1-0.conda")
KEY = (1, "noarch", "x-1-0.conda")


def test_an_entry_holds_only_under_its_version() -> None:
    files = ServableFiles()
    files.put(KEY, (7, 3, 3), POINTER)
    assert files.get(KEY, (7, 3, 3)) == (True, POINTER)
    assert files.get(KEY, (7, 4, 3)) == (False, None)  # a change asked for a publication
    assert files.get(KEY, (7, 4, 4)) == (False, None)  # published
    assert files.get(KEY, None) == (False, None)  # the subdir is gone
    files.put(KEY, (7, 4, 4), None)  # not servable any more: remembered as such
    assert files.get(KEY, (7, 4, 4)) == (True, None)


def test_the_map_is_bounded_oldest_first() -> None:
    files = ServableFiles(max_entries=3)
    for n in range(5):
        files.put((1, "noarch", f"f{n}"), None, POINTER)
    assert [files.get((1, "noarch", f"f{n}"), None)[0] for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_the_state_is_stale_until_read_and_after_a_local_change() -> None:
    state = ServingState(sessionmaker())
    assert not state.fresh(0.0)  # never read
    read_at = time.monotonic()
    state._checked_at = read_at  # as refresh() records a read that started then
    assert state.fresh(read_at + CHECK_SECONDS / 2)
    assert not state.fresh(read_at + CHECK_SECONDS * 1.5)  # older than the bound
    state.force()  # a commit here, after that read
    assert not state.fresh(read_at + CHECK_SECONDS / 2)
