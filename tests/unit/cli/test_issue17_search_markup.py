"""``stockade search`` prints what the server returns as text, never as Rich markup: a package
summary (anyone who uploads or mirrors sets it) with a stray closing tag crashed every search that
hit it, and a ``[link=…]`` tag drew a hyperlink of the uploader's choosing (issue 17 attacks)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from rich.console import Console

from stockade.cli import search as search_cli

EVIL = "[/bold] evil [link=https://evil.example]click[/link] [red]ALERT[/red]"


class FakeApi:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def get(self, path: str, params: Any = None) -> Any:
        return self.answer


def _run(monkeypatch: pytest.MonkeyPatch, answer: Any, *args: Any, **kwargs: Any) -> str:
    buffer = io.StringIO()
    monkeypatch.setattr(search_cli, "client", lambda: FakeApi(answer))
    monkeypatch.setattr(search_cli, "out", Console(file=buffer, force_terminal=True, width=400))
    search_cli.search(*args, **kwargs)
    return buffer.getvalue()


def test_search_hits_are_printed_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    hit = {
        "name": "pkg[/x]",
        "channel": "ch",
        "latest_version": "1.0[/]",
        "subdirs": ["noarch"],
        "match": "exact",
        "downloads": 3,
        "summary": EVIL,
    }
    printed = _run(
        monkeypatch, [hit], "pkg", where=False, channel=None, subdir=None, license_=None,
        severity=None, scan=None, signature=None, has_downloads=None, limit=20, as_json=False,
    )  # fmt: skip
    assert "[/bold]" in printed and "[link=https://evil.example]" in printed
    assert "\x1b]8;" not in printed and "\x1b[31m" not in printed  # no hyperlink, no colour


def test_where_rows_and_messages_are_printed_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    held = {
        "channel": "ch[/x]",
        "version": "1.0",
        "build": EVIL,
        "subdir": "noarch",
        "scan_status": "clean",
        "signature": "unsigned",
        "cve_severity": None,
        "open_vulnerabilities": 0,
    }
    printed = _run(monkeypatch, [held], "[/x]", where=True, as_json=False)
    assert "ch[/x]" in printed and "\x1b]8;" not in printed
    nothing = _run(monkeypatch, [], "[/x]", where=True, as_json=False)
    assert "[/x]" in re.sub(r"\x1b\[[0-9;]*m", "", nothing)  # highlighted, still the text
