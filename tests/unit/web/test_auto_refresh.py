"""Pages that reload themselves while work goes on let the visitor stop it (WCAG 2.2.1): one pair
of macros draws the meta refresh and the note with its way out, for every such page."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.web.ui.render import TEMPLATES_DIR, build_templates

SELF_REFRESHING = ("mirror.html", "mirror_run.html", "quarantine.html", "airgap.html")


def _draw(active: bool, stopped: bool, *, noscript: bool = False) -> tuple[str, str]:
    env = build_templates().env
    page = env.from_string(
        '{% from "_macros.html" import auto_refresh, auto_refresh_note with context %}'
        "{{ auto_refresh(active, 5, noscript=ns) }}|{{ auto_refresh_note(active, 5, noscript=ns) }}"
    )
    head, note = page.render(
        active=active, refresh_stopped=stopped, current_path="/quarantine", ns=noscript
    ).split("|")
    return head, note


def test_an_active_page_refreshes_and_offers_to_stop() -> None:
    head, note = _draw(True, False)
    assert head == '<meta http-equiv="refresh" content="5">'
    assert 'href="/quarantine?refresh=off"' in note and "every 5 seconds" in note


def test_a_stopped_page_does_not_refresh_and_offers_to_start_again() -> None:
    head, note = _draw(True, True)
    assert head == ""
    assert "Automatic refresh is off" in note and 'href="/quarantine"' in note


def test_an_idle_page_neither_refreshes_nor_says_so() -> None:
    assert _draw(False, False) == ("", "")


def test_without_javascript_only() -> None:
    head, note = _draw(True, False, noscript=True)
    assert head.startswith("<noscript><meta") and note.startswith("<noscript>")


@pytest.mark.parametrize("name", SELF_REFRESHING)
def test_every_self_refreshing_page_uses_the_one_rule(name: str) -> None:
    text = (Path(TEMPLATES_DIR) / name).read_text()
    assert "auto_refresh(" in text
    assert 'http-equiv="refresh"' not in text


def test_no_other_template_writes_its_own_refresh() -> None:
    own = [
        p.name
        for p in Path(TEMPLATES_DIR).glob("*.html")
        if 'http-equiv="refresh"' in p.read_text() and p.name != "_macros.html"
    ]
    assert own == []
