"""The vulnerability read models' small rules: the list cursor, best CVSS version, worst status."""

from __future__ import annotations

import pytest

from stockade.core.errors import InvalidInputError
from stockade.vulns.advisory_views import best_version, worst_of
from stockade.vulns.severity_list import SeverityCursor


@pytest.mark.parametrize(
    ("cursor", "text"),
    [(SeverityCursor(7.5, 12), "7.5_12"), (SeverityCursor(-1.0, 3), "-1.0_3")],
)
def test_cursor_round_trip(cursor: SeverityCursor, text: str) -> None:
    assert cursor.encode() == text
    assert SeverityCursor.decode(text) == cursor


@pytest.mark.parametrize("text", ["", "7.5", "x_1", "7.5_-1", "11.0_1", "nan_1", "7.5_1e3"])
def test_bad_cursors_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInputError):
        SeverityCursor.decode(text)


def test_best_version_prefers_v4_then_v3() -> None:
    assert best_version([{"version": "2.0"}, {"version": "3.0"}, {"version": "3.1"}]) == "3.1"
    assert best_version([{"version": "3.1"}, {"version": "4.0"}]) == "4.0"
    assert best_version([]) is None


def test_worst_status() -> None:
    assert worst_of(["cleared", "reported", "mitigated"]) == "reported"
    assert worst_of(["cleared", "active"]) == "active"
    assert worst_of(["bogus"]) is None
