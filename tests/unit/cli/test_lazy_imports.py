"""The CLI answers ``--help`` without loading the database layer, the web application or an HTTP
client (issue 18 target 6): each subcommand's module is imported only when it runs, and the list
of commands shows the same help as the commands themselves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from stockade.cli.main import SUBCOMMANDS, app, load

HEAVY = (
    "sqlalchemy",
    "fastapi",
    "starlette",
    "stockade.app",
    "alembic",
    "huey",
    "uvicorn",
    "rattler",
    "psycopg",
    "boto3",
)
#: One command of each subcommand module: showing its help imports that whole module.
EACH_MODULE = sorted({module: name for name, (module, _a, _h) in SUBCOMMANDS.items()}.values())
PROBE = """
import json, sys
sys.argv = ["stockade", *json.loads(sys.argv[1])]
from stockade.cli.main import main
try:
    main()
except SystemExit:
    pass
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def modules_after(*args: str) -> set[str]:
    """The modules a fresh ``stockade ARGS`` process has imported when it is done."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        [],
        ["mirror", "run", "--help"],
        ["db", "upgrade", "--help"],
        ["policy", "list", "--help"],
    ],
    ids=lambda a: " ".join(a) or "no-args",
)
def test_help_loads_no_heavy_module(args: list[str]) -> None:
    loaded = modules_after(*args)
    assert "typer" in loaded  # the probe did run the CLI
    assert not {m for m in HEAVY if m in loaded}, sorted(m for m in HEAVY if m in loaded)
    assert "httpx" not in loaded  # imported when a request is made, not to show help


@pytest.mark.parametrize("name", EACH_MODULE)
def test_every_commands_help_loads_no_heavy_module(name: str) -> None:
    """Every subcommand's module (``channel``, ``user``, ``cve``, ``signing``...) keeps its
    database layer, HTTP client and solver out of its imports until a command runs."""
    loaded = modules_after(name, "--help")
    assert SUBCOMMANDS[name][0] in loaded
    assert not {m for m in HEAVY if m in loaded}, sorted(m for m in HEAVY if m in loaded)
    assert "httpx" not in loaded


def test_top_level_help_imports_no_subcommand_module() -> None:
    loaded = modules_after("--help")
    modules = {module for module, _attribute, _help in SUBCOMMANDS.values()}
    assert not modules & loaded, sorted(modules & loaded)


def test_a_subcommand_imports_only_its_own_module() -> None:
    loaded = modules_after("mirror", "run", "--help")
    assert "stockade.cli.mirrors" in loaded
    assert "stockade.cli.cves" not in loaded
    assert "stockade.cli.signing" not in loaded


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    """The one line ``stockade --help`` shows for a command, without importing it, is the
    first paragraph of that command's own help."""
    command = load(name)
    own = command.short_help or (command.help or "")
    first_paragraph = " ".join(own.split("\n\n")[0].split())
    assert SUBCOMMANDS[name][2] == first_paragraph


def test_every_command_still_runs_through_the_lazy_group() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["--help"], catch_exceptions=False)
    assert listed.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in listed.output
        shown = runner.invoke(app, [name, "--help"], catch_exceptions=False)
        assert shown.exit_code == 0, (name, shown.output)
        assert "Usage" in shown.output
    unknown = runner.invoke(app, ["mirrror"])
    assert unknown.exit_code == 2
    assert "mirror" in unknown.output  # "Did you mean 'mirror'?"
