"""How CLI commands print data: Rich tables and key/value panels for people, ``--json`` for scripts.

The convention of every command that prints data: lists print a table, shows print a panel of
keys and values, and ``--json`` prints the API's JSON as it came, indented by two spaces (stable for
scripts: ``json.dumps(data, indent=2)``). Table cells wrap at spaces and fold a word longer than
its column onto the next line rather than cutting it, so nothing is lost at 80 columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Column, Table
from rich.text import Text

__all__ = [
    "NONE",
    "AsJson",
    "cell",
    "key_values",
    "out",
    "print_json",
    "print_lines",
    "score_cell",
    "table",
    "when",
]

out = Console()
#: what an empty cell shows
NONE = "-"

#: the ``--json`` flag every command that prints data takes
AsJson = Annotated[
    bool,
    typer.Option("--json", help="Print the API's JSON (indented; stable for scripts)."),
]


def print_json(data: object) -> None:
    """The API's JSON as it came, indented: what ``--json`` prints."""
    print(json.dumps(data, indent=2, default=str))


def cell(value: object) -> str:
    """A value as table text: "-" for nothing, yes/no, lists joined by commas."""
    if value is None or value in ("", []):
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def when(value: str | None) -> str:
    """An ISO timestamp to the second, with a space that a narrow column can wrap at
    (``2026-12-06 20:02:20``), or "-"."""
    return value[:19].replace("T", " ") if value else NONE


def score_cell(score: float | None) -> str:
    return NONE if score is None else f"{score:.1f}"


def table(*columns: str | Column, title: str | None = None) -> Table:
    """A table whose cells wrap at spaces and fold, never cut, a word too long for its column."""
    made = [
        c if isinstance(c, Column) else Column(c, overflow="fold")
        for c in columns  # a Column given keeps its own settings
    ]
    return Table(*made, title=title, box=box.SIMPLE_HEAD, title_justify="left")


def key_values(title: str, rows: Iterable[tuple[str, object]], *, subtitle: str = "") -> None:
    """A panel of keys and values (a value of ``None`` is left out; text is never markup)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        if value is None:
            continue
        grid.add_row(key, value if isinstance(value, Text) else Text(cell(value)))
    out.print(
        Panel(
            grid,
            title=Text(title, style="bold"),
            title_align="left",
            subtitle=subtitle or None,
            subtitle_align="left",
            expand=False,
        )
    )


def print_lines(lines: Sequence[str]) -> None:
    """Plain lines, never read as Rich markup."""
    for line in lines:
        out.print(line, markup=False, highlight=False)
