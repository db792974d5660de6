"""The CLI's output convention (cli/output.py): tables that never lose a word, panels whose text is
never markup, ``--json`` on every command that prints data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from stockade.cli import output
from stockade.cli.main import full_command
from stockade.cli.report_view import counts_line

#: commands that print data, as opposed to doing something and saying so in one line
DATA_COMMANDS = {
    "whoami",
    "token list",
    "user list",
    "user show",
    "group list",
    "group show",
    "role list",
    "role show",
    "audit query",
    "audit verify",
    "ldap test",
    "ldap sync",
    "channel list",
    "channel show",
    "channel files",
    "mirror list",
    "mirror show",
    "mirror runs",
    "mirror exclusions",
    "policy list",
    "policy show",
    "policy dry-run",
    "policy explain",
    "cve list",
    "cve show",
    "cve history",
    "cve import",
    "cve feed list",
    "cve feed show",
    "cve names list",
    "webhook list",
    "webhook show",
    "webhook deliveries",
    "report env",
    "report channel",
    "report package",
}


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    group = group or full_command()  # every subcommand loaded (the CLI loads them lazily)
    for name, sub in group.commands.items():
        if hasattr(sub, "commands"):
            yield from commands(sub, (*path, name))
        else:
            yield " ".join((*path, name)), sub


#: and any command named so, in groups added later
DATA_VERBS = {"list", "show", "status", "history", "runs", "deliveries", "query"}


def test_every_command_that_prints_data_takes_json() -> None:
    found = dict(commands())
    assert set(found) >= DATA_COMMANDS, DATA_COMMANDS - set(found)
    ruled = DATA_COMMANDS | {name for name in found if name.split()[-1] in DATA_VERBS}
    missing = [
        name
        for name in sorted(ruled)
        if "--json" not in {o for p in found[name].params for o in getattr(p, "opts", [])}
    ]
    assert missing == []


def test_print_json_is_indented_by_two(capsys: pytest.CaptureFixture[str]) -> None:
    data = {"b": [1, {"c": None}], "a": "é"}
    output.print_json(data)
    assert capsys.readouterr().out == json.dumps(data, indent=2) + "\n"


def render(renderable: Any, width: int = 40) -> str:
    console = Console(width=width)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def test_a_table_folds_a_long_word_instead_of_cutting_it() -> None:
    grid = output.table("name", "file")
    word = "aiohttp-3.7.3-py39h7f98852_0.conda"
    grid.add_row("aiohttp", word)
    text = render(grid, width=30)
    assert "…" not in text and "\n" in text.strip()  # folded over lines, nothing cut
    assert word in "".join(text.split())


def test_a_panel_shows_text_not_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=60, record=True)
    monkeypatch.setattr(output, "out", console)
    with console.capture() as captured:
        output.key_values("[red]x[/red]", [("note", "[bold]kept[/bold]"), ("gone", None)])
    text = captured.get()
    assert "[red]x[/red]" in text and "[bold]kept[/bold]" in text and "gone" not in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        ("", "-"),
        ([], "-"),
        (True, "yes"),
        (False, "no"),
        (["a", "b"], "a, b"),
        (3, "3"),
    ],
)
def test_cells(value: object, shown: str) -> None:
    assert output.cell(value) == shown


def test_counts_put_the_worst_severity_first() -> None:
    line = counts_line({"low": 1, "critical": 2, "unscored": 1}, {"active": 3, "cleared": 1})
    assert line == "2 critical, 1 low, 1 unscored; statuses: 3 active, 1 cleared"


def test_times_wrap_at_a_space() -> None:
    assert output.when("2026-12-06T20:02:20.123456+00:00") == "2026-12-06 20:02:20"
    assert output.when(None) == "-"
