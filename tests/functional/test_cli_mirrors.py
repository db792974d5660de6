"""`stockade mirror …` and `stockade policy …` against a live server, as a user runs them.

A mirror of the real ``test-recipes`` channel (``file://``, active) under a policy that drops
GPL-3/AGPL licenses and ``python`` except ``python 3.99.99``: dry run, run with live progress,
explain, runs, logs. Every mistake ends with ``error: … [HTTP 4xx, code]`` and exit code 1, never
a traceback.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cli import admin_cli, run
from tests.support.mirror_data import TEST_RECIPES
from tests.support.server import LiveServer

pytestmark = pytest.mark.functional

PROBLEM = re.compile(r"\[HTTP 4\d\d, [a-z0-9_-]+(:[a-z0-9_-]+)*\]")


@pytest.fixture
def cli(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return admin_cli(live_server, monkeypatch, tmp_path, columns=200)  # one line per table row


def refused(cli: CliRunner, *args: str, code: str | None = None) -> str:
    """A user mistake: one ``error:`` line naming the HTTP status and the rule, exit code 1."""
    out = " ".join(run(cli, *args, code=1).split())  # rich wraps long lines
    assert out.startswith("error:"), out
    found = PROBLEM.search(out)
    assert found, f"no [HTTP 4xx, code] in {out!r}"
    if code is not None:
        assert f", {code}]" in found.group(0), out
    return out


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_mirror_with_a_policy_from_the_cli(cli: CliRunner) -> None:
    mirror, policy = _unique("cm"), _unique("safe")
    out = run(
        cli, "mirror", "create", mirror,
        "--source", TEST_RECIPES.as_uri(),
        "--subdirs", "noarch,linux-fake",
        "--mode", "active",
    )  # fmt: skip
    assert f"mirror {mirror}" in out and "active" in out and "linux-fake" in out
    out = run(
        cli, "policy", "create", policy,
        "--licenses-not", "gpl3,agpl",
        "--exclude-spec", "python",
        "--exclude-spec", "pip",
        "--cooldown-days", "7",
        "--except", "python 3.99.99",
    )  # fmt: skip
    assert f"policy {policy} created" in out
    assert f"assigned to mirror {mirror}" in run(
        cli, "policy", "assign", policy, "--mirror", mirror
    )
    shown = json.loads(run(cli, "mirror", "show", mirror, "--json"))
    assert shown["policies"] == [policy] and shown["mode"] == "active"

    # A dry run reads the last run's upstream records, never the upstream: none yet.
    out = refused(cli, "policy", "dry-run", policy, "--channel", mirror, code="mirror:no-snapshot")
    assert "no snapshot yet" in out

    out = run(cli, "mirror", "run", mirror, "--follow")
    assert "completed" in out and "upstream=" in out and "kept=" in out
    runs = json.loads(run(cli, "mirror", "runs", mirror, "--json"))
    assert len(runs) == 1 and runs[0]["state"] == "completed"
    run_id = str(runs[0]["id"])

    out = run(cli, "policy", "dry-run", policy, "--channel", mirror)
    assert mirror in out and "kept" in out and "would add" in out
    preview = json.loads(run(cli, "policy", "dry-run", policy, "--channel", mirror, "--json"))
    totals = preview["mirrors"][0]["totals"]
    assert totals["by_reason"], "the policy excludes pip"
    for reason, n in totals["by_reason"].items():
        assert re.search(rf"{re.escape(reason)}\s.*\b{n}\b", out), (reason, out)
    assert totals["upstream"] == totals["kept"] + totals["excluded"]
    assert runs[0]["counts"]["kept"] == totals["kept"]
    assert totals["would_add"] == totals["would_remove"] == 0, "the run did just that"
    assert run_id in run(cli, "mirror", "runs", mirror)
    assert "attempt 1 on" in run(cli, "mirror", "logs", run_id)

    out = run(cli, "policy", "explain", "python 3.99.99", "--channel", mirror, "--subdir", "noarch")
    assert "python-3.99.99-0.conda" in out and "kept" in out and "excluded" not in out
    args = ("policy", "explain", "python 3.99.99", "--channel", mirror, "--subdir", "noarch")
    explained = json.loads(run(cli, *args, "--json"))
    assert [e["kept"] for e in explained] == [True]
    assert explained[0]["in_channel"] is True
    out = run(cli, "policy", "explain", "pip", "--channel", mirror)
    assert "pip-99.99.99-py399_0.conda" in out and "excluded" in out, out
    assert policy in out and "exclude" in out and "pip" in out, out

    out = refused(cli, "mirror", "stop", run_id, code="mirror:run-finished")
    assert "ended" in out or "finished" in out


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--schedule", "every day"), "mirror:invalid"),
        (("--subdirs", "linux 64"), "mirror:invalid"),
        (("--source", "ftp://example.org/channel"), "mirror:invalid"),
        (("--source", "https://user:secret@example.org/channel"), "mirror:credentials-in-url"),
        (("--proxy", "not a proxy"), "mirror:invalid"),
        (("--mode", "eager"), "request:invalid"),
    ],
)
def test_bad_mirror_input_is_an_error_line(
    cli: CliRunner, args: tuple[str, ...], code: str
) -> None:
    name = _unique("cmbad")
    options = {"--source": TEST_RECIPES.as_uri(), **dict(zip(args[::2], args[1::2], strict=True))}
    flat = [part for pair in options.items() for part in pair]
    out = refused(cli, "mirror", "create", name, *flat, code=code)
    assert "secret" not in out
    refused(cli, "mirror", "show", name, code="mirror:not-found")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--licenses-not", "gpl3,nosuchfamily"), "licenses"),
        (("--exclude-spec", "numpy >=>1"), "exclude_specs"),
        (("--except", "=="), "exceptions"),
        (("--date-from", "2025-01-01", "--date-to", "2024-01-01"), "date"),
    ],
)
def test_bad_policy_input_is_an_error_line(
    cli: CliRunner, args: tuple[str, ...], field: str
) -> None:
    name = _unique("cpbad")
    out = refused(cli, "policy", "create", name, *args)
    assert field in out, out
    refused(cli, "policy", "show", name)


def test_unknown_names_are_error_lines(cli: CliRunner) -> None:
    missing = _unique("nothere")
    refused(cli, "mirror", "show", missing, code="mirror:not-found")
    refused(cli, "mirror", "run", missing, code="mirror:not-found")
    refused(cli, "mirror", "runs", missing, code="mirror:not-found")
    refused(cli, "mirror", "update", missing, "--schedule", "")
    refused(cli, "mirror", "logs", "987654321", code="mirror:run-not-found")
    refused(cli, "mirror", "stop", "987654321", code="mirror:run-not-found")
    refused(cli, "policy", "show", missing)
    refused(cli, "policy", "assign", missing, "--channel", missing)
    refused(cli, "policy", "dry-run", missing, "--channel", missing)
    refused(cli, "policy", "explain", "python", "--channel", missing)
    policy = _unique("cpok")
    run(cli, "policy", "create", policy, "--exclude-spec", "python")
    refused(cli, "policy", "assign", policy, "--mirror", missing)
    refused(cli, "policy", "unassign", policy, "--channel", missing)
