"""Vulnerability data driven over the REST API and the CLI of a live server (functional tests).

folder = osv_folder(tmp, "aiohttp")            # a copy of real OSV PyPI advisories
feed = sync_osv_folder(live, folder)           # a feed of it, synced: the feed as it ended
path = upload(live, channel, tmp, "aiohttp", "3.7.3", "0")
cli = cli_for(monkeypatch, tmp_path, live)     # the CLI, signed in to ``live`` as the admin
out = run_cli(cli, "cve", "list", "--json")    # its output; the exit code checked
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from stockade.channels.models import MatchRequest
from stockade.cli.main import app
from tests.conftest import TESTDATA
from tests.factories.packages import PackageSpec, build_conda
from tests.support.server import LiveServer

VULNS = TESTDATA / "vulns"
OSV_PYPI = VULNS / "osv-pypi"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------ feeds


def osv_folder(tmp: Path, *packages: str) -> Path:
    """``tmp/osv`` holding a copy of the OSV PyPI advisories of ``packages``."""
    folder = tmp / "osv"
    for package in packages:
        shutil.copytree(OSV_PYPI / package, folder / package)
    return folder


def wait_sync(client: httpx.Client, location: str, timeout: float = 120) -> dict[str, Any]:
    """The feed at ``location`` once its sync has ended (``last_status`` not ``queued``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feed: dict[str, Any] = client.get(location).json()
        if feed["last_status"] != "queued":
            return feed
        time.sleep(0.1)
    raise AssertionError(f"the sync at {location} did not end in {timeout}s")


def sync_feed(live: LiveServer, url: str, fmt: str, name: str | None = None) -> dict[str, Any]:
    """Add a feed of ``url`` (named ``name`` or a new name), sync it now and wait for the end:
    the feed as it ended, whatever its ``last_status``."""
    name = name or unique(fmt)
    r = live.admin.post("/api/v1/cve/feeds", json={"name": name, "url": url, "format": fmt})
    assert r.status_code == 201, r.text
    r = live.admin.post(f"/api/v1/cve/feeds/{name}/sync")
    assert r.status_code == 202, r.text
    assert r.json()["last_status"] == "queued"
    return wait_sync(live.admin, r.headers["location"])


def wait_matched(live: LiveServer, timeout: float = 60) -> None:
    """Until every uploaded artifact's vulnerability matching is done (no match request left:
    ``vulns/match_requests.py``). Matching is a job after the upload's answer; in the cluster
    configuration another replica's worker takes it from Redis a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        with live.container.read_factory() as session:
            left = session.scalar(select(func.count()).select_from(MatchRequest))
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} artifacts still wait for their matching"
        time.sleep(0.05)


def sync_osv_folder(live: LiveServer, folder: Path, name: str | None = None) -> dict[str, Any]:
    """An OSV feed of ``folder``, synced ``ok``: the feed (its ``name`` among the rest)."""
    synced = sync_feed(live, folder.as_uri(), "osv", name or unique("pypa"))
    assert synced["last_status"] == "ok", synced
    return synced


# ---------------------------------------------------------------------------- packages, roles


def upload_package(live: LiveServer, channel: str, tmp: Path, spec: PackageSpec) -> Path:
    """Build ``spec`` in a new folder below ``tmp`` and upload it to ``channel``: its path."""
    folder = tmp / unique("pkg")
    folder.mkdir()
    path = build_conda(folder, spec)
    response = live.upload(channel, path)
    assert response.status_code == 201, response.text
    return path


def upload(live: LiveServer, channel: str, tmp: Path, name: str, version: str, build: str) -> Path:
    return upload_package(live, channel, tmp, PackageSpec(name=name, version=version, build=build))


def grant_cves(live: LiveServer, user: str, level: str) -> None:
    """Give ``user`` a new role of ``cves: level``."""
    role = unique("cve-role")
    r = live.admin.post("/api/v1/roles", json={"name": role, "permissions": {"cves": level}})
    assert r.status_code == 201, r.text
    r = live.admin.post(f"/api/v1/roles/{role}/assignments", json={"user": user})
    assert r.status_code == 200, r.text


# -------------------------------------------------------------------------------------- CLI


def cli_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, live: LiveServer) -> CliRunner:
    """A CLI runner whose environment points at ``live`` with the admin's token."""
    monkeypatch.setenv("STOCKADE_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.setenv("STOCKADE_URL", live.url)
    monkeypatch.setenv("STOCKADE_TOKEN", live.admin_token)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def run_cli(cli: CliRunner, *args: str, code: int = 0, stdin: str | None = None) -> str:
    """The output of ``stockade *args``, which must exit with ``code`` and no traceback."""
    result = cli.invoke(app, list(args), input=stdin, catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output
