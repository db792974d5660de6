"""CVE data administration over HTTP and the CLI: name map, KEV feed, cve.zip round trip.

Two live servers per backend: ``source`` (connected: feeds of real advisories, a KEV catalogue, an
admin mapping) and ``target`` (air-gapped: fed by ``stockade cve import``). Packages built with the
factory carry the versions the advisories name: ``aiohttp`` 3.7.3 (PYSEC-2021-76, fixed in 3.7.4)
and ``crowd`` 4.4.3 / 4.4.4 (NVD CVE-2022-43782 on ``atlassian:crowd``, affected before 4.4.4,
a CPE with no shipped mapping).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL, backends
from tests.functional.test_identity_api import is_problem, make_user, token_for
from tests.support.cves import VULNS, cli_for, osv_folder, run_cli, sync_feed, upload
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("cve-admin-api")]

NVD_ID = "CVE-2022-43782"
PYSEC = "PYSEC-2021-76"
PACKAGES = [("aiohttp", "3.7.3"), ("crowd", "4.4.3"), ("crowd", "4.4.4")]
UPLOAD_LIMIT = 2 * 1024**2


@dataclass
class World:
    source: LiveServer
    target: LiveServer
    source_channel: str
    target_channel: str
    tmp: Path


def stock(live: LiveServer, tmp: Path) -> str:
    channel = live.new_channel("public", "cve-admin")
    for name, version in PACKAGES:
        upload(live, channel, tmp, name, version, "0")
    return channel


def nvd_folder(tmp: Path) -> Path:
    page = json.loads((VULNS / "nvd-api-2.0" / "cves-2023.json").read_text())
    page["vulnerabilities"] = [v for v in page["vulnerabilities"] if v["cve"]["id"] == NVD_ID]
    page["resultsPerPage"] = page["totalResults"] = 1
    folder = tmp / "nvd"
    folder.mkdir()
    (folder / "page.json").write_text(json.dumps(page))
    return folder


@pytest.fixture(scope="module", params=backends())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("cve-admin")
    one, two = tmp / "source", tmp / "target"
    one.mkdir()
    two.mkdir()
    with (
        fresh_database(request.param, one, PG_URL) as url_one,
        fresh_database(request.param, two, PG_URL) as url_two,
        run_server(one, url_one) as source,
        run_server(two, url_two, upload={"max_archive_size": UPLOAD_LIMIT}) as target,
    ):
        source_channel, target_channel = stock(source, tmp), stock(target, tmp)
        assert sync_feed(source, osv_folder(tmp, "aiohttp").as_uri(), "osv")["last_status"] == "ok"
        assert sync_feed(source, nvd_folder(tmp).as_uri(), "nvd")["last_status"] == "ok"
        yield World(source, target, source_channel, target_channel, tmp)


def matched(live: LiveServer, channel: str) -> set[tuple[str, str, str]]:
    r = live.admin.get("/api/v1/cves", params={"channel": channel, "limit": 500})
    assert r.status_code == 200, r.text
    return {(row["id"], p["name"], p["version"]) for row in r.json() for p in row["packages"]}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    def run(live: LiveServer, *args: str, code: int = 0) -> str:
        return run_cli(cli_for(monkeypatch, tmp_path, live), *args, code=code)

    return run


def test_an_admin_mapping_makes_the_nvd_record_match(world: World) -> None:
    admin = world.source.admin
    assert not {m for m in matched(world.source, world.source_channel) if m[1] == "crowd"}
    body = {"conda_name": "crowd", "identifier": "atlassian:crowd", "note": "NVD spelling"}
    r = admin.post("/api/v1/cve/name-map", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["entry"]["origin"] == "admin" and r.json()["matches_added"] == 1
    found = matched(world.source, world.source_channel)
    assert (NVD_ID, "crowd", "4.4.3") in found
    assert (NVD_ID, "crowd", "4.4.4") not in found
    assert (PYSEC, "aiohttp", "3.7.3") in found
    is_problem(admin.post("/api/v1/cve/name-map", json=body), 409, "vulns:name-map-entry-exists")
    listed = admin.get("/api/v1/cve/name-map", params={"conda_name": "crowd"}).json()
    assert [(e["identifier"], e["origin"]) for e in listed] == [("atlassian:crowd", "admin")]
    bad = {"conda_name": "crowd", "identifier": "cpe:2.3:a:*:*"}
    is_problem(admin.post("/api/v1/cve/name-map", json=bad), 422, "vulns:bad-name-map")


def test_name_map_import_names_each_bad_row_and_changes_nothing(world: World) -> None:
    admin = world.source.admin
    before = admin.get("/api/v1/cve/name-map", params={"origin": "admin", "limit": 1000}).json()
    csv_body = "conda,identifier,note\nokay,pkg:pypi/okay,\nNOT OK,pkg:pypi/x,\nfine,???,\n"
    r = admin.post("/api/v1/cve/name-map/import", content=csv_body.encode())
    is_problem(r, 422, "vulns:bad-name-map")
    assert "line 3" in r.json()["detail"] and "line 4" in r.json()["detail"]
    after = admin.get("/api/v1/cve/name-map", params={"origin": "admin", "limit": 1000}).json()
    assert after == before
    good = {"entries": [{"conda": "pytorch-x", "purls": ["pkg:pypi/torch-x"], "cpes": []}]}
    r = admin.post("/api/v1/cve/name-map/import", content=json.dumps(good).encode())
    assert r.status_code == 200, r.text
    assert (r.json()["added"], r.json()["already_there"]) == (1, 0)
    entry = admin.get("/api/v1/cve/name-map", params={"conda_name": "pytorch-x"}).json()[0]
    r = admin.delete(f"/api/v1/cve/name-map/{entry['id']}")
    assert r.status_code == 200 and r.json()["removed"] is True
    is_problem(admin.delete(f"/api/v1/cve/name-map/{entry['id']}"), 404)
    shipped = admin.get("/api/v1/cve/name-map", params={"conda_name": "openssl"}).json()
    r = admin.delete(f"/api/v1/cve/name-map/{shipped[0]['id']}")
    assert r.status_code == 200 and r.json()["entry"]["suppressed"] is True
    assert admin.delete(r.json()["entry"]["href"]).json()["removed"] is True


def test_kev_feed_flags_the_advisory(world: World) -> None:
    kev = world.tmp / "known_exploited_vulnerabilities.json"
    if kev.exists():
        return
    entry = {"cveID": "CVE-2021-21330", "dateAdded": "2023-05-01", "dueDate": "2023-05-22"}
    kev.write_text(json.dumps({"catalogVersion": "1", "count": 1, "vulnerabilities": [entry]}))
    assert sync_feed(world.source, kev.as_uri(), "kev")["last_status"] == "ok"
    flagged = world.source.admin.get("/api/v1/cves", params={"kev": "true"}).json()
    assert [r["id"] for r in flagged] == [PYSEC]


def test_round_trip_through_the_cli(world: World, cli: Any) -> None:
    """Export from the connected server, import into the air-gapped one: same advisories and
    matches (the mapping and the KEV flag travel in the bundle)."""
    _ensure_mapping(world)
    test_kev_feed_flags_the_advisory(world)
    out = world.tmp / "cve.zip"
    assert "wrote" in cli(world.source, "cve", "export", str(out))
    with zipfile.ZipFile(out) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
    assert manifest["format"] == "stockade-cve-bundle" and manifest["format_version"] == 1

    text = cli(world.target, "cve", "import", str(out))
    assert "imported bundle: 10 added, 0 updated" in text
    assert matched(world.target, world.target_channel) == matched(
        world.source, world.source_channel
    )
    source_ids = {r["id"] for r in world.source.admin.get("/api/v1/cves?limit=500").json()}
    target_rows = world.target.admin.get("/api/v1/cves?limit=500").json()
    assert {r["id"] for r in target_rows} == source_ids
    again = json.loads(cli(world.target, "cve", "import", str(out), "--json"))
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 10)
    flagged = world.target.admin.get("/api/v1/cves", params={"kev": "true"}).json()
    assert [r["id"] for r in flagged] == [PYSEC]
    events = world.target.admin.get("/api/v1/audit", params={"type": "cve.import"}).json()
    assert events["events"] and events["events"][0]["details"]["format"] == "bundle"


def _ensure_mapping(world: World) -> None:
    """The mapping of the first test, made if that test did not run (``-k``)."""
    listed = world.source.admin.get("/api/v1/cve/name-map", params={"conda_name": "crowd"})
    if not listed.json():
        test_an_admin_mapping_makes_the_nvd_record_match(world)


def test_folder_import_with_detected_format(world: World, cli: Any) -> None:
    folder = world.tmp / "jinja"
    shutil.copytree(VULNS / "osv-pypi" / "jinja2", folder / "jinja2")
    (folder / ".hidden.json").write_text("{not json")
    text = cli(world.target, "cve", "import", str(folder), "--json")
    result = json.loads(text)
    assert (result["format"], result["files"]) == ("osv", 5)
    assert result["added"] + result["unchanged"] == 5
    one = next((VULNS / "nvd-api-2.0").glob("cves-1999.json"))
    result = json.loads(cli(world.target, "cve", "import", str(one), "--json"))
    assert result["format"] == "nvd" and result["added"] + result["unchanged"] == 200


def test_bad_imports_are_problems_and_change_nothing(world: World, cli: Any) -> None:
    admin = world.target.admin
    before = admin.get("/api/v1/cves?limit=500").json()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("../escape.jsonl", "{}")
    r = admin.post("/api/v1/cve/imports", content=buffer.getvalue())
    is_problem(r, 422, "vulns:bad-bundle")
    assert r.json()["member"] == "../escape.jsonl"
    is_problem(admin.post("/api/v1/cve/imports", content=b"not a zip at all"), 422)
    is_problem(admin.post("/api/v1/cve/imports?format=nope", content=b"x"), 422)
    huge = b"\0" * (UPLOAD_LIMIT + 1)
    is_problem(admin.post("/api/v1/cve/imports", content=huge), 413)
    assert admin.get("/api/v1/cves?limit=500").json() == before
    nobody = token_for(world.target, make_user(world.target))
    r = world.target.client(nobody).post("/api/v1/cve/imports", content=buffer.getvalue())
    is_problem(r, 403)
    junk = world.tmp / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 broken")
    assert "not a zip file" in cli(world.target, "cve", "import", str(junk), code=1)
    assert "no such file" in cli(world.target, "cve", "import", str(world.tmp / "nope"), code=1)


def test_names_cli(world: World, cli: Any) -> None:
    added = cli(world.target, "cve", "names", "add", "requests-x", "python:requests-x")
    assert "requests-x maps python:requests-x (admin)" in added
    rows = json.loads(
        cli(world.target, "cve", "names", "list", "--package", "requests-x", "--json")
    )
    assert [r["identifier"] for r in rows] == ["python:requests-x"]
    assert "removed" in cli(world.target, "cve", "names", "remove", str(rows[0]["id"]))
    bad = world.tmp / "names.csv"
    bad.write_text("conda,identifier\nx,pkg:pypi/x\nx,not-a-cpe\n")
    assert "line 3" in cli(world.target, "cve", "names", "import", str(bad), code=1)


def _bundle(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    """A ``cve.zip`` with a correct manifest for ``members``."""
    import hashlib

    files = {
        n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members.items()
    }
    manifest = {"format": "stockade-cve-bundle", "format_version": 1, "files": files}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            bundle.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def test_untrusted_bundle_contents_are_problems(world: World) -> None:
    """Bad records, a wrong score, other compression methods and an oversized CSV field are 422
    problems naming where they are, never a server error; nothing changes."""
    admin = world.target.admin
    before = admin.get("/api/v1/cves?limit=500").json()
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    good = {"vuln_id": "TEST-OK", "source": "osv", "affected": []}
    records = [
        ({"vuln_id": "TEST-1", "source": "osv", "published": "2024-01-01"}, "timezone offset"),
        ({"vuln_id": "TEST-1", "source": "osv", "kev": "no"}, "unknown key(s): kev"),
        (
            {"vuln_id": "TEST-1", "source": "osv", "affected": [{"ranges": [{"end": 5}]}]},
            "affected[0].ranges[0].end must be a version string",
        ),
        (
            {
                "vuln_id": "TEST-1",
                "source": "osv",
                "scores": [{"version": "3.1", "vector": vector, "base_score": 2.0}],
            },
            "base_score 2.0 is not the 9.8 its vector gives",
        ),
    ]
    for record, message in records:
        body = b"\n".join(json.dumps(r).encode() for r in (good, record))
        r = admin.post("/api/v1/cve/imports", content=_bundle({"vulnerabilities/a.jsonl": body}))
        is_problem(r, 422, "vulns:bad-bundle")
        problem = r.json()
        assert message in problem["detail"], problem
        assert (problem["member"], problem["record"], problem["line"]) == (
            "vulnerabilities/a.jsonl",
            "TEST-1",
            2,
        )
    packed = _bundle({"vulnerabilities/a.jsonl": json.dumps(good).encode()}, zipfile.ZIP_BZIP2)
    r = admin.post("/api/v1/cve/imports", content=packed)
    is_problem(r, 422, "vulns:bad-bundle")
    assert "compressed with bzip2" in r.json()["detail"]
    assert admin.get("/api/v1/cves?limit=500").json() == before

    names = admin.get("/api/v1/cve/name-map", params={"origin": "admin", "limit": 1000}).json()
    csv_body = "conda,identifier,note\nbig,pkg:pypi/big," + "n" * 140_000 + "\n"
    r = admin.post("/api/v1/cve/name-map/import", content=csv_body.encode())
    is_problem(r, 422, "vulns:bad-name-map")
    assert r.json()["detail"].startswith("line 2: not readable CSV")
    long_note = {"entries": [{"conda": "big", "identifier": "pkg:pypi/big", "note": "n" * 1001}]}
    r = admin.post(
        "/api/v1/cve/imports", content=_bundle({"name_map.json": json.dumps(long_note).encode()})
    )
    is_problem(r, 422, "vulns:bad-bundle")
    assert "the note is longer than 1000 characters" in r.json()["detail"]
    after = admin.get("/api/v1/cve/name-map", params={"origin": "admin", "limit": 1000}).json()
    assert after == names
