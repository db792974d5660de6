"""Charts drawn on the server as inline SVG: no script, no CDN, readable without JavaScript.

Each chart is ``role="img"`` labelled by its own ``<title>`` and ``<desc>`` (a one-sentence
summary of what it shows); every bar carries a ``<title>`` with its exact figure (a tooltip for
the mouse, text for screen readers); the pages put the same figures in a table beside it. Colours
are presentation attributes (the pages' Content-Security-Policy allows no inline style), and bars
also differ by position and label, never by colour alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
BAR = "#2f6db5"
#: Severity bands, most severe first (vulns.download_exposure.BANDS), and their fills.
SEVERITY_FILL = {
    "critical": "#7a1212",
    "high": "#c2410c",
    "medium": "#b58900",
    "low": "#3b7d3b",
    "none": "#9aa5b1",
}
_ids = itertools.count(1)


def _frame(title: str, desc: str, body: str, height: int = HEIGHT) -> Markup:
    n = next(_ids)
    return Markup(  # noqa: S704 (every text interpolated here and in ``body`` is escaped)
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="chart-t{n} chart-d{n}">'
        f'<title id="chart-t{n}">{escape(title)}</title><desc id="chart-d{n}">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _axis(top: int, plot_h: int) -> str:
    """The value axis: 0, half (when a whole number: counts have no halves) and the maximum,
    with light grid lines."""
    parts = []
    for i, label in enumerate(("max", "half", "0")):
        if label == "half" and top % 2:
            continue
        y = TOP + plot_h * i // 2
        parts.append(
            f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#d0d7de" '
            'stroke-width="1"/>'
        )
        value = {"max": top, "half": top // 2, "0": 0}[label]
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" font-size="11" '
            f'fill="#444">{_short(value)}</text>'
        )
    return "".join(parts)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def downloads_over_time(series: Sequence[tuple[date, int]], what: str = "downloads") -> Markup:
    """A bar per day (the days without downloads included by the caller as zeros)."""
    total = sum(n for _, n in series)
    title = f"Downloads per day, {series[0][0]} to {series[-1][0]}" if series else "Downloads"
    desc = f"{total} {what} over {len(series)} days" + (
        f"; most on {max(series, key=lambda s: s[1])[0]}" if total else ""
    )
    if not series:
        return _frame(title, "No downloads in this range.", "")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max(n for _, n in series))
    step = plot_w / len(series)
    bars = []
    for i, (day, count) in enumerate(series):
        h = plot_h * count / top
        x = LEFT + i * step
        bars.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{TOP + plot_h - h:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{h:.1f}" fill="{BAR}">'
            f"<title>{day}: {count} {escape(what)}</title></rect>"
        )
    labels = _day_labels(series, step)
    return _frame(title, desc, _axis(top, plot_h) + "".join(bars) + labels)


def _day_labels(series: Sequence[tuple[date, object]], step: float) -> str:
    """The first and last day, and a few between (at most six labels)."""
    every = max(1, len(series) // 6)
    parts = []
    for i, (day, _) in enumerate(series):
        if i % every and i != len(series) - 1:
            continue
        x = LEFT + i * step + step / 2
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" '
            f'fill="#444">{day.strftime("%b %d")}</text>'
        )
    return "".join(parts)


def top_items(items: Sequence[tuple[str, int]], what: str = "downloads") -> Markup:
    """Horizontal bars, largest first, each labelled with its name and figure."""
    title = f"Top {len(items)} by {what}"
    if not items:
        return _frame(title, "Nothing downloaded in this range.", "", height=40)
    row = 22
    height = TOP + row * len(items) + 8
    name_w = 180
    plot_w = WIDTH - name_w - RIGHT - 60
    top = max(n for _, n in items) or 1
    desc = "; ".join(f"{name}: {n}" for name, n in items[:5])
    parts = []
    for i, (name, count) in enumerate(items):
        y = TOP + i * row
        w = plot_w * count / top
        label = name if len(name) <= 28 else name[:27] + "…"
        parts.append(
            f'<text x="{name_w - 6}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'fill="#222">{escape(label)}</text>'
            f'<rect x="{name_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" '
            f'fill="{BAR}"><title>{escape(name)}: {count} {escape(what)}</title></rect>'
            f'<text x="{name_w + w + 6:.1f}" y="{y + 15}" font-size="12" fill="#222">'
            f"{count}</text>"
        )
    return _frame(title, f"Most {what}: {desc}", "".join(parts), height=height)


def severity_over_time(days: Sequence[tuple[date, dict[str, int]]]) -> Markup:
    """Stacked bars per day, by the severity of what was downloaded, with a legend."""
    title = "CVE severity of downloaded files per day"
    if not days:
        return _frame(title, "No downloads in this range.", "")
    totals = {band: sum(d.get(band, 0) for _, d in days) for band in SEVERITY_FILL}
    desc = "Downloads by highest open CVE severity: " + ", ".join(
        f"{band} {n}" for band, n in totals.items() if n
    )
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM - 18
    top = _nice_max(max(sum(d.values()) for _, d in days))
    step = plot_w / len(days)
    parts = []
    for i, (day, counts) in enumerate(days):
        y = float(TOP + plot_h)
        for band in reversed(SEVERITY_FILL):  # least severe at the bottom
            n = counts.get(band, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect x="{LEFT + i * step + step * 0.1:.1f}" y="{y:.1f}" '
                f'width="{max(step * 0.8, 1):.1f}" height="{h:.1f}" fill="{SEVERITY_FILL[band]}">'
                f"<title>{day}: {n} downloads of files with {band} severity</title></rect>"
            )
    legend = []
    for j, (band, fill) in enumerate(SEVERITY_FILL.items()):
        x = LEFT + j * 110
        legend.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{fill}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#222">{band}</text>'
        )
    labels = _day_labels(days, step).replace(f'y="{HEIGHT - 8}"', f'y="{HEIGHT - 24}"')
    return _frame(title, desc, _axis(top, plot_h) + "".join(parts) + labels + "".join(legend))
