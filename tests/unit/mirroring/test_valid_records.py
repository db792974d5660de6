"""A mirror run checks again only the upstream records it has not found valid before
(mirroring/valid_records.py): a record with the same content is recognised, a changed one is
checked (and refused when invalid), and the memory of keys stays bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stockade.conda import records
from stockade.mirroring import inputs, valid_records
from stockade.mirroring.inputs import UpstreamSubdir, integrity_problems
from stockade.mirroring.valid_records import ValidRecords, record_key

SHA = "a" * 64


def record(name: str, depends: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0",
        "build": "h0_0",
        "build_number": 0,
        "depends": depends,
        "sha256": SHA,
        "subdir": "linux-64",
    }


def checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []

    def counting(rec: Any, **kwargs: Any) -> Any:
        names.append(rec["name"])
        return records.record_problem(rec, **kwargs)

    monkeypatch.setattr(inputs, "record_problem", counting)
    return names


def test_only_new_or_changed_records_are_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = ValidRecords()
    first = UpstreamSubdir(
        "linux-64",
        {
            "a-1.0-h0_0.conda": record("a", ["python >=3.11"]),
            "b-1.0-h0_0.conda": record("b", []),
            "bad-1.0-h0_0.conda": record("bad", ["python >=>3"]),
        },
    )
    names = checked(monkeypatch)
    problems, valid = integrity_problems(first, memory.seen(7, "linux-64"))
    memory.remember(7, "linux-64", valid)
    assert set(problems) == {"bad-1.0-h0_0.conda"} and sorted(names) == ["a", "b", "bad"]

    # the next run: b unchanged, a changed in place to an invalid record, c new
    second = UpstreamSubdir(
        "linux-64",
        {
            "a-1.0-h0_0.conda": record("a", ["python >=3.11,,"]),
            "b-1.0-h0_0.conda": record("b", []),
            "bad-1.0-h0_0.conda": record("bad", ["python >=>3"]),
            "c-1.0-h0_0.conda": record("c", ["numpy"]),
        },
    )
    names.clear()
    problems, _ = integrity_problems(second, memory.seen(7, "linux-64"))
    assert sorted(names) == ["a", "bad", "c"]  # b was found valid before: not checked again
    assert set(problems) == {"a-1.0-h0_0.conda", "bad-1.0-h0_0.conda"}
    assert "upstream record is invalid" in problems["a-1.0-h0_0.conda"][0].detail


def test_a_record_without_sha256_is_refused_even_when_seen() -> None:
    rec = record("a", [])
    key = record_key(rec)
    assert key is not None
    del rec["sha256"]
    problems, valid = integrity_problems(UpstreamSubdir("linux-64", {"a.conda": rec}), {key})
    assert problems["a.conda"][0].criterion == "sha256" and valid == []


def _keys(*numbers: int) -> list[bytes]:
    return [n.to_bytes(16, "big") for n in numbers]


def test_the_memory_is_bounded_least_recently_checked_first() -> None:
    memory = ValidRecords(max_keys=10)
    memory.remember(1, "linux-64", _keys(*range(6)))
    memory.remember(2, "linux-64", _keys(*range(6, 10)))
    memory.remember(3, "noarch", _keys(20, 21))  # 12 > 10: mirror 1's subdir goes
    assert memory.seen(1, "linux-64") == set()
    assert memory.seen(2, "linux-64") == set(_keys(*range(6, 10)))
    assert memory.seen(3, "noarch") == set(_keys(20, 21))
    memory.remember(4, "noarch", _keys(*range(100, 111)))  # more than it may hold: kept nowhere
    assert memory.seen(4, "noarch") == set()


def test_another_process_finds_the_digests_in_the_folder(tmp_path: Path) -> None:
    """A run in a process of its own, or after a restart: the file of the last check, whole."""
    folder = tmp_path / "valid"
    ValidRecords(folder=folder).remember(7, "linux-64", _keys(1, 2, 3))
    later = ValidRecords(folder=folder)
    assert later.seen(7, "linux-64") == set(_keys(1, 2, 3))
    assert later.seen(7, "noarch") == set() and later.seen(8, "linux-64") == set()
    assert [p.name for p in folder.iterdir()] == ["7-linux-64.bin"]


@pytest.mark.parametrize("damage", ["torn", "other-checks", "garbage"])
def test_a_damaged_or_foreign_file_is_ignored(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "valid"
    ValidRecords(folder=folder).remember(7, "linux-64", _keys(1, 2, 3))
    path = folder / "7-linux-64.bin"
    data = path.read_bytes()
    if damage == "torn":
        path.write_bytes(data[:-5])
    elif damage == "other-checks":
        path.write_bytes(data.replace(valid_records.CHECKS, b"record-problem 0"))
    else:
        path.write_bytes(b"\x00" * 64)
    assert ValidRecords(folder=folder).seen(7, "linux-64") == set()


def test_a_record_changed_to_invalid_is_refused_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "valid"
    good = UpstreamSubdir("linux-64", {"a-1.0-h0_0.conda": record("a", ["python >=3.11"])})
    _, valid = integrity_problems(good)
    ValidRecords(folder=folder).remember(7, "linux-64", valid)
    bad = UpstreamSubdir("linux-64", {"a-1.0-h0_0.conda": record("a", ["python >=>3"])})
    names = checked(monkeypatch)
    problems, _ = integrity_problems(bad, ValidRecords(folder=folder).seen(7, "linux-64"))
    assert names == ["a"] and set(problems) == {"a-1.0-h0_0.conda"}
    names.clear()
    problems, _ = integrity_problems(good, ValidRecords(folder=folder).seen(7, "linux-64"))
    assert names == [] and problems == {}
