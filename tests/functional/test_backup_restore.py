"""Backup and restore end to end (docs/backup.md): a server with a published package is backed
up while it serves (``stockade backup``), wiped, restored into a new data folder and database
(``stockade restore``), and the restored server serves the same repodata and package bytes;
``stockade fsck`` finds it clean, then names a blob taken away. One test per backend."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stockade.cli.main import app
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database, run_server

PACKAGE = "test-package-0.1-0.tar.bz2"
SUBDIR = "linux-64"


def _cli(monkeypatch: pytest.MonkeyPatch, data_dir: Path, db_url: str, *args: str) -> str:
    monkeypatch.delenv("STOCKADE_CONFIG", raising=False)
    monkeypatch.setenv("STOCKADE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("STOCKADE_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return f"{result.exit_code}\n{result.stdout}"


def _served(url: str, channel: str) -> tuple[bytes, str]:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        repodata = http.get(f"/conda/{channel}/{SUBDIR}/repodata.json")
        package = http.get(f"/conda/{channel}/{SUBDIR}/{PACKAGE}")
    assert repodata.status_code == package.status_code == 200
    return repodata.content, hashlib.sha256(package.content).hexdigest()


def _once_served(url: str, channel: str) -> tuple[bytes, str]:
    """Wait for the upload's verdict and publication (held until clean, the default)."""
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        index = httpx.get(f"{url}/conda/{channel}/{SUBDIR}/repodata.json", timeout=30)
        if index.status_code == 200 and PACKAGE in index.json().get("packages", {}):
            return _served(url, channel)
        time.sleep(0.1)
    raise AssertionError(f"{PACKAGE} was not served within 60 s")


@pytest.mark.parametrize("backend", backends())
def test_backup_wipe_restore_serves_the_same_files(
    backend: str, tmp_path: Path, testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, folder = tmp_path / "source", tmp_path / "restored", tmp_path / "backup"
    with fresh_database(backend, source, PG_URL, migrated=True) as db_url:
        # One server (cluster=False): the backup copies the data folder's blobs (an S3 bucket
        # is kept by the store's own versioning and replication, docs/backup.md).
        with run_server(source, db_url, cluster=False) as live:
            channel = live.new_channel()
            assert live.upload(channel, testdata / "packages" / PACKAGE).status_code == 201
            repodata, package_sha = _once_served(live.url, channel)
            assert json.loads(repodata)["packages"][PACKAGE]["sha256"] == package_sha
            # online: the server is still serving
            out = _cli(monkeypatch, source, db_url, "backup", str(folder))
            assert out.startswith("0\n"), out
        secret = (source / "secret.key").read_bytes()
    shutil.rmtree(source)  # wiped: data folder gone, database dropped

    manifest = json.loads((folder / "BACKUP.json").read_text())
    assert manifest["blobs"] >= 3 and "secret.key" in manifest["files"]
    with fresh_database(backend, target, PG_URL) as new_url:  # a new, empty database
        out = _cli(monkeypatch, target, new_url, "restore", str(folder))
        assert out.startswith("0\n"), out
        assert (target / "secret.key").read_bytes() == secret
        with run_server(target, new_url, cluster=False) as live:
            assert _served(live.url, channel) == (repodata, package_sha)
        out = _cli(monkeypatch, target, new_url, "fsck", "--verify", "--json")
        report = json.loads(out.split("\n", 1)[1])
        assert out.startswith("0\n") and report["clean"] and report["verified"] >= 3, out

        # fsck names what a missing blob breaks, and exits 1; a restore never overwrites
        blob = next((target / "blobs").glob(f"??/??/{package_sha}"))
        blob.unlink()
        out = _cli(monkeypatch, target, new_url, "fsck", "--json")
        report = json.loads(out.split("\n", 1)[1])
        assert out.startswith("1\n"), out
        assert [p["referenced_by"][0]["where"] for p in report["problems"]] == [
            f"{channel}/{SUBDIR}/{PACKAGE}"
        ]
        assert _cli(monkeypatch, target, new_url, "fsck", "--grace", "soon").startswith("2\n")
        again = _cli(monkeypatch, target, new_url, "restore", str(folder))
        assert again.startswith("1\n") and "Traceback" not in again
