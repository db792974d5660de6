"""Malware scanning end to end through a live server: hostile uploads are quarantined and never
served, by any path, to anyone; a security admin sees, releases, fetches or deletes them; rule
changes rescan; py-rattler never sees a quarantined package."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.conda_client import solve_specs
from tests.support.eventually import eventually
from tests.support.hostile import HOSTILE, HostileCase
from tests.support.hostile_yara import HOSTILE_YARA
from tests.support.server import LiveServer

PASSWORD = "a-long-password-for-tests"

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("quarantine")]

MALICIOUS = [
    c
    for c in [*HOSTILE, *HOSTILE_YARA]
    if c.verdict == "malicious"
    and not c.known_names
    and c.scanner != "clamd"
    and c.scanner != "hashes"
]


def _first(scanner: str) -> HostileCase:
    return next(c for c in MALICIOUS if c.scanner == scanner)


def _held(live: LiveServer, channel: str) -> list[dict[str, Any]]:
    response = live.admin.get("/api/v1/quarantine", params={"channel": channel})
    assert response.status_code == 200, response.text
    return list(response.json())


def _wait_held(live: LiveServer, channel: str, count: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = _held(live, channel)
        if len(held) >= count:
            return held
        time.sleep(0.1)
    raise AssertionError(f"{channel}: {count} held artifacts expected, got {_held(live, channel)}")


def _repodata(live: LiveServer, channel: str, subdir: str) -> dict[str, Any]:
    response = live.admin.get(f"/conda/{channel}/{subdir}/repodata.json")
    if response.status_code == 404:
        return {"packages": {}, "packages.conda": {}}
    assert response.status_code == 200, response.text
    return dict(orjson.loads(response.content))


def _assert_listed(live: LiveServer, channel: str, subdir: str, filename: str) -> None:
    assert filename in _names(_repodata(live, channel, subdir))


def _names(repodata: dict[str, Any]) -> set[str]:
    return set(repodata.get("packages", {})) | set(repodata.get("packages.conda", {}))


@pytest.mark.parametrize("scanner", sorted({c.scanner for c in MALICIOUS}))
def test_a_hostile_upload_is_quarantined_with_its_rule_and_never_served(
    live_server: LiveServer, tmp_path: Path, testdata: Path, scanner: str
) -> None:
    case = _first(scanner)
    channel = live_server.new_channel(prefix=f"q-{scanner}")
    hostile = case.build(tmp_path)
    clean = testdata / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
    assert live_server.upload(channel, hostile, clean).status_code == 201
    live_server.wait_published(channel)
    (held,) = _wait_held(live_server, channel, 1)
    assert held["filename"] == hostile.name
    assert held["status"] == "malicious" and held["servable"] is False
    rules = {f["rule"] for f in held["scan"]["findings"]}
    assert case.rule in rules, held["scan"]
    assert any(f["member"] for f in held["scan"]["findings"] if f["rule"] == case.rule) or (
        case.rule.startswith("names:")
    )
    subdir = held["subdir"]
    assert hostile.name not in _names(_repodata(live_server, channel, subdir))
    # the clean file's verdict may come in a later scan batch than the hostile one's, and its
    # publication after it (a hang guard, not a speed check)
    eventually(
        lambda: _assert_listed(live_server, channel, "noarch", "dependency-1.0-0.conda"),
        within=60,
    )
    shown_clean = live_server.client().get(
        f"/api/v1/channels/{channel}/files/noarch/dependency-1.0-0.conda"
    )
    assert shown_clean.status_code == 200, shown_clean.text
    scan = shown_clean.json()["scan"]
    assert scan["verdict"] == "clean" and scan["findings"] == [] and scan["current"]
    assert {"link-script", "python", "names", "yara", "hashes"} <= set(scan["versions"])
    # Every read path, for anonymous callers, owners and admins alike.
    anonymous = live_server.client()
    for client in (anonymous, live_server.admin):
        assert client.get(f"/conda/{channel}/{subdir}/{hostile.name}").status_code == 404
        shown = client.get(f"/api/v1/channels/{channel}/files/{subdir}/{hostile.name}")
        assert shown.status_code == 404, shown.text
        listed = client.get(f"/api/v1/channels/{channel}/files").json()
        assert hostile.name not in {f["filename"] for f in listed}
        found = client.get("/api/v1/search", params={"q": case.name.split("-")[0]})
        assert found.status_code in (200, 404)
        if found.status_code == 200:
            hits = found.json()
            assert all(h.get("channel") != channel for h in hits if isinstance(h, dict)) or all(
                hostile.name not in str(h) for h in hits
            )


def test_release_with_a_note_serves_it_and_the_release_survives_a_rescan(
    live_server: LiveServer, tmp_path: Path
) -> None:
    case = _first("link-script")
    channel = live_server.new_channel(prefix="q-release")
    hostile = case.build(tmp_path)
    assert live_server.upload(channel, hostile).status_code == 201
    (held,) = _wait_held(live_server, channel, 1)
    url = f"/api/v1/quarantine/{held['id']}/release"
    empty = live_server.admin.post(url, json={"note": "   "})
    assert empty.status_code == 422, empty.text
    assert empty.headers["content-type"].startswith("application/problem+json")
    released = live_server.admin.post(url, json={"note": "reviewed: test fixture"})
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    live_server.wait_published(channel)
    subdir = held["subdir"]
    assert hostile.name in _names(_repodata(live_server, channel, subdir))
    got = live_server.client().get(f"/conda/{channel}/{subdir}/{hostile.name}")
    assert got.status_code == 200 and got.content == hostile.read_bytes()
    queued = live_server.admin.post("/api/v1/scans", json={"artifact_id": held["id"]})
    assert queued.status_code == 202 and queued.json()["queued"] == 1
    _wait_no_queue(live_server)
    shown = live_server.admin.get(f"/api/v1/quarantine/{held['id']}").json()
    assert shown["status"] == "released" and shown["scan"]["release_note"]
    audit = live_server.admin.get("/api/v1/audit", params={"limit": 200}).json()
    types = {e["event_type"] for e in (audit["events"] if isinstance(audit, dict) else audit)}
    assert {"artifact.quarantine", "artifact.release"} <= types


def _wait_no_queue(live: LiveServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = live.admin.get("/api/v1/scans/status").json()
        if status["queued"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the scan queue did not drain")


def test_a_held_file_is_fetched_only_through_the_quarantine_api_then_deleted(
    live_server: LiveServer, tmp_path: Path
) -> None:
    case = _first("link-script")
    channel = live_server.new_channel(prefix="q-delete")
    hostile = case.build(tmp_path)
    assert live_server.upload(channel, hostile).status_code == 201
    (held,) = _wait_held(live_server, channel, 1)
    fetched = live_server.admin.get(f"/api/v1/quarantine/{held['id']}/file")
    assert fetched.status_code == 200 and fetched.content == hostile.read_bytes()
    user = live_server.client()
    assert user.get(f"/api/v1/quarantine/{held['id']}/file").status_code == 401
    assert user.get("/api/v1/quarantine").status_code == 401
    deleted = live_server.admin.delete(f"/api/v1/quarantine/{held['id']}", params={"note": "bad"})
    assert deleted.status_code == 204, deleted.text
    assert _held(live_server, channel) == []
    again = live_server.admin.delete(f"/api/v1/quarantine/{held['id']}")
    assert again.status_code == 404
    assert again.json()["code"] == "quarantine:not-found"


def test_an_admins_rule_rescans_and_quarantines_what_was_clean(
    live_server: LiveServer, testdata: Path, tmp_path: Path
) -> None:
    channel = live_server.new_channel(prefix="q-rules")
    target = testdata / "channels" / "test-recipes" / "noarch" / "dependency-2.0-0.conda"
    assert live_server.upload(channel, target).status_code == 201
    live_server.wait_published(channel)
    assert target.name in _names(_repodata(live_server, channel, "noarch"))
    bad = live_server.admin.post(
        "/api/v1/scan-rules", json={"name": "broken", "source": "rule x { condition: }"}
    )
    assert bad.status_code == 422 and bad.json()["code"] == "scan-rule:invalid", bad.text
    # A rule that matches the package's own index.json (its name), for this test only.
    source = (
        'rule org_test_dependency { meta: verdict = "malicious" description = "test" '
        'strings: $n = "\\"name\\": \\"dependency\\"" condition: $n }'
    )
    added = live_server.admin.post(
        "/api/v1/scan-rules", json={"name": f"org-{channel}", "source": source}
    )
    assert added.status_code == 201, added.text
    try:
        (held,) = _wait_held(live_server, channel, 1, timeout=120)
        assert "yara:org_test_dependency" in {f["rule"] for f in held["scan"]["findings"]}
        live_server.wait_published(channel)
        assert target.name not in _names(_repodata(live_server, channel, "noarch"))
        solve_url = f"{live_server.url}/conda/{channel}"
        with pytest.raises(Exception, match=r"(?i)cannot|no candidates|not found|unsat|nothing"):
            solve_specs(solve_url, ["dependency 2.*"], tmp_path / "cache", sharded=False)
    finally:
        removed = live_server.admin.delete(f"/api/v1/scan-rules/org-{channel}")
        assert removed.status_code == 204


def test_quarantine_input_errors_are_problems(live_server: LiveServer) -> None:
    admin = live_server.admin
    cases: list[tuple[httpx.Response, int]] = [
        (admin.get("/api/v1/quarantine", params={"status": "nope"}), 422),
        (admin.get("/api/v1/quarantine/0"), 422),
        (admin.post("/api/v1/quarantine/999999/release", json={"note": "x"}), 404),
        (admin.post("/api/v1/scans", json={}), 422),
        (admin.post("/api/v1/scans", json={"channel": "nope-nope"}), 404),
        (admin.delete("/api/v1/scan-rules/nope"), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


def test_serve_first_channels_serve_at_once_and_still_quarantine(
    live_server: LiveServer, tmp_path: Path
) -> None:
    case = _first("link-script")
    channel = live_server.new_channel(prefix="q-ci")
    bad = live_server.admin.patch(f"/api/v1/channels/{channel}", json={"scan_uploads": "always"})
    assert bad.status_code == 422, bad.text
    changed = live_server.admin.patch(
        f"/api/v1/channels/{channel}", json={"scan_uploads": "serve-first"}
    )
    assert changed.status_code == 200 and changed.json()["scan_uploads"] == "serve-first"
    hostile = case.build(tmp_path)
    uploaded = live_server.upload(channel, hostile)
    assert uploaded.status_code == 201, uploaded.text
    (held,) = _wait_held(live_server, channel, 1)
    assert held["status"] == "malicious" and held["servable"] is False
    live_server.wait_published(channel)
    assert hostile.name not in _names(_repodata(live_server, channel, held["subdir"]))
    got = live_server.client().get(f"/conda/{channel}/{held['subdir']}/{hostile.name}")
    assert got.status_code == 404


def test_loosening_scan_settings_needs_security_manage(live_server: LiveServer) -> None:
    name = f"u-{uuid.uuid4().hex[:8]}"
    made = live_server.admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert made.status_code == 201, made.text
    token = live_server.client().post(
        "/api/v1/tokens", json={"name": "t", "expires_in_days": 5}, auth=(name, PASSWORD)
    )
    owner = live_server.client(token.json()["token"])
    channel = f"own-{uuid.uuid4().hex[:8]}"
    assert owner.post("/api/v1/channels", json={"name": channel}).status_code == 201
    refused = owner.patch(f"/api/v1/channels/{channel}", json={"scan_errors": "serve"})
    assert refused.status_code == 403, refused.text
    assert owner.get(f"/api/v1/channels/{channel}").json()["scan_errors"] == "hold"
    assert owner.get("/api/v1/quarantine").status_code == 403
    same = owner.patch(f"/api/v1/channels/{channel}", json={"scan_errors": "hold"})
    assert same.status_code == 200, same.text  # no change: no security permission needed
