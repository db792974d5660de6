"""The limits every notice meets, whoever creates it (API, page, CLI): a 4xx naming the field.

Before, ``NoticeService.create`` took any level (publishing ``notices.json`` then failed on it)
and any text (a NUL reached the database); only the API's schema checked.
"""

from __future__ import annotations

import pytest

from stockade.channels.notices import check_notice
from stockade.core.errors import InvalidInputError


@pytest.mark.parametrize(
    ("message", "level", "days", "field"),
    [
        ("", "info", None, "message"),
        ("   ", "info", None, "message"),
        ("x" * 4001, "info", None, "message"),
        ("a\x00b", "info", None, "message"),
        ("a\ud800b", "info", None, "message"),
        ("hello", "panic", None, "level"),
        ("hello", "info", 0, "expires_in_days"),
        ("hello", "info", 3651, "expires_in_days"),
    ],
)
def test_a_notice_out_of_bounds_is_refused(
    message: str, level: str, days: int | None, field: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        check_notice(message, level, days)
    assert raised.value.code == "notice:invalid"
    assert raised.value.extra["field"] == field


@pytest.mark.parametrize("level", ["info", "warning", "critical"])
def test_notices_within_bounds_pass(level: str) -> None:
    check_notice("x" * 4000, level, None)
    check_notice("two\nlines", level, 1)
    check_notice("ten years", level, 3650)
