"""Issue 15, proof: an air-gap import killed mid-way, then restarted, completes or rolls back,
never half applied; the bundle is applied once and set aside once.

Also: ``stockade airgap export`` killed mid-way, run again, resumes the same bundle and writes
a valid zip of the same contents.

A real ``stockade serve`` subprocess (:mod:`tests.support.process`, SQLite) applies a bundle of
8 package files dropped into its folder, and dies twice at crash points (``core/faults.py``):

1. ``airgap:after-file@5``: four files copied out of the bundle and stored, the fifth copied
   (the mirror copies one at a time): nothing of the bundle is in the channel, the bundle waits;
2. on the restart the run is taken over (attempt 2), copies the rest and commits the switch with
   the bundle's ``applied`` row, then dies at ``airgap:after-apply``, before the bundle is moved:
   the channel has every record, the bundle is still in the folder;
3. the next restart (attempt 3) finds the bundle applied and only sets it aside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.airgap.bundle import BundleTrust, open_bundle, verify
from stockade.airgap.manifest import package_path, repodata_path
from stockade.core.clock import utcnow
from stockade.core.safezip import ZipLimits
from stockade.signing.keys import public_hex
from tests.conftest import TESTDATA
from tests.support.airgap_bundles import write_bundle
from tests.support.cli import admin_cli, run
from tests.support.mirror_runs import (
    SUBDIR,
    RecordPool,
    blob_shas,
    create_mirror,
    get_run,
    served_records,
    start_run,
    wait_run,
)
from tests.support.process import ServerProcess
from tests.support.published import artifact_rows
from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.signing import Trust, post_metadata, put_key

pytestmark = [
    pytest.mark.functional,
    pytest.mark.slow,
    pytest.mark.one_backend,
    pytest.mark.xdist_group("airgap-crash"),
]

KILLED = 137
KEY = Ed25519PrivateKey.generate()
ENV = {
    "STOCKADE_MIRROR__HEARTBEAT_S": "0.5",
    "STOCKADE_AIRGAP__TRUSTED_KEYS": json.dumps([public_hex(KEY)]),
    "STOCKADE_AIRGAP__SETTLE_S": "0",
}
RESUME_ENV = {"STOCKADE_MIRROR__STALE_AFTER_S": "2", "STOCKADE_MIRROR__SCHEDULER_POLL_S": "0.5"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with fresh_database("sqlite", data_dir, None) as db_url:
        live = ServerProcess(data_dir, db_url, env=dict(ENV))
        try:
            yield live
        finally:
            live.kill()
            live.stop()


def _bundle(folder: Path, pool: RecordPool, channel: str) -> tuple[Path, dict[str, str]]:
    root = pool.root / SUBDIR
    members = {repodata_path(SUBDIR): (root / "repodata.json.zst").read_bytes()}
    members |= {package_path(SUBDIR, n): (root / n).read_bytes() for n in pool.names}
    folder.mkdir(parents=True, exist_ok=True)
    path = write_bundle(folder / f"conda_{channel}_airgap.zip", members, key=KEY, channel=channel)
    return path, pool.publish(pool.names)


def _imports(db_url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT bundle_id, state FROM airgap_imports"))
            return [(str(r[0]), str(r[1])) for r in rows]
    finally:
        engine.dispose()


def test_import_killed_twice_is_applied_once(server: ServerProcess, tmp_path: Path) -> None:
    pool = RecordPool.build(tmp_path / "up", count=8)
    channel = "airgapped"
    folder = server.data_dir / "airgap"
    bundle, expected = _bundle(folder, pool, channel)

    # 1. killed after some files came out of the bundle: nothing applied
    server.start(crash_at="airgap:after-file@5")
    with server.client() as client:
        create_mirror(
            client, channel, f"airgap:{channel}", subdirs=[SUBDIR], channel=channel, concurrency=1
        )
        run_id = start_run(client, channel)
    assert server.wait_exit() == KILLED, server.log_tail()
    assert len(set(expected.values()) & blob_shas(server.data_dir)) == 4
    assert artifact_rows(server.db_url, channel) == {}
    assert _imports(server.db_url) == []
    assert bundle.is_file()

    # 2. taken over, applied and committed, killed before the bundle is moved: all applied
    server.start(crash_at="airgap:after-apply", wait=False, **RESUME_ENV)
    assert server.wait_exit() == KILLED, server.log_tail()
    assert artifact_rows(server.db_url, channel) == expected
    (row,) = _imports(server.db_url)
    assert row[1] == "applied"
    assert bundle.is_file()
    assert not (folder / "applied").exists()

    # 3. taken over again: the bundle is known applied, only set aside
    server.start(**RESUME_ENV)
    with server.client() as client:
        run = wait_run(client, run_id, timeout=60)
        assert run["state"] == "completed", run
        assert run["attempt"] == 3, run
    server.wait_published(channel)
    with server.client() as client:
        assert served_records(client, channel) == expected
        assert get_run(client, run_id)["id"] == run_id
    assert artifact_rows(server.db_url, channel) == expected
    assert _imports(server.db_url) == [row]
    assert not bundle.exists()
    assert sorted(p.name for p in (folder / "applied").iterdir()) == [
        bundle.name,
        bundle.name + ".result.json",
    ]
    result = json.loads((folder / "applied" / (bundle.name + ".result.json")).read_text())
    assert result["state"] == "applied"
    assert result["bundle"]["bundle_id"] == row[0]


# -- the CLI export killed mid-way resumes the same bundle -----------------------------------------

PACKAGES = TESTDATA / "packages"
FILES = [
    "clobber-1-0.1.0-h4616a5c_0.tar.bz2",
    "clobber-2-0.1.0-h4616a5c_0.tar.bz2",
    "clobber-fd-1-0.1.0-h4616a5c_0.conda",
]
#: ``stockade`` whose bundle writer journals every member and dies (like a SIGKILL) once
#: DIE_AFTER members are written: no finally block, no flush.
DYING_CLI = """
import os, sys
from stockade.airgap import zipwriter
writer_class = zipwriter.BundleWriter
add, open_ = writer_class.add_stream, writer_class.open.__func__
written = []
def add_stream(self, *args, **kwargs):
    entry = add(self, *args, **kwargs)
    written.append(entry)
    if len(written) == int(os.environ["DIE_AFTER"]):
        os._exit(137)
    return entry
def open_each(cls, path, **kwargs):
    return open_(cls, path, **{**kwargs, "sync_members": 1})
writer_class.add_stream = add_stream
writer_class.open = classmethod(open_each)
from stockade.cli.main import main
sys.argv = ["stockade", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def trust() -> Trust:
    return Trust.new()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, trust: Trust) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("export-up")
    put_key(data_dir / "keys", trust.pkg_mgr)
    with fresh_database("sqlite", data_dir, None) as db_url, run_server(data_dir, db_url) as live:
        response = post_metadata(live.admin, trust.roots, trust.key_mgr_env)
        assert response.status_code == 200, response.text
        yield live


def test_export_killed_mid_way_resumes_the_same_bundle(
    up: LiveServer, trust: Trust, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    channel = up.new_channel(prefix="ex")
    assert up.upload(channel, *(PACKAGES / n for n in FILES)).status_code == 201
    up.wait_published(channel)
    out = tmp_path / "usb"
    out.mkdir()
    env = {
        **os.environ,
        "STOCKADE_PROFILE": str(tmp_path / "profile.toml"),
        "STOCKADE_URL": up.url,
        "STOCKADE_TOKEN": up.admin_token,
        "DIE_AFTER": "5",
    }
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            DYING_CLI,
            "airgap",
            "export",
            "--channel",
            channel,
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert killed.returncode == KILLED, killed.stderr.decode()[-2000:]
    (partial,) = out.glob("*.zip.partial")
    bundle = partial.name.removesuffix(".zip.partial").rsplit("_", 1)[-1]
    assert not list(out.glob("*.zip"))
    journal = partial.with_name(partial.name + ".journal").read_bytes().splitlines()
    assert len(journal) == 1 + 5  # its header, and the five members written before the kill

    cli = admin_cli(up, monkeypatch, tmp_path)

    output = run(
        cli,
        "airgap",
        "export",
        "--channel",
        channel,
        "--out",
        str(out),
    )
    assert f"resuming the export of bundle {bundle}" in output
    (made,) = out.glob("*.zip")
    assert made.name.endswith(f"_{bundle}.zip")
    assert sorted(p.name for p in out.iterdir()) == [made.name]  # no partial, no journal left
    with zipfile.ZipFile(made) as archive:
        assert archive.testzip() is None
    opened = open_bundle(made, ZipLimits())
    try:
        verify(opened, BundleTrust(keys=(public_hex(trust.pkg_mgr),)), utcnow())
        assert opened.manifest.bundle_id == bundle
        assert set(opened.manifest.package_files("noarch")) == set(FILES)
        for name in FILES:
            assert opened.read(package_path("noarch", name)) == (PACKAGES / name).read_bytes()
    finally:
        opened.close()
