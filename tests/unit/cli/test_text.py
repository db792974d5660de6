"""Table text is cut at word boundaries, never mid-word."""

from __future__ import annotations

import pytest

from stockade.cli.text import shorten


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        (None, 10, ""),
        ("short", 10, "short"),
        ("exactly ten", 11, "exactly ten"),
        ("the upstream folder is gone", 20, "the upstream folder…"),
        ("the upstream, folder", 16, "the upstream…"),
        ("line\nbreaks  and   spaces", 40, "line breaks and spaces"),
        ("averyveryverylongsingleword and more", 12, "averyveryve…"),
    ],
)
def test_shorten(text: str | None, width: int, expected: str) -> None:
    assert shorten(text, width) == expected
    assert len(shorten(text, width)) <= width
