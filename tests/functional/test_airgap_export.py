"""Issue 15, export side: only what a channel serves leaves (a quarantined file never does, nor
one quarantined after the export was planned); the manifest is signed by the server's pkg_mgr
key; bad requests get a problem naming what is wrong and change nothing; rights are checked."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import zstandard
from sqlalchemy import update

from stockade.airgap.bundle import BundleTrust, open_bundle, verify
from stockade.channels.models import Artifact, Channel
from stockade.channels.scanstate import ScanStatus
from stockade.core.clock import utcnow
from stockade.core.safezip import ZipLimits
from stockade.signing.keys import public_hex
from tests.conftest import TESTDATA
from tests.support.cli import admin_cli, run
from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.signing import Trust, new_user_token, post_metadata, problem_of, put_key

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("airgap-export")]

PACKAGES = TESTDATA / "packages"
FILES = [
    "clobber-1-0.1.0-h4616a5c_0.tar.bz2",
    "clobber-2-0.1.0-h4616a5c_0.tar.bz2",
    "clobber-3-0.1.0-h4616a5c_0.tar.bz2",
]
SUBDIR = "noarch"


@pytest.fixture(scope="module")
def trust() -> Trust:
    return Trust.new()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, trust: Trust) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("airgap-export")
    put_key(data_dir / "keys", trust.pkg_mgr)
    with fresh_database("sqlite", data_dir, None) as db_url, run_server(data_dir, db_url) as live:
        assert post_metadata(live.admin, trust.roots, trust.key_mgr_env).status_code == 200
        yield live


def quarantine(live: LiveServer, channel: str, filename: str) -> None:
    """What a malicious verdict does to the row (the scanner's own path is tested elsewhere)."""
    with live.container.factory() as session, session.begin():
        channel_id = session.query(Channel.id).filter(Channel.name == channel).scalar()
        session.execute(
            update(Artifact)
            .where(Artifact.channel_id == channel_id, Artifact.filename == filename)
            .values(scan_status=ScanStatus.MALICIOUS, servable=False)
        )


def channel_with_files(live: LiveServer) -> str:
    channel = live.new_channel(prefix="ex")
    assert live.upload(channel, *(PACKAGES / f for f in FILES)).status_code == 201
    live.wait_published(channel)
    return channel


def test_quarantined_files_never_leave_and_the_manifest_is_signed(
    up: LiveServer, trust: Trust, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    channel = channel_with_files(up)
    quarantine(up, channel, FILES[0])
    cli = admin_cli(up, monkeypatch, tmp_path, columns=200)
    run(cli, "airgap", "export", "--channel", channel, "--out", str(tmp_path))
    (bundle_path,) = tmp_path.glob("*.zip")
    with zipfile.ZipFile(bundle_path) as archive:
        names = set(archive.namelist())
        repodata = archive.read(f"repodata/{SUBDIR}/repodata.json.zst")
    assert f"pkgs/{SUBDIR}/{FILES[0]}" not in names
    assert {f"pkgs/{SUBDIR}/{f}" for f in FILES[1:]} <= names
    records = orjson.loads(zstandard.ZstdDecompressor().decompress(repodata))
    assert FILES[0] not in records["packages"]
    bundle = open_bundle(bundle_path, ZipLimits())
    try:
        verify(bundle, BundleTrust(keys=(public_hex(trust.pkg_mgr),)), utcnow())
        assert bundle.signed_by == [public_hex(trust.pkg_mgr)]
    finally:
        bundle.close()


def test_a_file_quarantined_after_planning_stops_the_export(
    up: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    channel = channel_with_files(up)
    planned = up.admin.post("/api/v1/airgap/exports", json={"channel": channel})
    assert planned.status_code == 201, planned.text
    bundle_id = planned.json()["bundle_id"]
    quarantine(up, channel, FILES[1])
    manifest = orjson.loads(
        up.admin.get(f"/api/v1/airgap/exports/{bundle_id}/members/manifest.json").content
    )
    sha = manifest["files"][f"pkgs/{SUBDIR}/{FILES[1]}"]["sha256"]
    gone = up.admin.get(
        f"/api/v1/airgap/exports/{bundle_id}/members/pkgs/{SUBDIR}/{FILES[1]}",
        params={"sha256": sha},
    )
    problem_of(gone, 409, "airgap:file-gone")
    # the CLI, resuming that planned export, says so and leaves nothing half-written
    out = tmp_path / "usb"
    out.mkdir()
    name = planned.json()["file_name"]
    (out / f"{name}.partial").write_bytes(b"")
    cli = admin_cli(up, monkeypatch, tmp_path, columns=200)
    said = run(cli, "airgap", "export", "--channel", channel, "--out", str(out), code=1)
    assert "no longer served" in said
    assert not list(out.iterdir())


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"channel": "no-such-channel"}, 422, "airgap:no-channel"),
        ({"channel": "CHANNEL", "subdirs": ["not a subdir"]}, 422, "airgap:bad-export"),
        ({"channel": "CHANNEL", "subdirs": ["win-arm64"]}, 422, "airgap:no-subdir"),
        ({"channel": "CHANNEL", "since": "20200101T000000Z-000000000000"}, 422, "airgap:no-parent"),
        ({"channel": "CHANNEL", "extra": 1}, 422, None),
    ],
)
def test_bad_export_requests_are_problems(
    up: LiveServer, body: dict[str, object], status: int, code: str | None
) -> None:
    channel = up.new_channel(prefix="bad")
    body = {k: (channel if v == "CHANNEL" else v) for k, v in body.items()}
    before = up.admin.get("/api/v1/airgap/exports").json()
    problem_of(up.admin.post("/api/v1/airgap/exports", json=body), status, code)
    assert up.admin.get("/api/v1/airgap/exports").json() == before


def test_last_without_an_earlier_export_is_refused(up: LiveServer) -> None:
    channel = channel_with_files(up)
    made = up.admin.post("/api/v1/airgap/exports", json={"channel": channel, "since": "LAST"})
    body = problem_of(made, 422, "airgap:no-parent")
    assert "never exported" in body["detail"]


def test_rights(up: LiveServer) -> None:
    channel = channel_with_files(up)
    nobody = up.client(new_user_token(up.admin))
    problem_of(nobody.post("/api/v1/airgap/exports", json={"channel": channel}), 403)
    problem_of(nobody.get("/api/v1/airgap/exports"), 403)
    anonymous = up.client()
    problem_of(anonymous.post("/api/v1/airgap/exports", json={"channel": channel}), 401)
    made = up.admin.post("/api/v1/airgap/exports", json={"channel": channel}).json()
    member = f"/api/v1/airgap/exports/{made['bundle_id']}/members/manifest.json"
    problem_of(nobody.get(member), 403)
    problem_of(anonymous.get(member), 401)


def test_without_signing_keys_the_export_says_what_to_do(tmp_path: Path) -> None:
    with (
        fresh_database("sqlite", tmp_path, None) as db_url,
        run_server(tmp_path, db_url) as live,
    ):
        channel = channel_with_files(live)
        made = live.admin.post("/api/v1/airgap/exports", json={"channel": channel})
        body = problem_of(made, 404, "signing:not-set-up")
        assert "stockade signing init" in body["detail"]
