"""The commands of README.md's quick start and docs/user-guide.md run, as written, on a live server.

The convention (stated for writers in docs/user-guide.md, "How the examples are checked"):

- In ``README.md`` and ``docs/user-guide.md`` a fenced block tagged ``sh`` holds commands, one per
  line (a trailing ``\\`` continues it; ``#`` starts a comment). A block tagged ``console`` holds
  commands on lines starting with ``$ `` and what they print on the others (not compared: output
  formats may change). Every such command is run by this test, in the document's order, each with
  ``bash -c``, with the venv's ``stockade`` first on ``PATH``, ``HOME`` a scratch folder (the CLI's
  profile, ``~/.condarc``) and stdin empty: a prompt nobody answers fails instead of hanging.
- Every other fenced block says what it is (``text``, ``toml``, ``json``, ``python``, ...): a
  block without a language fails, so no command block escapes the test by accident.
- README runs first in the project folder (its mirror reads ``tests/data``); the user guide
  continues on the same server in a scratch folder that holds the files it names (``dist/*.conda``,
  ``environment.yml``, the lock files, ``secret.txt``), built by :func:`workspace`.
- Placeholders are replaced by :data:`SUBSTITUTIONS` only (the server's address, a token, a
  delivery id), and prompts are answered by :data:`ANSWERS` only (the password ``login`` asks for).
- Commands that cannot run in a test are skipped by a rule of :data:`SKIP`, with its reason; the
  skipped commands are printed, and a rule that skips nothing fails (it would hide drift later).
- A command passes when it exits 0 and prints no traceback: a renamed command or flag (exit 2), a
  refused request (exit 1) or a missing file fails the test, naming the document and line. A few
  effects are checked through the API, never the CLI's output format.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, own_server
from tests.factories.packages import PackageSpec, build_conda
from tests.support import warm_cli
from tests.support.server import ADMIN_PASSWORD, LiveServer

# README and the user guide share one server, in order: keep the module on one worker.
pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.xdist_group("docs-commands")]

README = ROOT / "README.md"
USER_GUIDE = ROOT / "docs" / "user-guide.md"
FENCE = re.compile(r"^```(\S*)\s*$")
COMMAND_BLOCKS = ("sh", "console")
OTHER_BLOCKS = ("text", "toml", "json", "python", "yaml", "nginx", "csv")

# (pattern, reason): a command matching the pattern is not run, and the test says so.
SKIP: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^make "), "installs and starts the project, or runs the whole test suite"),
    (re.compile(r"^(conda|mamba|pixi) "), "needs a conda client, which Stockade does not ship"),
    (re.compile(r"\$\(conda "), "asks conda (its av_data_dir), which Stockade does not ship"),
]

# Placeholders in the documents, and what the test puts in their place.
Value = Callable[["Docs"], str]
SUBSTITUTIONS: dict[str, Value] = {
    "http://127.0.0.1:8000": lambda d: d.live.url,  # README: where `make run` serves
    "https://stockade.example.com": lambda d: d.live.url,  # the user guide's server
    "stk-…": lambda d: d.live.admin_token,  # a token the reader holds
    "DELIVERY-ID": lambda d: d.first_delivery("team", 1),  # from `webhook deliveries`
}
# What a reader types at a command's prompts (by the command's beginning).
ANSWERS: dict[str, Value] = {
    "stockade login ": lambda d: f"admin\n{ADMIN_PASSWORD}\n",  # username, password
}


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str

    def where(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def fenced_blocks(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line of the first content line, lines) of every fenced block of ``path``."""
    lang: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if lang is None and match:
            lang, start, body = match.group(1), number + 1, []
        elif lang is not None and line.startswith("```"):
            yield lang, start, body
            lang = None
        elif lang is not None:
            body.append(line)


def commands(path: Path) -> list[Command]:
    """The commands of ``path``'s ``sh`` and ``console`` blocks, continuations joined."""
    found: list[Command] = []
    for lang, start, body in fenced_blocks(path):
        if lang not in COMMAND_BLOCKS:
            continue
        pending, first = "", 0
        for offset, raw in enumerate(body):
            line = raw
            if lang == "console" and not pending:
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            first = first if pending else start + offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found.append(Command(path.name, first, (pending + line).strip()))
            pending = ""
    return found


def skip_reason(command: Command) -> str | None:
    return next((reason for rule, reason in SKIP if rule.search(command.text)), None)


def reader_env(home: Path) -> dict[str, str]:
    """A reader's shell: no Stockade settings of ours, their own HOME, the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCKADE_", "XDG_"))}
    env |= {"HOME": str(home), "TERM": "dumb", "NO_COLOR": "1", "COLUMNS": "200"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Docs:
    live: LiveServer
    home: Path
    work: Path
    shim: Path  # the warm `stockade` (tests/support/warm_cli.py), first on PATH

    def env(self) -> dict[str, str]:
        env = reader_env(self.home)
        env["PATH"] = f"{self.shim}{os.pathsep}{env['PATH']}"
        return env

    def first_delivery(self, channel: str, hook: int) -> str:
        path = f"/api/v1/channels/{channel}/webhooks/{hook}/deliveries"
        return str(self.live.admin.get(path).json()[-1]["delivery_id"])

    def run(self, command: Command, cwd: Path) -> list[str]:
        """Run ``command`` as a reader would; the problems found (empty when it passed)."""
        text = command.text
        for placeholder, value in SUBSTITUTIONS.items():
            if placeholder in text:
                text = text.replace(placeholder, value(self))
        answers = next((a(self) for k, a in ANSWERS.items() if text.startswith(k)), "")
        done = subprocess.run(
            ["bash", "-c", text],
            check=False,
            cwd=cwd,
            env=self.env(),
            input=answers,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,  # no terminal: getpass reads the answers from stdin
        )
        output = done.stdout + done.stderr
        if done.returncode != 0 or "Traceback" in output:
            return [f"{command.where()}\n  exit {done.returncode}\n  {output.strip()[-2000:]}"]
        return []

    def run_all(self, path: Path, cwd: Path) -> None:
        problems: list[str] = []
        for command in commands(path):
            reason = skip_reason(command)
            if reason is not None:
                print(f"skipped ({reason}): {command.where()}")
                continue
            problems += self.run(command, cwd)
        assert not problems, "documented commands failed:\n" + "\n".join(problems)


def workspace(folder: Path, url: str) -> Path:
    """The files the user guide's examples name: packages in ``dist/``, an environment, lock
    files of those packages as uploaded to ``team``, and a webhook secret."""
    specs = [
        PackageSpec(name="mypkg", version="0.9"),
        PackageSpec(name="mypkg", version="1.0"),
        PackageSpec(name="oldpkg", version="1.0"),
        PackageSpec(name="app", version="1.0", depends=("mypkg >=1.0",)),
    ]
    (folder / "dist").mkdir()
    built = {f"{s.name}-{s.version}": build_conda(folder / "dist", s).read_bytes() for s in specs}
    locked = ("app-1.0", "mypkg-1.0")

    def url_of(key: str) -> str:
        return f"{url}/conda/team/noarch/{key}-0.conda"

    def md5(key: str) -> str:
        return hashlib.md5(built[key]).hexdigest()

    def sha256(key: str) -> str:
        return hashlib.sha256(built[key]).hexdigest()

    (folder / "environment.yml").write_text(
        yaml.safe_dump({"name": "demo", "channels": ["team"], "dependencies": ["app"]})
    )
    explicit = ["@EXPLICIT", *(f"{url_of(k)}#{md5(k)}" for k in locked)]
    (folder / "explicit.txt").write_text("\n".join(explicit) + "\n")
    conda_lock = {
        "version": 1,
        "metadata": {
            "content_hash": {"linux-64": "0" * 64},
            "channels": [{"url": f"{url}/conda/team", "used_env_vars": []}],
            "platforms": ["linux-64"],
            "sources": ["environment.yml"],
        },
        "package": [
            {
                "name": k.rsplit("-", 1)[0],
                "version": k.rsplit("-", 1)[1],
                "manager": "conda",
                "platform": "linux-64",
                "dependencies": {"mypkg": ">=1.0"} if k == "app-1.0" else {},
                "url": url_of(k),
                "hash": {"md5": md5(k), "sha256": sha256(k)},
                "category": "main",
                "optional": False,
            }
            for k in locked
        ],
    }
    (folder / "conda-lock.yml").write_text(yaml.safe_dump(conda_lock, sort_keys=False))
    pixi_lock = {
        "version": 6,
        "environments": {
            "default": {
                "channels": [{"url": f"{url}/conda/team/"}],
                "packages": {"linux-64": [{"conda": url_of(k)} for k in locked]},
            }
        },
        "packages": [
            {
                "conda": url_of(k),
                "sha256": sha256(k),
                "md5": md5(k),
                "depends": ["mypkg >=1.0"] if k == "app-1.0" else [],
                "size": len(built[k]),
                "timestamp": 1700000000000,
            }
            for k in locked
        ],
    }
    (folder / "pixi.lock").write_text(yaml.safe_dump(pixi_lock, sort_keys=False))
    (folder / "secret.txt").write_text("a-webhook-secret-of-the-team\n")
    return folder


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docs]:
    home = tmp_path_factory.mktemp("docs-home")
    with (
        warm_cli.start(tmp_path_factory.mktemp("docs-cli"), reader_env(home), ROOT) as shim,
        own_server("sqlite", tmp_path_factory, "docs") as live,
    ):
        work = workspace(tmp_path_factory.mktemp("docs-work"), live.url)
        yield Docs(live, home, work, shim)


@pytest.fixture(scope="module")
def after_readme(docs: Docs) -> Docs:
    """The server after the README's quick start (the user guide follows on from it)."""
    docs.run_all(README, ROOT)
    return docs


def test_readme_quick_start_runs_as_written(after_readme: Docs) -> None:
    admin = after_readme.live.admin
    files = admin.get("/api/v1/channels/internal/files", params={"name": "dependent"})
    assert files.status_code == 200 and "dependent-2.0-0.conda" in files.text, files.text
    runs = admin.get("/api/v1/mirrors/recipes/runs").json()
    assert runs and runs[0]["state"] == "completed", runs
    assert "channel_alias" in (after_readme.home / ".condarc").read_text()


def test_user_guide_runs_as_written(after_readme: Docs) -> None:
    docs = after_readme
    docs.run_all(USER_GUIDE, docs.work)
    admin = docs.live.admin

    def files(channel: str) -> set[str]:
        listed = admin.get(f"/api/v1/channels/{channel}/files").text
        return {
            n for n in ("mypkg-0.9-0", "mypkg-1.0-0", "oldpkg-1.0-0", "app-1.0-0") if n in listed
        }

    assert files("team") == {"mypkg-1.0-0", "app-1.0-0"}  # oldpkg moved, mypkg <1.0 removed
    assert files("prod") == {"mypkg-1.0-0"}
    assert files("archive") == {"oldpkg-1.0-0"}
    assert admin.get("/api/v1/channels/team").json()["privacy"] == "authenticated"
    assert admin.get("/api/v1/channels/team/nightly").status_code == 404
    for output in ("report.csv", "sbom.cdx.json", "sbom.spdx.json", "team.csv", "app.spdx.json"):
        assert (docs.work / output).stat().st_size > 0, output


def test_every_block_is_tagged_and_every_rule_is_used() -> None:
    untagged = [
        f"{path.name}:{start - 1}"
        for path in (README, USER_GUIDE)
        for lang, start, _ in fenced_blocks(path)
        if lang not in COMMAND_BLOCKS + OTHER_BLOCKS
    ]
    assert not untagged, f"fenced blocks without a known language (sh, console, text…): {untagged}"
    every = commands(README) + commands(USER_GUIDE)
    assert len(every) > 30, "the documents' commands were not found"
    unused = [reason for rule, reason in SKIP if not any(rule.search(c.text) for c in every)]
    unused += [p for p in SUBSTITUTIONS if not any(p in c.text for c in every)]
    unused += [a for a in ANSWERS if not any(c.text.startswith(a) for c in every)]
    assert not unused, f"skip rules, placeholders or answers that nothing uses: {unused}"
