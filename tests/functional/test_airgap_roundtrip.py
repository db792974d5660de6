"""Issue 15: a package bundle exported from one live Stockade and applied by another's air-gap
mirror (SPEC §9): same records, same files; py-rattler installs from the air-gapped one; an
incremental bundle with an added, a removed and a patched record; a bundle applied twice changes
nothing; an incremental bundle whose parent was never imported is refused, naming it; with the
cve.zip carried along, the same vulnerability matches and curation statuses on both sides.

The connected side (``up``) signs with its pkg_mgr key; the air-gapped side (``down``) trusts that
key (``[airgap] trusted_keys``). Bundles are written by the CLI (``stockade airgap export``)
straight into ``down``'s air-gap folder.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stockade.signing.keys import public_hex
from tests.conftest import TESTDATA
from tests.support.cli import admin_cli, run
from tests.support.conda_client import install_records, solve_specs
from tests.support.cves import osv_folder, sync_osv_folder, upload
from tests.support.mirror_api import make_mirror, run_logs, run_mirror, unique
from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.signing import Trust, post_metadata, put_key

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("airgap-roundtrip")]

PACKAGES = TESTDATA / "packages"
FIRST = [
    "clobber-1-0.1.0-h4616a5c_0.tar.bz2",
    "clobber-2-0.1.0-h4616a5c_0.tar.bz2",
    "clobber-fd-1-0.1.0-h4616a5c_0.conda",
]
ADDED = "clobber-1-0.2.0-h4616a5c_0.tar.bz2"
REMOVED = "clobber-2-0.1.0-h4616a5c_0.tar.bz2"
PATCHED = "clobber-fd-1-0.1.0-h4616a5c_0.conda"
SUBDIR = "noarch"
ADVISORY = "PYSEC-2021-76"  # aiohttp: introduced 0, fixed 3.7.4


@pytest.fixture(scope="module")
def trust() -> Trust:
    return Trust.new()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, trust: Trust) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("airgap-up")
    put_key(data_dir / "keys", trust.pkg_mgr)
    with fresh_database("sqlite", data_dir, None) as db_url, run_server(data_dir, db_url) as live:
        response = post_metadata(live.admin, trust.roots, trust.key_mgr_env)
        assert response.status_code == 200, response.text
        yield live


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory, trust: Trust) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("airgap-down")
    airgap = {"trusted_keys": [public_hex(trust.pkg_mgr)], "settle_s": 0}
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        run_server(data_dir, db_url, airgap=airgap, mirror={"heartbeat_s": 0.2}) as live,
    ):
        yield live


def folder(live: LiveServer) -> Path:
    path = live.settings.airgap.folder_in(live.settings.data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def records(live: LiveServer, channel: str) -> dict[str, dict[str, Any]]:
    response = live.admin.get(f"/conda/{channel}/{SUBDIR}/repodata.json")
    assert response.status_code == 200, response.text
    doc = response.json()
    return {**doc.get("packages", {}), **doc.get("packages.conda", {})}


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what each server adds of its own (when it indexed it)."""
    return {k: v for k, v in record.items() if k not in ("indexed_timestamp",)}


def export(
    up: LiveServer, mp: pytest.MonkeyPatch, tmp: Path, out: Path, channel: str, *more: str
) -> Path:
    cli = admin_cli(up, mp, tmp, columns=200)
    before = set(out.glob("*.zip"))
    output = run(cli, "airgap", "export", "--channel", channel, "--out", str(out), *more)
    assert "wrote" in output, output
    (made,) = set(out.glob("*.zip")) - before
    return made


def test_round_trip_full_then_incremental(
    up: LiveServer,
    down: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    channel = up.new_channel(prefix="cf")
    response = up.upload(channel, *(PACKAGES / name for name in FIRST))
    assert response.status_code == 201, response.text
    up.wait_published(channel)
    drop = folder(down)
    bundle = export(up, monkeypatch, tmp_path, drop, channel, "--subdirs", SUBDIR)
    assert bundle.name.startswith(f"conda_{channel}_airgap_")

    mirror = make_mirror(
        down, source=f"airgap:{channel}", mode="active", subdirs=[SUBDIR], channel=channel
    )
    run_mirror(down, mirror["name"], channel=channel)
    assert set(records(down, channel)) == set(FIRST)
    assert {k: comparable(v) for k, v in records(down, channel).items()} == {
        k: comparable(v) for k, v in records(up, channel).items()
    }
    for name in FIRST:  # the same bytes
        got = down.admin.get(f"/conda/{channel}/{SUBDIR}/{name}")
        assert got.status_code == 200
        assert got.content == (PACKAGES / name).read_bytes()
    applied = drop / "applied"
    assert (applied / bundle.name).is_file()
    result = json.loads((applied / f"{bundle.name}.result.json").read_text())
    assert result["state"] == "applied"
    assert not list(drop.glob("*.zip"))

    # py-rattler solves and installs from the air-gapped server
    solved = solve_specs(
        f"{down.url}/conda/{channel}", ["clobber-fd-1"], tmp_path / "rattler", platforms=[SUBDIR]
    )
    assert [r.name.normalized for r in solved] == ["clobber-fd-1"]
    install_records(solved, tmp_path / "env", tmp_path / "cache")

    # incremental: one added, one removed, one patched
    assert up.upload(channel, PACKAGES / ADDED).status_code == 201
    gone = up.admin.delete(f"/api/v1/channels/{channel}/files/{SUBDIR}/{REMOVED}")
    assert gone.status_code == 204, gone.text
    patch = up.admin.put(
        f"/api/v1/channels/{channel}/patches/{SUBDIR}/{PATCHED}",
        json={"changes": {"depends": ["patched-dep"]}},
    )
    assert patch.status_code == 200, patch.text
    up.wait_published(channel)
    second = export(up, monkeypatch, tmp_path, drop, channel, "--since", "LAST")
    with zipfile.ZipFile(second) as archive:
        carried = {n for n in archive.namelist() if n.startswith("pkgs/")}
    assert carried == {f"pkgs/{SUBDIR}/{ADDED}"}  # only the new file travels

    run_mirror(down, mirror["name"], channel=channel)
    now = records(down, channel)
    assert set(now) == set(FIRST) - {REMOVED} | {ADDED}
    assert now[PATCHED]["depends"] == ["patched-dep"]

    # the same bundle dropped again: nothing happens twice
    shutil.copy(applied / bundle.name, drop / bundle.name)
    outcome = run_mirror(down, mirror["name"], channel=channel)
    assert set(records(down, channel)) == set(now)
    logs = " ".join(line["message"] for line in run_logs(down, outcome["id"]))
    assert "applied before" in logs


def test_incremental_without_its_parent_is_refused(
    up: LiveServer, down: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    channel = up.new_channel(prefix="np")
    assert up.upload(channel, PACKAGES / FIRST[0]).status_code == 201
    up.wait_published(channel)
    elsewhere = tmp_path / "usb"
    elsewhere.mkdir()
    full = export(up, monkeypatch, tmp_path, elsewhere, channel)
    assert up.upload(channel, PACKAGES / ADDED).status_code == 201
    up.wait_published(channel)
    drop = folder(down)
    incremental = export(up, monkeypatch, tmp_path, drop, channel, "--since", "LAST")
    mirror = make_mirror(
        down, source=f"airgap:{channel}", mode="active", subdirs=[SUBDIR], channel=unique("np")
    )
    outcome = run_mirror(down, mirror["name"], expect="failed")  # refused: the run says so
    assert outcome["summary"] == "0 bundles applied (none), 1 refused"
    refused = drop / "refused" / incremental.name
    assert refused.is_file()
    result = json.loads(refused.with_name(refused.name + ".result.json").read_text())
    parent = full.name.removesuffix(".zip").rsplit("_", 1)[-1]
    assert result["code"] == "airgap:missing-parent"
    assert parent in result["reason"]
    status = down.admin.get("/api/v1/airgap").json()
    assert any(h["code"] == "airgap:missing-parent" for h in status["history"])


def test_airgap_mirror_is_active_by_default_and_never_passive(
    down: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cli = admin_cli(down, monkeypatch, tmp_path, columns=200)
    name = unique("ag")
    output = run(cli, "mirror", "create", name, "--source", f"airgap:{name}", "--subdirs", SUBDIR)
    assert "active" in output
    refused = run(
        cli,
        "mirror",
        "create",
        unique("ag"),
        "--source",
        "airgap:x",
        "--mode",
        "passive",
        code=1,
    )
    assert "air-gap mirror" in refused and "active" in refused
    bad = run(cli, "mirror", "create", unique("ag"), "--source", "airgap:../x", code=1)
    assert "airgap:NAME" in bad


def _matches(live: LiveServer, channel: str) -> dict[str, set[str]]:
    """version -> the advisories matched to it in ``channel``."""
    response = live.admin.get(
        "/api/v1/cves", params={"channel": channel, "package": "aiohttp", "limit": 500}
    )
    assert response.status_code == 200, response.text
    found: dict[str, set[str]] = {}
    for row in response.json():
        for package in row["packages"]:
            found.setdefault(package["version"], set()).add(row["id"])
    return found


def _statuses(live: LiveServer, channel: str) -> set[tuple[str, str, str, str]]:
    shown = live.admin.get(f"/api/v1/cves/{ADVISORY}").json()["artifacts"]
    return {
        (a["version"], a["build"], a["status"], a["status_origin"])
        for a in shown
        if a["channel"] == channel
    }


def test_vulnerability_matches_and_curations_cross_with_the_bundles(
    up: LiveServer, down: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    channel = up.new_channel(prefix="vx")
    upload(up, channel, tmp_path, "aiohttp", "3.7.3", "0")
    upload(up, channel, tmp_path, "aiohttp", "3.7.4", "0")
    sync_osv_folder(up, osv_folder(tmp_path, "aiohttp"))
    body = {"package": "aiohttp", "version": "3.7.3", "status": "cleared", "note": "not used"}
    assert up.admin.post(f"/api/v1/cves/{ADVISORY}/curations", json=body).status_code == 201
    up.wait_published(channel)
    # the connected side: a package bundle and a cve.zip, both carried across
    made = export(up, monkeypatch, tmp_path, folder(down), channel)
    made.rename(made.with_name("conda_main_airgap.zip"))  # PSM's name: taken as it is
    cve_zip = tmp_path / "cve.zip"
    run(admin_cli(up, monkeypatch, tmp_path / "u", columns=200), "cve", "export", str(cve_zip))
    run(admin_cli(down, monkeypatch, tmp_path / "d", columns=200), "cve", "import", str(cve_zip))
    mirror = make_mirror(down, source=f"airgap:{channel}", mode="active", subdirs=[SUBDIR])
    run_mirror(down, mirror["name"], channel=mirror["channel"])
    deadline = time.monotonic() + 180  # matching is queued work, on both sides
    while "3.7.3" not in _matches(up, channel):
        assert time.monotonic() < deadline, _matches(up, channel)
        time.sleep(0.2)
    while _matches(down, mirror["channel"]) != _matches(up, channel):
        assert time.monotonic() < deadline, (
            _matches(down, mirror["channel"]),
            _matches(up, channel),
        )
        time.sleep(0.2)
    assert ADVISORY in _matches(up, channel)["3.7.3"]
    expected = _statuses(up, channel)
    assert ("3.7.3", "0", "cleared", "curation") in expected
    assert _statuses(down, mirror["channel"]) == expected
    assert (folder(down) / "applied" / "conda_main_airgap.zip").is_file()
