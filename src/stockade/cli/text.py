"""Text for tables: free text is cut at a word boundary with "…", never mid-word."""

from __future__ import annotations


def shorten(text: str | None, width: int) -> str:
    """``text`` on one line, at most ``width`` characters, cut after a whole word when it can be
    (a single word longer than half the width is cut, with "…")."""
    flat = " ".join((text or "").split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    space = cut.rfind(" ")
    if flat[width - 1] != " " and space > width // 2:  # the cut falls inside a word
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"
