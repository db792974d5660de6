"""How an advisory is named in one line, the same in the UI, the API, reports and the CLI.

Many OSV records (PyPI's ``PYSEC-…`` among them) carry no ``summary``, only ``details``: their
one-line text is then the start of the details, cut after a whole word. Stored affected
entries and ranges are spelled here too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SUMMARY_LIMIT", "display_summary", "product_name", "spell_range"]

SUMMARY_LIMIT = 200


def display_summary(summary: str | None, details: str | None, limit: int = SUMMARY_LIMIT) -> str:
    """The advisory's summary, else the start of its details on one line (at most ``limit``
    characters, cut after a whole word with "…"); "" when it has neither."""
    text = " ".join((summary or "").split()) or " ".join((details or "").split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if text[limit - 1] != " " and space > limit // 2:  # the cut falls inside a word
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def spell_range(raw: dict[str, Any]) -> str:
    """A stored range as the feed stated it: ``>=0, <3.7.4`` (``ecosystem`` kind left unsaid)."""
    parts = []
    if raw.get("start") is not None:
        parts.append((">=" if raw.get("start_inclusive", True) else ">") + str(raw["start"]))
    if raw.get("end") is not None:
        parts.append(("<=" if raw.get("end_inclusive", False) else "<") + str(raw["end"]))
    text = ", ".join(parts) or "every version"
    if raw.get("kind", "ecosystem") != "ecosystem":
        text += f" ({raw['kind']})"
    if raw.get("status", "affected") != "affected":
        text += f": {raw['status']}"
    return text


def product_name(raw: dict[str, Any]) -> str:
    """A stored affected entry's product: ``vendor:product``, ``PyPI aiohttp`` or its purl."""
    if raw.get("vendor") and raw.get("product"):
        product = f"{raw['vendor']}:{raw['product']}"
    else:
        product = " ".join(str(raw[k]) for k in ("ecosystem", "name") if raw.get(k))
    if raw.get("purl") and not product:
        product = str(raw["purl"])
    return product or "(unnamed product)"
