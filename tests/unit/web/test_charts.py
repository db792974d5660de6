"""Server-side SVG charts: labelled for screen readers, every text escaped, empty ranges drawn."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

from stockade.web.ui import charts

SVG = "{http://www.w3.org/2000/svg}"


def parsed(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None and title.text and desc.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    return root


def test_downloads_over_time_has_a_bar_with_its_figure_per_day() -> None:
    start = date(2026, 3, 1)
    series = [(start + timedelta(days=i), n) for i, n in enumerate((3, 0, 7))]
    root = parsed(charts.downloads_over_time(series))
    bars = root.findall(f"{SVG}rect")
    assert [b.findtext(f"{SVG}title") for b in bars] == [
        "2026-03-01: 3 downloads",
        "2026-03-02: 0 downloads",
        "2026-03-03: 7 downloads",
    ]
    assert "10 downloads over 3 days; most on 2026-03-03" in str(root.findtext(f"{SVG}desc"))


def test_names_are_escaped() -> None:
    markup = str(charts.top_items([("<script>x</script>", 2), ("a&b", 1)]))
    assert "<script>" not in markup and "&lt;script&gt;" in markup and "a&amp;b" in markup
    parsed(markup)


def test_severity_stacks_bands_and_has_a_legend() -> None:
    root = parsed(charts.severity_over_time([(date(2026, 3, 1), {"high": 2, "none": 5})]))
    titles = [r.findtext(f"{SVG}title") for r in root.findall(f"{SVG}rect")]
    assert "2026-03-01: 2 downloads of files with high severity" in titles
    assert "2026-03-01: 5 downloads of files with none severity" in titles
    legend = [t.text for t in root.findall(f"{SVG}text")]
    assert {"critical", "high", "medium", "low", "none"} <= set(legend)
    assert "high 2, none 5" in str(root.findtext(f"{SVG}desc"))


def test_empty_charts_say_so() -> None:
    for markup in (
        charts.downloads_over_time([]),
        charts.top_items([]),
        charts.severity_over_time([]),
    ):
        assert "No" in str(parsed(markup).findtext(f"{SVG}desc")) or "Nothing" in str(markup)


def test_counts_have_no_half_ticks() -> None:
    from datetime import date

    from stockade.web.ui.charts import downloads_over_time

    one = str(downloads_over_time([(date(2026, 12, 7), 1)]))
    assert ">0.5<" not in one and ">1<" in one
    ten = str(downloads_over_time([(date(2026, 12, 7), 9)]))
    assert ">5<" in ten and ">10<" in ten
