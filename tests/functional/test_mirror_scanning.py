"""Mirrored files are scanned before anyone gets them: active mirrors scan after download and
publish only clean files; passive mirrors list records, then hold the first download until its
verdict (the hostile file is never served and leaves the index); a quarantined mirrored file stays
in the queue across runs instead of coming back."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from stockade.conda.archive import inspect_package
from stockade.conda.package import ValidationLimits
from tests.conftest import TESTDATA
from tests.support.hostile import HOSTILE, HostileCase
from tests.support.mirror_api import make_mirror, published, run_mirror
from tests.support.mirror_data import empty_repodata, write_repodata
from tests.support.server import LiveServer
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("mirror-scanning")]

CLEAN = TESTDATA / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"


def _case() -> HostileCase:
    return next(
        c
        for c in HOSTILE
        if c.scanner == "link-script" and c.verdict == "malicious" and not c.known_names
    )


def _upstream(root: Path, tmp_path: Path) -> tuple[str, str]:
    """A channel folder with one clean real package and one hostile one; (hostile, subdir)."""
    (tmp_path / "build").mkdir(exist_ok=True)
    hostile = _case().build(tmp_path / "build")
    files = [CLEAN, hostile]
    subdirs: dict[str, dict[str, Any]] = {}
    hostile_subdir = ""
    for path in files:
        info = inspect_package(path, path.name, limits=ValidationLimits(), now_ms=2**62)
        data = path.read_bytes()
        record = {
            **{k: v for k, v in info.index.items() if v is not None},
            "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            "size": len(data),
        }
        repodata = subdirs.setdefault(info.subdir, empty_repodata(info.subdir))
        key = "packages.conda" if path.name.endswith(".conda") else "packages"
        repodata[key][path.name] = record
        (root / info.subdir).mkdir(parents=True, exist_ok=True)
        (root / info.subdir / path.name).write_bytes(data)
        if path == hostile:
            hostile_subdir = info.subdir
    for subdir in ("noarch", "linux-64"):
        write_repodata(root / subdir, subdirs.get(subdir, empty_repodata(subdir)))
    return hostile.name, hostile_subdir


def _held(live: LiveServer, channel: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = live.admin.get("/api/v1/quarantine", params={"channel": channel}).json()
        if held:
            return list(held)
        time.sleep(0.1)
    raise AssertionError(f"nothing quarantined in {channel}")


def test_an_active_mirror_publishes_only_what_its_scan_passed(
    live_server: LiveServer, tmp_path: Path
) -> None:
    root = tmp_path / "up"
    hostile, subdir = _upstream(root, tmp_path)
    with Upstream(root) as up:
        mirror = make_mirror(live_server, source=up.url, mode="active")
        channel = mirror["channel"]
        run_mirror(live_server, mirror["name"], channel=channel)
        (held,) = _held(live_server, channel)
        assert held["filename"] == hostile and held["source"] == "mirror"
        assert _case().rule in {f["rule"] for f in held["scan"]["findings"]}
        live_server.wait_published(channel)
        assert CLEAN.name in published(live_server, channel, "noarch")
        assert hostile not in published(live_server, channel, subdir)
        # The next run neither removes the quarantined file nor brings it back to scan again.
        second = run_mirror(live_server, mirror["name"], channel=channel)
        assert second["state"] == "completed"
        again = live_server.admin.get("/api/v1/quarantine", params={"channel": channel}).json()
        assert [h["id"] for h in again] == [held["id"]]
        assert hostile not in published(live_server, channel, subdir)


def test_a_passive_mirror_scans_the_first_download_before_serving_it(
    live_server: LiveServer, tmp_path: Path
) -> None:
    root = tmp_path / "up"
    hostile, subdir = _upstream(root, tmp_path)
    with Upstream(root) as up:
        mirror = make_mirror(live_server, source=up.url, mode="passive")
        channel = mirror["channel"]
        run_mirror(live_server, mirror["name"], channel=channel)
        assert hostile in published(live_server, channel, subdir)  # listed, not fetched yet
        anonymous = live_server.client()
        got = anonymous.get(f"/conda/{channel}/noarch/{CLEAN.name}")
        assert got.status_code == 200, got.text
        assert got.content == CLEAN.read_bytes()
        refused = anonymous.get(f"/conda/{channel}/{subdir}/{hostile}")
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        (held,) = _held(live_server, channel)
        assert held["filename"] == hostile and held["status"] == "malicious"
        live_server.wait_published(channel)
        assert hostile not in published(live_server, channel, subdir)
        assert anonymous.get(f"/conda/{channel}/{subdir}/{hostile}").status_code == 404
