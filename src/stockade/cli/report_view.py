"""Vulnerability reports for people: a header line with totals, then a findings table."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from stockade.cli.output import NONE, cell, out, print_lines, score_cell, table
from stockade.cli.text import shorten

#: Rich styles of severity bands
SEVERITY_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
ARROW = " → "


def severity_text(severity: str | None) -> Text:
    return Text(severity or "unscored", style=SEVERITY_STYLES.get(severity or "", "dim"))


def counts_line(by_severity: dict[str, int], by_status: dict[str, int]) -> str:
    """``2 critical, 1 high; statuses: 3 active, 1 cleared`` (worst severity first)."""
    order = ("critical", "high", "medium", "low", "none", "unscored")
    ranked = sorted(by_severity.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
    severities = ", ".join(f"{n} {band}" for band, n in ranked) or "none open"
    statuses = ", ".join(f"{n} {status}" for status, n in by_status.items())
    return f"{severities}" + (f"; statuses: {statuses}" if statuses else "")


def _highest(highest: dict[str, Any] | None) -> str:
    if not highest:
        return "nothing open"
    score = score_cell(highest["score"]) if highest["score"] is not None else "unscored"
    return (
        f"highest {score} ({highest['vuln_id']}) in {highest['package']}"
        f" via {ARROW.join(highest['path'])}"
    )


def print_environment(report: dict[str, Any]) -> None:
    """An environment report (``report env``, and the tree part of ``report package``)."""
    s = report["summary"]
    name = report.get("name") or report["kind"]
    unknown = f" ({s['unknown']} not in these channels)" if s["unknown"] else ""
    out.print(
        Text.assemble(
            (f"{name}", "bold"),
            f" {report['platform']}, channels {cell(report['channels'])}: "
            f"{s['packages']} packages{unknown}, {s['findings']} findings "
            f"({counts_line(s['by_severity'], s['by_status'])}); {_highest(s['highest'])}",
        )
    )
    if report.get("ignored_channels"):
        out.print(
            f"ignored channels: {cell(report['ignored_channels'])}", highlight=False, markup=False
        )
    print_findings(report["findings"])
    missing = [p for p in report["packages"] if not p["known"]]
    if missing:
        out.print(
            "not in the chosen channels: "
            + ", ".join(f"{p['name']} {p['version']}" for p in missing),
            highlight=False,
            markup=False,
        )
    print_lines([f"note: {n}" for n in report.get("notes") or []])


def print_findings(findings: list[dict[str, Any]]) -> None:
    """Advisory, score, severity, status, package and the path from the root to it; findings that
    do not count (cleared, mitigated, disputed) are dimmed."""
    if not findings:
        out.print("no vulnerability found")
        return
    grid = table("advisory", "score", "severity", "status", "package", "path")
    for f in findings:
        grid.add_row(
            Text(f["vuln_id"]) + (Text(" KEV", style="bold red") if f.get("kev") else Text()),
            score_cell(f["score"]),
            severity_text(f["severity"]),
            f["status"],
            f"{f['package']} {f['version']}",
            ARROW.join(f["path"]) or NONE,
            style=None if f["counts"] else "dim",
        )
    out.print(grid)
    print_summaries({f["vuln_id"]: f["summary"] for f in findings})


def print_summaries(summaries: dict[str, str]) -> None:
    """One line per advisory: its id and summary (the start of its details when it has none)."""
    for vuln_id, text in summaries.items():
        room = max(out.width - len(vuln_id) - 2, 20)
        out.print(f"{vuln_id}: {shorten(text, room) or NONE}", markup=False, highlight=False)


def print_package(tree: dict[str, Any]) -> None:
    """``report package``: the build, its own and its highest reachable score, then its findings."""
    own = score_cell(tree["score"]) if tree["score"] is not None else "none"
    reach = tree.get("reachable")
    where = ""
    if reach:
        score = score_cell(reach["score"]) if reach["score"] is not None else "unscored"
        where = f"; highest reachable {score} ({reach['vuln_id']} in {ARROW.join(reach['path'])})"
    out.print(
        Text.assemble(
            (f"{tree['name']} {tree['version']} {tree['build']}", "bold"),
            f" ({tree['channel']}/{tree['subdir']}): own score {own}{where}",
        )
    )
    if tree.get("solve_error"):
        out.print(f"dependencies not solved: {tree['solve_error']}", markup=False)
    print_environment(tree["report"])


def print_channel(report: dict[str, Any]) -> None:
    """``report channel``: totals, then one row per (artifact, advisory)."""
    out.print(
        Text.assemble(
            (report["channel"], "bold"),
            f": {report['artifacts']} matched artifacts, {len(report['rows'])} findings "
            f"({counts_line(report['by_severity'], report['by_status'])})",
        )
    )
    if not report["rows"]:
        return
    grid = table("advisory", "score", "severity", "status", "package", "subdir")
    for r in report["rows"]:
        grid.add_row(
            Text(r["vuln_id"]) + (Text(" KEV", style="bold red") if r.get("kev") else Text()),
            score_cell(r["score"]),
            severity_text(r["severity"]),
            r["status"],
            f"{r['package']} {r['version']} {r['build']}",
            r["subdir"],
            style=None if r["counts"] else "dim",
        )
    out.print(grid)
    print_summaries({r["vuln_id"]: r["summary"] for r in report["rows"]})
