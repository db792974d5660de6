"""Issue 15 (SPEC §9: "also by CLI and API"): a bundle sent to the air-gapped server with
``POST /api/v1/airgap/bundles`` / ``stockade airgap import FILE`` is checked, placed into the
air-gap folder in one rename, and applied at once by a run of the mirrors of its channel.

A bad bundle is a 422 problem naming why and nothing reaches the folder; the body is limited as
every upload (``upload.max_archive_size``: 413); placing bundles needs ``mirror:manage``.

``up`` (connected, signs) exports a real bundle with the CLI; ``down`` (air-gapped) trusts up's
pkg_mgr key and keeps files changed in the last 30 s out of runs (``settle_s``): an imported
bundle is complete when it lands, so the run asked for at once takes it anyway.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stockade.signing.keys import public_hex
from tests.conftest import TESTDATA
from tests.support.cli import admin_cli, run
from tests.support.mirror_api import make_mirror, wait_run
from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.signing import Trust, post_metadata, put_key

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("airgap-import")]

PACKAGES = TESTDATA / "packages"
FILES = ["clobber-1-0.1.0-h4616a5c_0.tar.bz2", "clobber-fd-1-0.1.0-h4616a5c_0.conda"]
SUBDIR = "noarch"
LIMIT = 2_000_000  # down's upload.max_archive_size
API = "/api/v1/airgap/bundles"
PASSWORD = "a-long-password-1"


@pytest.fixture(scope="module")
def trust() -> Trust:
    return Trust.new()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, trust: Trust) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("import-up")
    put_key(data_dir / "keys", trust.pkg_mgr)
    with fresh_database("sqlite", data_dir, None) as db_url, run_server(data_dir, db_url) as live:
        response = post_metadata(live.admin, trust.roots, trust.key_mgr_env)
        assert response.status_code == 200, response.text
        yield live


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory, trust: Trust) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("import-down")
    airgap = {"trusted_keys": [public_hex(trust.pkg_mgr)], "settle_s": 30}
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        run_server(
            data_dir,
            db_url,
            airgap=airgap,
            mirror={"heartbeat_s": 0.2},
            upload={"max_archive_size": LIMIT},
        ) as live,
    ):
        yield live


@pytest.fixture(scope="module")
def bundle(up: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A full bundle of a new channel of ``up``, written by ``stockade airgap export``."""
    channel = up.new_channel(prefix="imp")
    assert up.upload(channel, *(PACKAGES / name for name in FILES)).status_code == 201
    up.wait_published(channel)
    out = tmp_path_factory.mktemp("usb")
    with pytest.MonkeyPatch.context() as mp:
        cli = admin_cli(up, mp, tmp_path_factory.mktemp("cli-up"), columns=200)
        run(cli, "airgap", "export", "--channel", channel, "--out", str(out))
    (made,) = out.glob("*.zip")
    return channel, made


def folder_of(live: LiveServer) -> Path:
    return live.settings.airgap.folder_in(live.settings.data_dir)


def contents(folder: Path) -> set[str]:
    """Every file at the top of the folder (the waiting bundles and any leftover)."""
    return {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def user_token(live: LiveServer, levels: dict[str, str]) -> str:
    name, role = f"u-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:8]}"
    admin = live.admin
    assert admin.post("/api/v1/users", json={"username": name, "password": PASSWORD}).is_success
    assert admin.post("/api/v1/roles", json={"name": role, "permissions": levels}).is_success
    assigned = admin.post(f"/api/v1/roles/{role}/assignments", json={"user": name})
    assert assigned.status_code == 200, assigned.text
    made = live.client().post(
        "/api/v1/tokens", json={"name": "t", "expires_in_days": 2}, auth=(name, PASSWORD)
    )
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def records(live: LiveServer, channel: str) -> set[str]:
    response = live.admin.get(f"/conda/{channel}/{SUBDIR}/repodata.json")
    assert response.status_code == 200, response.text
    doc = response.json()
    return {*doc.get("packages", {}), *doc.get("packages.conda", {})}


def test_a_bundle_imported_with_the_cli_is_applied_at_once(
    down: LiveServer,
    bundle: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    channel, path = bundle
    target = f"gap-{uuid.uuid4().hex[:8]}"
    mirror = make_mirror(
        down, source=f"airgap:{channel}", mode="active", subdirs=[SUBDIR], channel=target
    )
    cli = admin_cli(down, monkeypatch, tmp_path, columns=200)
    output = run(cli, "airgap", "import", str(path), "--follow")
    assert f"placed {path.name}" in output, output
    assert f"mirror {mirror['name']}: run" in output and "completed" in output, output
    down.wait_published(target)
    assert records(down, target) == set(FILES)
    assert (folder_of(down) / "applied" / path.name).is_file()
    assert path.name not in contents(folder_of(down))
    history = down.admin.get("/api/v1/airgap").json()["history"]
    assert any(h["file_name"] == path.name and h["state"] == "applied" for h in history)
    events = down.admin.get("/api/v1/audit", params={"type": "airgap:import"})
    assert events.status_code == 200, events.text
    assert path.name in events.text
    assert down.admin.delete(f"/api/v1/mirrors/{mirror['name']}").status_code == 204


def test_without_a_mirror_of_its_channel_the_bundle_waits_and_the_answer_says_so(
    down: LiveServer, bundle: tuple[str, Path]
) -> None:
    channel, path = bundle
    name = f"waiting-{uuid.uuid4().hex[:6]}.zip"
    response = down.admin.post(API, params={"name": name}, content=path.read_bytes())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "packages" and body["channel"] == channel
    assert body["file_name"] == name and body["runs"] == []
    assert f"no mirror has the source airgap:{channel}" in body["detail"]
    assert (folder_of(down) / name).is_file()
    # the same name again: placed beside it, never over it
    again = down.admin.post(API, params={"name": name}, content=path.read_bytes())
    assert again.status_code == 202, again.text
    assert again.json()["file_name"] == name.replace(".zip", ".1.zip")
    waiting = down.admin.get("/api/v1/airgap").json()["waiting"]
    assert {w["file_name"] for w in waiting} >= {name, again.json()["file_name"]}
    for placed in (name, again.json()["file_name"]):
        (folder_of(down) / placed).unlink()


def test_a_cve_zip_is_placed_for_the_cve_feed(down: LiveServer) -> None:
    manifest = b'{"format": "stockade-cve-bundle", "version": 1}'
    response = down.admin.post(API, content=zip_bytes({"manifest.json": manifest}))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "cve" and body["runs"] == [] and "CVE bundle feed" in body["detail"]
    placed = folder_of(down) / body["file_name"]
    assert placed.name.startswith("cve") and placed.is_file()
    placed.unlink()


BAD = {
    "not a zip": (b"this is not a zip at all" * 10, "airgap:zip-not-zip"),
    "no manifest": (zip_bytes({"hello.txt": b"hi"}), "airgap:not-a-bundle"),
    "other format": (zip_bytes({"manifest.json": b'{"format": "x"}'}), "airgap:not-a-bundle"),
    "manifest not json": (zip_bytes({"manifest.json": b"\xff{"}), "airgap:not-a-bundle"),
    "zip slip": (zip_bytes({"../../evil.zip": b"x", "manifest.json": b"{}"}), "airgap:zip-name"),
    "bad manifest": (
        zip_bytes({"manifest.json": b'{"format": "stockade-airgap-bundle"}'}),
        "airgap:",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_bundle_is_refused_and_nothing_reaches_the_folder(
    down: LiveServer, case: str
) -> None:
    data, code = BAD[case]
    before = contents(folder_of(down))
    body = problem(down.admin.post(API, params={"name": "bad.zip"}, content=data), 422)
    assert body["code"].startswith(code), body
    assert body["detail"], body
    assert contents(folder_of(down)) == before
    assert not list((folder_of(down)).glob(".incoming-*"))


def test_bad_requests_are_problems(down: LiveServer, bundle: tuple[str, Path]) -> None:
    _, path = bundle
    before = contents(folder_of(down))
    for name in ("../x.zip", "x.tar", ".hidden.zip", "a/b.zip", "x" * 300 + ".zip"):
        response = down.admin.post(API, params={"name": name}, content=path.read_bytes())
        assert response.status_code == 422, (name, response.text)
    problem(down.admin.post(API, content=b""), 422)
    assert contents(folder_of(down)) == before


def test_placing_a_bundle_needs_mirror_manage(down: LiveServer, bundle: tuple[str, Path]) -> None:
    _, path = bundle
    before = contents(folder_of(down))
    reader = down.client(user_token(down, {"mirrors": "read"}))
    body = problem(reader.post(API, content=path.read_bytes()), 403)
    assert "mirror:manage" in body["detail"] or body["code"], body
    assert reader.get("/api/v1/airgap").status_code == 200  # reading needs mirror:read only
    problem(down.client().post(API, content=path.read_bytes()), 401)
    assert contents(folder_of(down)) == before


def test_a_body_over_the_upload_limit_is_413(down: LiveServer) -> None:
    before = contents(folder_of(down))
    big = b"\0" * (LIMIT + 1)
    problem(down.admin.post(API, content=big), 413)

    def chunks() -> Iterator[bytes]:  # no content-length: refused as it is read
        for _ in range(4):
            yield b"\0" * (LIMIT // 2)

    problem(down.admin.post(API, content=chunks()), 413)
    assert contents(folder_of(down)) == before


def test_the_cli_reports_a_refusal(
    down: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(zip_bytes({"hello.txt": b"hi"}))
    cli = admin_cli(down, monkeypatch, tmp_path, columns=200)
    output = run(cli, "airgap", "import", str(junk), code=1)
    assert "no manifest.json" in output and "422" in output, output
    assert "junk.zip" not in contents(folder_of(down))
    missing = run(cli, "airgap", "import", str(tmp_path / "nope.zip"), code=1)
    assert "no such file" in missing
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (LIMIT + 1))
    too_large = run(cli, "airgap", "import", str(big), code=1)
    assert "413" in too_large, too_large


def test_an_active_run_is_reported_not_doubled(down: LiveServer, bundle: tuple[str, Path]) -> None:
    """Two imports at once for one mirror: the second finds the run of the first (or its end)."""
    channel, path = bundle
    target = f"gap-{uuid.uuid4().hex[:8]}"
    mirror = make_mirror(
        down, source=f"airgap:{channel}", mode="active", subdirs=[SUBDIR], channel=target
    )
    first = down.admin.post(API, params={"name": "one.zip"}, content=path.read_bytes()).json()
    second = down.admin.post(API, params={"name": "two.zip"}, content=path.read_bytes()).json()
    (run1,) = first["runs"]
    (run2,) = second["runs"]
    assert run1["mirror"] == mirror["name"] and run1["state"] == "queued"
    assert run2["state"] in ("queued", "already-running"), run2
    if run2["state"] == "already-running":
        assert run2["run_id"] == run1["run_id"] and "run it again" in run2["detail"]
    for r in (run1, run2):
        wait_run(down, r["run_id"])
    assert down.admin.delete(f"/api/v1/mirrors/{mirror['name']}").status_code == 204
    for name in ("one.zip", "two.zip"):  # one left for a later run when the first had read
        (folder_of(down) / name).unlink(missing_ok=True)
