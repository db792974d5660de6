"""Filling the days without downloads for the charts."""

from __future__ import annotations

from datetime import date

from stockade.audit.downloads_reports import fill_days

D = date(2026, 3, 1)


def test_fills_the_asked_range_with_zeros() -> None:
    series = [(date(2026, 3, 2), 3, 30)]
    assert fill_days(series, D, date(2026, 3, 4)) == [
        (D, 0, 0),
        (date(2026, 3, 2), 3, 30),
        (date(2026, 3, 3), 0, 0),
        (date(2026, 3, 4), 0, 0),
    ]
    assert fill_days([], D, date(2026, 3, 2)) == [(D, 0, 0), (date(2026, 3, 2), 0, 0)]
    assert fill_days(series) == series


def test_a_long_range_keeps_to_the_days_with_downloads() -> None:
    series = [(D, 1, 1), (date(2028, 3, 1), 2, 2)]
    assert fill_days(series) == series
    assert fill_days([], date(2000, 1, 1), D) == []
