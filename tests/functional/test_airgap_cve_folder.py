"""Issue 15: ``cve.zip`` files dropped into the air-gap folder are applied by a ``bundle`` feed of
the folder (URL ``airgap:``, or the folder's ``file://`` path) at its next run (SPEC §9):
imported whole, moved to ``applied/`` with a result file, never re-applied (the same file again is
set aside as applied before); a broken one goes to ``refused/`` with the reason and changes
nothing; package bundles in the folder are left for the mirrors.

The ``cve.zip`` is a real export (``vulns.bundle_export``) of the OSV PyPI ``aiohttp`` advisories,
made from a database of its own: the live server has none of them before the feed runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stockade.db.engine import make_engine, make_session_factory, transaction
from stockade.vulns.bundle import export_bundle
from stockade.vulns.feeds import parse_osv
from stockade.vulns.store import VulnStore
from tests.functional.test_identity_api import is_problem
from tests.support.cves import OSV_PYPI, unique, wait_sync
from tests.support.server import LiveServer, fresh_database, run_server
from tests.support.templates import clone_sqlite

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("airgap-cve-folder")]

FEEDS = "/api/v1/cve/feeds"
ADVISORY = "PYSEC-2021-76"  # one of the aiohttp advisories
PACKAGE_BUNDLE = "conda_main_airgap.zip"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("airgap-cve")
    with (
        fresh_database("sqlite", data_dir, None, migrated=True) as db_url,
        run_server(data_dir, db_url, airgap={"settle_s": 0}) as server,
    ):
        yield server


@pytest.fixture(scope="module")
def cve_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A ``cve.zip`` exported from another database holding the aiohttp advisories, and how
    many advisories it holds."""
    where = tmp_path_factory.mktemp("connected")
    clone_sqlite(where / "connected.db")
    engine = make_engine(f"sqlite:///{where / 'connected.db'}")
    try:
        factory = make_session_factory(engine)
        vulns = [
            v
            for p in sorted((OSV_PYPI / "aiohttp").glob("*.yaml"))
            for v in parse_osv(p.read_bytes())
        ]
        with transaction(factory) as session:
            VulnStore(session).upsert(vulns)
        out = where / "cve.zip"
        with factory() as session:
            exported = export_bundle(session, out)
    finally:
        engine.dispose()
    assert exported.vulnerabilities == len(vulns) > 0
    return out, exported.vulnerabilities


def folder_of(live: LiveServer) -> Path:
    path = live.settings.airgap.folder_in(live.settings.data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_bundle(folder: Path) -> bytes:
    """A package bundle's file in the folder (its manifest says so): the feed leaves it alone."""
    path = folder / PACKAGE_BUNDLE
    if not path.exists():
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("manifest.json", json.dumps({"format": "stockade-airgap-bundle"}))
    return path.read_bytes()


def sync(live: LiveServer, name: str) -> dict[str, Any]:
    r = live.admin.post(f"{FEEDS}/{name}/sync")
    assert r.status_code == 202, r.text
    return wait_sync(live.admin, r.headers["location"])


def add_feed(live: LiveServer, url: str) -> str:
    name = unique("airgap-cve")
    r = live.admin.post(FEEDS, json={"name": name, "url": url, "format": "bundle"})
    assert r.status_code == 201, r.text
    return name


def result_of(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.with_name(path.name + ".result.json").read_text())
    return doc


def history(live: LiveServer) -> list[dict[str, Any]]:
    r = live.admin.get("/api/v1/airgap")
    assert r.status_code == 200, r.text
    return [h for h in r.json()["history"] if h["kind"] == "cve"]


def advisories(live: LiveServer) -> int:
    r = live.admin.get("/api/v1/cves", params={"limit": 500})
    assert r.status_code == 200, r.text
    return len(r.json())


def test_airgap_is_a_source_of_bundle_feeds_only(live: LiveServer) -> None:
    for fmt in ("osv", "nvd", "kev"):
        r = live.admin.post(FEEDS, json={"name": unique("f"), "url": "airgap:", "format": fmt})
        is_problem(r, 422)
        assert r.json().get("field") == "url" and "bundle only" in r.json()["detail"]
    for url in ("airgap:main", "AIRGAP:", "airgap"):
        r = live.admin.post(FEEDS, json={"name": unique("f"), "url": url, "format": "bundle"})
        is_problem(r, 422)
        assert r.json().get("field") == "url"
    name = add_feed(live, "airgap:")
    r = live.admin.patch(f"{FEEDS}/{name}", json={"format": "osv"})
    is_problem(r, 422)  # its URL stays a bundle feed's
    live.admin.delete(f"{FEEDS}/{name}")


def test_a_dropped_cve_zip_is_applied_once_and_set_aside(
    live: LiveServer, cve_zip: tuple[Path, int]
) -> None:
    bundle, count = cve_zip
    folder = folder_of(live)
    packages = package_bundle(folder)
    assert live.admin.get(f"/api/v1/cves/{ADVISORY}").status_code == 404
    shutil.copyfile(bundle, folder / "cve.zip")

    name = add_feed(live, "airgap:")
    feed = sync(live, name)
    assert feed["last_status"] == "ok", feed
    assert "1 CVE bundle applied, 0 refused, 0 already applied" in feed["last_error"]
    assert feed["advisories"] == count
    assert live.admin.get(f"/api/v1/cves/{ADVISORY}").status_code == 200
    applied = folder / "applied" / "cve.zip"
    assert applied.read_bytes() == bundle.read_bytes() and not (folder / "cve.zip").exists()
    result = result_of(applied)
    assert result["state"] == "applied" and result["counts"]["added"] == count
    assert result["counts"]["producer"] and result["counts"]["created"]
    assert (folder / PACKAGE_BUNDLE).read_bytes() == packages  # left for the mirrors
    applied_rows = [h for h in history(live) if h["state"] == "applied"]
    assert [(h["file_name"], h["mirror"]) for h in applied_rows] == [("cve.zip", None)]
    assert applied_rows[0]["counts"]["added"] == count

    # the same file again, picked up by a feed naming the folder's file:// path: not re-applied
    shutil.copyfile(bundle, folder / "cve.zip")
    other = add_feed(live, folder.as_uri())
    again = sync(live, other)
    assert again["last_status"] == "unchanged", again
    assert "0 CVE bundles applied, 0 refused, 1 already applied" in again["last_error"]
    assert again["advisories"] == 0  # nothing imported by this feed
    repeat = folder / "applied" / "cve.1.zip"
    assert repeat.exists() and "applied before" in result_of(repeat)["reason"]
    assert [h for h in history(live) if h["state"] == "applied"] == applied_rows
    assert advisories(live) == count

    empty = sync(live, name)  # nothing waiting
    assert empty["last_status"] == "unchanged" and "no CVE bundle waiting" in empty["last_error"]


def test_a_broken_cve_zip_is_refused_and_changes_nothing(
    live: LiveServer, cve_zip: tuple[Path, int]
) -> None:
    bundle, _ = cve_zip
    folder = folder_of(live)
    packages = package_bundle(folder)
    data = bundle.read_bytes()
    (folder / "cve.zip").write_bytes(data[: len(data) // 2])  # a copy cut short
    before = advisories(live)
    rows_before = len(history(live))

    feed = sync(live, add_feed(live, "airgap:"))
    assert feed["last_status"] == "failed", feed
    assert "0 CVE bundles applied, 1 refused" in feed["last_error"]
    assert "refused: cve.zip: " in feed["last_error"] and "[vulns:bad-bundle]" in feed["last_error"]
    refused = folder / "refused" / "cve.zip"
    assert refused.exists() and not (folder / "cve.zip").exists()
    result = result_of(refused)
    assert result["state"] == "refused" and result["code"] == "vulns:bad-bundle"
    assert result["reason"]
    assert advisories(live) == before and feed["advisories"] == 0
    rows = history(live)
    assert len(rows) == rows_before + 1
    assert (rows[0]["state"], rows[0]["code"]) == ("refused", "vulns:bad-bundle")
    assert (folder / PACKAGE_BUNDLE).read_bytes() == packages


def repacked(bundle: Path, out: Path, changes: dict[str, bytes]) -> Path:
    """``bundle`` with members replaced or added, its manifest listing them (hashes right)."""
    with zipfile.ZipFile(bundle) as source:
        contents = {n: source.read(n) for n in source.namelist() if n != "manifest.json"}
        manifest = json.loads(source.read("manifest.json"))
    contents.update(changes)
    manifest["files"] = {
        n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in contents.items()
    }
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in contents.items():
            archive.writestr(name, data)
    return out


def test_a_bundle_with_one_bad_record_is_refused_whole(
    live: LiveServer, cve_zip: tuple[Path, int], tmp_path: Path
) -> None:
    """Its first file's advisories (new ids) were stored before the bad record was read: the
    transaction takes them back."""
    bundle, _ = cve_zip
    folder = folder_of(live)
    with zipfile.ZipFile(bundle) as source:
        first = source.read("vulnerabilities/000001.jsonl")
    records = [json.loads(line) for line in first.splitlines() if line.strip()]
    for number, record in enumerate(records):
        record["vuln_id"], record["aliases"] = f"STOCKADE-TEST-{number}", []
    changes = {
        "vulnerabilities/000001.jsonl": b"\n".join(json.dumps(r).encode() for r in records),
        "vulnerabilities/000002.jsonl": json.dumps({"vuln_id": 5, "source": "osv"}).encode(),
    }
    repacked(bundle, folder / "cve-partly-bad.zip", changes)
    before = advisories(live)

    feed = sync(live, add_feed(live, "airgap:"))
    assert feed["last_status"] == "failed", feed
    assert "refused: cve-partly-bad.zip: vulnerabilities/000002.jsonl" in feed["last_error"]
    assert live.admin.get("/api/v1/cves/STOCKADE-TEST-0").status_code == 404
    assert advisories(live) == before
    result = result_of(folder / "refused" / "cve-partly-bad.zip")
    assert result["state"] == "refused" and "vuln_id" in result["reason"]
