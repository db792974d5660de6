"""Issue 15, proof: hostile bundles dropped into a live server's air-gap folder are refused by an
``airgap:`` mirror run, each with its reason, and change nothing; a good bundle after them applies.

One live server (SQLite) trusts a key of the test; the bundles are built by hand
(``tests/support/airgap_bundles.py``) from generated package files of real records: a tampered
file inside an otherwise valid signed bundle, a bundle signed by another key, two zip-slips (a
``..`` name, an absolute one), a truncated zip under a name with terminal escapes.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.airgap.manifest import package_path, repodata_path
from stockade.signing.keys import public_hex
from tests.support.airgap_bundles import (
    bundle_id,
    head_members,
    make_manifest,
    write_bundle,
    write_raw,
)
from tests.support.mirror_api import make_mirror, published, run_logs, run_mirror, unique
from tests.support.mirror_runs import SUBDIR, RecordPool
from tests.support.published import artifact_rows
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("airgap-hostile")]

KEY = Ed25519PrivateKey.generate()
TOKEN = uuid.uuid4().hex  # names of the files a zip-slip would write


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("hostile-down")
    airgap = {"trusted_keys": [public_hex(KEY)], "settle_s": 0}
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        run_server(data_dir, db_url, airgap=airgap, mirror={"heartbeat_s": 0.2}) as live,
    ):
        yield live


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> RecordPool:
    pool = RecordPool.build(tmp_path_factory.mktemp("hostile-up"), count=3)
    pool.publish(pool.names)
    return pool


def bundle_members(pool: RecordPool) -> dict[str, bytes]:
    folder = pool.root / SUBDIR
    members = {repodata_path(SUBDIR): (folder / "repodata.json.zst").read_bytes()}
    for name in pool.names:
        members[package_path(SUBDIR, name)] = (folder / name).read_bytes()
    return members


def drop_folder(live: LiveServer) -> Path:
    path = live.settings.airgap.folder_in(live.settings.data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def result_of(folder: Path, name: str) -> dict[str, Any]:
    moved = folder / "refused" / name
    assert moved.is_file(), sorted(p.name for p in folder.rglob("*"))
    doc: dict[str, Any] = json.loads(moved.with_name(name + ".result.json").read_text())
    return doc


def hostile_bundles(folder: Path, pool: RecordPool, channel: str) -> dict[str, str]:
    """Write them into ``folder``; file name -> the code it is refused with."""
    members = bundle_members(pool)
    first = package_path(SUBDIR, pool.names[0])
    tampered = bytearray(members[first])
    tampered[len(tampered) // 2] ^= 0x01
    write_bundle(
        folder / "a_tampered.zip",
        members,
        key=KEY,
        channel=channel,
        replace={first: bytes(tampered)},
    )
    write_bundle(
        folder / "b_wrong_key.zip", members, key=Ed25519PrivateKey.generate(), channel=channel
    )
    head = list(head_members(make_manifest(members, channel=channel), KEY).items())
    write_raw(folder / "c_slip.zip", [*head, *members.items(), (f"../../../{TOKEN}.conda", b"x")])
    write_raw(folder / "d_abs.zip", [*head, *members.items(), (f"/tmp/{TOKEN}-abs", b"x")])
    cut = write_bundle(folder / "e.zip", members, key=KEY, channel=channel)
    data = cut.read_bytes()
    cut.unlink()
    (folder / "e\x1b[2J\nevil.zip").write_bytes(data[: len(data) // 2])
    return {
        "a_tampered.zip": "airgap:incomplete",
        "b_wrong_key.zip": "airgap:untrusted",
        "c_slip.zip": "airgap:zip-name",
        "d_abs.zip": "airgap:zip-name",
        "e\x1b[2J\nevil.zip": "airgap:zip-not-zip",
    }


def test_hostile_bundles_are_refused_and_change_nothing(
    down: LiveServer, pool: RecordPool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    channel = unique("hostile")
    folder = drop_folder(down)
    expected = hostile_bundles(folder, pool, channel)
    mirror = make_mirror(
        down, source=f"airgap:{channel}", mode="active", subdirs=[SUBDIR], channel=channel
    )
    run = run_mirror(down, mirror["name"], expect="failed")  # it only refused
    assert run["summary"] == f"0 bundles applied (none), {len(expected)} refused"

    for name, code in expected.items():
        result = result_of(folder, name)
        assert result["state"] == "refused"
        assert result["code"] == code, (name, result)
        assert result["reason"]
    assert "sha256" in result_of(folder, "a_tampered.zip")["reason"]
    assert not list(folder.glob("*.zip"))

    status = down.admin.get("/api/v1/airgap")
    assert status.status_code == 200, status.text
    history = {h["file_name"]: h for h in status.json()["history"] if h["code"]}
    for name, code in expected.items():
        assert history[name]["code"] == code
        assert history[name]["state"] == "refused"

    # nothing served, nothing recorded for the channel
    assert artifact_rows(down.settings.database_url, channel) == {}
    assert published(down, channel, SUBDIR) == {}
    # no zip-slip wrote anywhere
    assert not Path(f"/tmp/{TOKEN}-abs").exists()
    base = down.settings.data_dir.parent  # the session's temporary folder
    assert not [f for _, _, files in os.walk(base) for f in files if TOKEN in f]
    # names from the folder are escaped in the run's log (no terminal escape reaches a reader)
    logs = " ".join(line["message"] for line in run_logs(down, run["id"]))
    assert "\x1b" not in logs and "evil.zip" in logs

    # a good bundle after them applies
    write_bundle(
        folder / "good.zip", bundle_members(pool), key=KEY, channel=channel, bundle=bundle_id(9)
    )
    run = run_mirror(down, mirror["name"], channel=channel)
    assert run["summary"].startswith("1 bundles applied"), run
    assert set(published(down, channel, SUBDIR)) == set(pool.names)
    assert set(artifact_rows(down.settings.database_url, channel)) == set(pool.names)
    assert (folder / "applied" / "good.zip").is_file()
