"""`stockade quarantine …` and `stockade scan …` against a live server, as a security admin runs them.

A hostile package of the corpus (tests/support/hostile.py: a post-link script that pipes a
download to a shell) is uploaded and held; the CLI lists it, shows its findings, fetches the file,
releases it with a note, rescans it (with live progress) and, for a second copy, deletes it. Rule
sets are added from a file, listed and removed. Every mistake ends with ``error: …``, exit code 1
and no traceback.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from stockade.cli.main import app
from tests.support.cli import admin_cli, run
from tests.support.hostile import HOSTILE, HostileCase
from tests.support.server import LiveServer

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("quarantine")]

PROBLEM = re.compile(r"\[HTTP 4\d\d, [a-z0-9_-]+(:[a-z0-9_-]+)*\]")
CASE: HostileCase = next(
    c for c in HOSTILE if c.rule == "link-script:fetch-pipe-shell" and c.verdict == "malicious"
)
PASSWORD = "a-long-password-1"


@pytest.fixture
def cli(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    return admin_cli(live_server, monkeypatch, tmp_path, columns=250)  # one line per table row


def refused(cli: CliRunner, *args: str, code: str | None = None, input: str = "") -> str:
    """A mistake the server refuses: one ``error:`` line naming the status and the rule, exit 1."""
    result = cli.invoke(app, list(args), input=input, catch_exceptions=False)
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert "Traceback" not in text and text.startswith("error:"), text
    found = PROBLEM.search(text)
    assert found, f"no [HTTP 4xx, code] in {text!r}"
    if code is not None:
        assert f", {code}]" in found.group(0), text
    return text


def local_error(cli: CliRunner, *args: str) -> str:
    """A mistake the CLI catches before asking the server: ``error: …``, exit 1."""
    text = " ".join(run(cli, *args, code=1).split())
    assert text.startswith("error:"), text
    return text


def hold(live: LiveServer, tmp_path: Path) -> tuple[str, Path, dict[str, Any]]:
    """A new channel holding the hostile package: (channel, the file, the API's held item)."""
    channel = live.new_channel(prefix="cq")
    folder = tmp_path / uuid.uuid4().hex[:8]
    folder.mkdir()
    hostile = CASE.build(folder)
    assert live.upload(channel, hostile).status_code == 201
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = live.admin.get("/api/v1/quarantine", params={"channel": channel}).json()
        if held:
            return channel, hostile, held[0]
        time.sleep(0.1)
    raise AssertionError(f"{hostile.name} was not held in {channel}")


def test_list_show_fetch_release_and_rescan_a_held_package(
    cli: CliRunner, live_server: LiveServer, tmp_path: Path
) -> None:
    channel, hostile, held = hold(live_server, tmp_path)
    item = str(held["id"])

    out = " ".join(run(cli, "quarantine", "list", "--channel", channel).split())
    assert "malicious" in out  # the table (its width is the terminal's: names may wrap)
    listed = json.loads(run(cli, "quarantine", "list", "--channel", channel, "--json"))
    assert [i["id"] for i in listed] == [held["id"]]
    only = json.loads(run(cli, "quarantine", "list", "--status", "suspicious", "--json"))
    assert held["id"] not in {i["id"] for i in only}

    out = run(cli, "quarantine", "show", item)
    assert "findings" in out and "malicious" in out, out  # cells wrap at the terminal's width
    shown = json.loads(run(cli, "quarantine", "show", item, "--json"))
    assert shown["status"] == "malicious" and shown["scan"]["findings"]

    target = tmp_path / "sample.bin"
    assert "bytes" in run(cli, "quarantine", "fetch", item, "-o", str(target))
    assert target.read_bytes() == hostile.read_bytes()
    assert "exists" in local_error(cli, "quarantine", "fetch", item, "-o", str(target))
    run(cli, "quarantine", "fetch", item, "-o", str(target), "--force")

    out = run(cli, "quarantine", "release", item, "--note", "reviewed: a test fixture")
    assert "released" in out and hostile.name in out
    assert json.loads(run(cli, "quarantine", "list", "--channel", channel, "--json")) == []
    refused(cli, "quarantine", "release", item, "--note", "again", code="quarantine:not-held")

    out = run(cli, "scan", "--artifact", item)
    assert "1 scan(s) queued" in out and "done:" in out
    again = json.loads(run(cli, "quarantine", "show", item, "--json"))
    assert again["status"] == "released"
    assert again["scan"]["release_note"] == "reviewed: a test fixture"
    assert "queued" in run(cli, "scan", "--channel", channel, "--no-wait")


def test_delete_asks_first_then_removes_the_held_file(
    cli: CliRunner, live_server: LiveServer, tmp_path: Path
) -> None:
    channel, hostile, held = hold(live_server, tmp_path)
    item = str(held["id"])
    kept = cli.invoke(app, ["quarantine", "delete", item], input="n\n")
    assert kept.exit_code == 1 and "Aborted" in kept.output and "Traceback" not in kept.output
    assert len(json.loads(run(cli, "quarantine", "list", "--channel", channel, "--json"))) == 1

    out = run(cli, "quarantine", "delete", item, "--note", "known dropper", "--yes")
    assert f"artifact {item} deleted" in out
    assert json.loads(run(cli, "quarantine", "list", "--channel", channel, "--json")) == []
    refused(cli, "quarantine", "delete", item, "--yes", code="quarantine:not-found")
    refused(cli, "quarantine", "show", item, code="quarantine:not-found")
    refused(
        cli, "quarantine", "fetch", item, "-o", str(tmp_path / "x"), code="quarantine:not-found"
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / ".x.part").exists()
    audit = live_server.admin.get("/api/v1/audit", params={"limit": 200}).json()
    events = audit["events"] if isinstance(audit, dict) else audit
    assert any(
        e["event_type"] == "artifact.quarantine-delete" and hostile.name in json.dumps(e)
        for e in events
    )


def test_scan_status_and_rule_sets(cli: CliRunner, tmp_path: Path) -> None:
    out = run(cli, "scan", "status")
    assert "queued" in out and "held" in out and "yara" in out
    status = json.loads(run(cli, "scan", "status", "--json"))
    assert {"queued", "running", "held", "total", "scanners", "fingerprint"} <= set(status)

    name = f"org-{uuid.uuid4().hex[:8]}"
    rules = tmp_path / "org.yar"
    rules.write_text(
        'rule org_never_matches { meta: verdict = "suspicious" '
        'strings: $s = "org-never-matches-3f9c1d2e" condition: $s }\n'
    )
    assert "added (1 rule(s))" in run(cli, "scan", "rules", "add", name, str(rules))
    try:
        assert name in run(cli, "scan", "rules", "list")
        listed = json.loads(run(cli, "scan", "rules", "list", "--json"))
        assert any(r["name"] == name and r["rules"] == 1 for r in listed)
        refused(cli, "scan", "rules", "add", name, str(rules), code="scan-rule:exists")
    finally:
        assert "removed" in run(cli, "scan", "rules", "remove", name, "--yes")
    refused(cli, "scan", "rules", "remove", name, "--yes", code="scan-rule:not-found")

    broken = tmp_path / "broken.yar"
    broken.write_text("rule x { condition: }\n")
    refused(cli, "scan", "rules", "add", "broken", str(broken), code="scan-rule:invalid")
    assert "cannot read" in local_error(cli, "scan", "rules", "add", "x", str(tmp_path / "nope"))
    (tmp_path / "empty.yar").write_text("  \n")
    assert "empty" in local_error(cli, "scan", "rules", "add", "x", str(tmp_path / "empty.yar"))


def test_mistakes_exit_non_zero_with_a_message(cli: CliRunner) -> None:
    refused(cli, "quarantine", "show", "999999999", code="quarantine:not-found")
    refused(cli, "quarantine", "release", "999999999", "--note", "x", code="quarantine:not-found")
    refused(cli, "scan", "--channel", "no-such-channel-x", code="scan:target-not-found")
    refused(cli, "scan", "--artifact", "999999999", code="scan:target-not-found")
    assert "one of" in local_error(cli, "quarantine", "list", "--status", "bogus")
    assert "say why" in local_error(cli, "quarantine", "release", "1", "--note", "  ")
    assert "exactly one" in local_error(cli, "scan", "--all", "--channel", "x")
    assert "exactly one" in local_error(cli, "scan", "--no-wait")
    assert "without `status`" in local_error(cli, "scan", "--all", "status")
    bad = cli.invoke(app, ["quarantine", "show", "abc"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_a_user_without_security_permissions_is_refused(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    username = f"cq-{uuid.uuid4().hex[:8]}"
    created = live_server.admin.post(
        "/api/v1/users", json={"username": username, "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    token = httpx.post(
        f"{live_server.url}/api/v1/tokens",
        json={"name": "t", "expires_in_days": 2},
        auth=(username, PASSWORD),
    ).json()["token"]
    cli = admin_cli(live_server, monkeypatch, tmp_path, columns=250)
    monkeypatch.setenv("STOCKADE_TOKEN", token)
    for args in (
        ("quarantine", "list"),
        ("scan", "status"),
        ("scan", "rules", "list"),
        ("scan", "--all", "--no-wait"),
    ):
        refused(cli, *args)
