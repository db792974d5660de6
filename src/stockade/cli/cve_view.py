"""An advisory and a feed for people: panels of facts, then the text, scores, references, ranges
and matched artifacts (``cve show``, ``cve feed show``)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from stockade.cli.output import NONE, key_values, out, score_cell, table, when
from stockade.cli.report_view import severity_text
from stockade.vulns.display import product_name, spell_range

#: versions listed per affected product before "… and N more"
VERSIONS_SHOWN = 12


def print_advisory(data: dict[str, Any]) -> None:
    score = (
        Text.assemble(score_cell(data["best_score"]) + " ", severity_text(data["severity"]))
        if data["best_score"] is not None
        else severity_text(None)
    )
    key_values(
        data["id"],
        [
            ("score", score),
            ("aliases", data["aliases"] or None),
            ("source", f"{data['source']}" + (f" (feed {data['feed']})" if data["feed"] else "")),
            ("published", when(data["published"])),
            ("modified", when(data["modified"])),
            ("withdrawn", when(data["withdrawn"]) if data["withdrawn"] else None),
            ("KEV", "yes: known to be exploited" if data["kev"] else "no"),
            ("EPSS", NONE if data["epss"] is None else f"{data['epss'] * 100:.1f}%"),
            ("CWEs", data["cwes"] or None),
        ],
    )
    for text in (data["summary"], data["details"]):
        if text and text.strip():
            out.print(text.strip(), markup=False, highlight=False)
            out.print()
    _scores(data["scores"])
    _references(data["references"])
    _affected(data["affected"])
    _artifacts(data["artifacts"])


def _scores(scores: list[dict[str, Any]]) -> None:
    if not scores:
        out.print("no CVSS score in the feed")
        return
    grid = table("CVSS", "score", "vector", "source", title="Scores")
    for s in scores:
        base = s.get("base_score")
        grid.add_row(
            f"v{s.get('version')}",
            score_cell(base) if isinstance(base, int | float) else NONE,
            str(s.get("vector") or NONE),
            str(s.get("source") or NONE),
        )
    out.print(grid)


def _references(references: list[dict[str, Any]]) -> None:
    if not references:
        return
    out.print(Text("References", style="italic"))
    for ref in references:
        tags = ", ".join(str(t) for t in ref.get("tags") or [] if t)
        line = f"  {ref.get('url', '')}" + (f" ({tags})" if tags else "")
        out.print(line, markup=False, highlight=False, soft_wrap=True)  # URLs stay whole
    out.print()


def _affected(affected: list[dict[str, Any]]) -> None:
    if not affected:
        out.print("The feed names no affected product.")
        return
    out.print(Text("Affected products and versions (as the feed states them)", style="italic"))
    for raw in affected:
        ranges = [spell_range(r) for r in raw.get("ranges", []) if isinstance(r, dict)]
        out.print(f"  {product_name(raw)}: {'; '.join(ranges) or 'no range'}", markup=False)
        for cpe in raw.get("cpes") or []:
            out.print(f"    {cpe}", markup=False, highlight=False, soft_wrap=True)
        versions = [str(v) for v in raw.get("versions") or []]
        if versions:
            more = len(versions) - VERSIONS_SHOWN
            listed = ", ".join(versions[:VERSIONS_SHOWN]) + (
                f" … and {more} more" if more > 0 else ""
            )
            out.print(f"    versions: {listed}", markup=False, highlight=False)
        if raw.get("default_status", "unaffected") != "unaffected":
            out.print(f"    versions not listed: {raw['default_status']}", markup=False)
    out.print()


def _artifacts(artifacts: list[dict[str, Any]]) -> None:
    if not artifacts:
        out.print("no matched artifact in channels you can read")
        return
    grid = table("channel", "subdir", "filename", "status", title="Matched artifacts")
    for a in artifacts:
        grid.add_row(a["channel"], a["subdir"], a["filename"], a["status"])
    out.print(grid)


def feed_status(feed: dict[str, Any]) -> str:
    """The feed's last status; an unreachable one says since when (its first failed attempt)."""
    if feed.get("unreachable_since"):
        return f"unreachable since {when(feed['unreachable_since'])}"
    return str(feed.get("last_status") or "never synced")


def print_feed(feed: dict[str, Any]) -> None:
    key_values(
        feed["name"],
        [
            ("format", feed.get("format")),
            ("url", feed.get("url")),
            ("schedule", feed.get("schedule") if feed.get("enabled") else "disabled"),
            ("next run", when(feed.get("next_run_at")) if feed.get("enabled") else None),
            ("last sync", when(feed.get("last_sync_at"))),
            ("status", feed_status(feed)),
            ("error", feed.get("last_error") or None),
            ("advisories", feed.get("advisories")),
        ],
    )
