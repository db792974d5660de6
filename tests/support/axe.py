"""axe-core in Chromium: the accessibility check every UI page passes (issue 17).

axe-core comes from the ``axe-playwright-python`` dev dependency (its ``axe.min.js``, axe-core
4.12, MPL-2.0): nothing is fetched at test time. The WCAG 2.x A and AA rules and axe's best
practices run on a page; violations of serious or critical impact fail the test.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

BLOCKING = ("serious", "critical")
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
RUN_AXE = (
    "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags},"
    " resultTypes: ['violations']}).then((r) => r.violations.map((v) => ({id: v.id,"
    " impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' '))})))"
)

# A box that scrolls a table sideways at some width must be reachable by keyboard at every width
# (axe sees only those that scroll at the width it runs at).
UNFOCUSABLE_SCROLL = """() => Array.from(document.querySelectorAll(".scroll"))
  .filter((el) => !el.hasAttribute("tabindex") && !el.querySelector("a, button, input, select"))
  .map((el) => (el.querySelector("table") || el).id || el.className)"""


@cache
def axe_script() -> str:
    return (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


def axe_failures(page: Any, label: str) -> list[str]:
    """What blocks on the page shown now: serious or critical violations, unfocusable scrollers."""
    failures = []
    unreachable = page.evaluate(UNFOCUSABLE_SCROLL)
    if unreachable:
        failures.append(f"{label}: scrolling boxes not focusable: {unreachable}")
    page.evaluate(axe_script())
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE, RULES)
    for v in found:
        if v["impact"] in BLOCKING:
            where = json.dumps(v["nodes"])
            failures.append(f"{label}: {v['impact']} {v['id']} ({v['help']}) at {where}")
    return failures
