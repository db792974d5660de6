"""KEV/EPSS enrichment, the cve.zip bundle (export, verified atomic import) and name-map edits.

Advisories are the real ones of ``tests/data/vulns``: OSV PyPI ``aiohttp`` (PYSEC-2021-76,
alias CVE-2021-21330; affected before 3.7.4) and NVD CVE-2022-43782 (``atlassian:crowd``, no
shipped mapping; affected 3.0.0-4.4.4 and 5.0.0-5.0.3, ends exclusive). KEV and EPSS documents
are small ones in the real formats, naming those CVE ids.
"""

from __future__ import annotations

import gzip
import json
import re
import ssl
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.db.migrate import upgrade
from stockade.settings import load_settings
from stockade.vulns import bundle as bundle_module
from stockade.vulns.bundle import export_bundle, import_bundle, import_zip
from stockade.vulns.bundlefile import BundleError, BundleLimits, BundleTooLargeError
from stockade.vulns.curation import CurationService
from stockade.vulns.errors import FeedError, NameMapError
from stockade.vulns.feedsync import FeedSync
from stockade.vulns.matcher import Matcher
from stockade.vulns.models import NameMapEntry, VulnEnrichment, VulnMatch, VulnTarget
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.namemap import NameMapService
from stockade.vulns.store import VulnStore, revision
from tests.conftest import PG_URL
from tests.factories.packages import PackageSpec, build_conda, file
from tests.integration.conftest import add_package
from tests.integration.vulns.support import (
    VULNS,
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
    sync,
)
from tests.support.server import fresh_database
from tests.support.upstream import Upstream, self_signed_cert, server_tls_context

PYSEC = "PYSEC-2021-76"
CVE = "CVE-2021-21330"  # PYSEC-2021-76's alias
NVD_ID = "CVE-2022-43782"  # atlassian:crowd


def kev_doc(*cves: str) -> bytes:
    return json.dumps(
        {
            "title": "CISA Catalog of Known Exploited Vulnerabilities",
            "catalogVersion": "2024.01.01",
            "dateReleased": "2024-01-01T00:00:00.000Z",
            "count": len(cves),
            "vulnerabilities": [
                {
                    "cveID": c,
                    "vendorProject": "aio-libs",
                    "product": "aiohttp",
                    "vulnerabilityName": "open redirect",
                    "dateAdded": "2023-05-01",
                    "shortDescription": "…",
                    "requiredAction": "Apply updates.",
                    "dueDate": "2023-05-22",
                    "knownRansomwareCampaignUse": "Unknown",
                    "notes": "",
                    "cwes": ["CWE-601"],
                }
                for c in cves
            ],
        }
    ).encode()


def epss_doc(rows: dict[str, tuple[float, float]]) -> bytes:
    lines = [
        "#model_version:v2023.03.01,score_date:2024-01-01T00:00:00+0000",
        "cve,epss,percentile",
    ]
    lines += [f"{c},{e},{p}" for c, (e, p) in rows.items()]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def advisory(container: Container, vuln_id: str) -> VulnRow:
    with container.factory() as session:
        row = session.scalar(select(VulnRow).where(VulnRow.vuln_id == vuln_id))
        assert row is not None
        session.expunge(row)
        return row


def nvd_page(tmp_path: Path, vuln_id: str = NVD_ID) -> Path:
    """A one-record NVD API page holding the real record ``vuln_id`` of ``cves-2023.json``."""
    page = json.loads((VULNS / "nvd-api-2.0" / "cves-2023.json").read_text())
    page["vulnerabilities"] = [v for v in page["vulnerabilities"] if v["cve"]["id"] == vuln_id]
    page["resultsPerPage"] = page["totalResults"] = 1
    folder = tmp_path / "nvd"
    folder.mkdir(exist_ok=True)
    (folder / "page.json").write_text(json.dumps(page))
    return folder


def counts(container: Container) -> dict[str, int]:
    with container.factory() as session:
        return {
            name: session.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (
                ("vulns", VulnRow),
                ("targets", VulnTarget),
                ("matches", VulnMatch),
                ("names", NameMapEntry),
                ("enrichment", VulnEnrichment),
            )
        } | {"revision": revision(session)}


# ---------------------------------------------------------------------------------- KEV, EPSS


def test_kev_and_epss_from_files_flag_the_advisory_by_alias(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    sync(
        container,
        add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    kev_file, epss_file = tmp_path / "kev.json", tmp_path / "epss_scores-2024-01-01.csv.gz"
    kev_file.write_bytes(kev_doc(CVE, "CVE-2099-0001"))
    epss_file.write_bytes(epss_doc({CVE: (0.42, 0.97), "CVE-2099-0002": (0.01, 0.1)}))
    kev = add_feed(container, admin, "kev", kev_file.as_uri(), "kev")
    epss = add_feed(container, admin, "epss", epss_file.as_uri(), "epss")
    before = counts(container)["revision"]

    done = sync(container, kev)
    assert (done.enriched, done.changed) == (2, 1)
    sync(container, epss)

    row = advisory(container, PYSEC)
    assert row.kev is True and row.epss == pytest.approx(0.42)
    assert counts(container)["revision"] > before
    assert advisory(container, "PYSEC-2023-120").kev is False
    with container.factory() as session:
        kept = session.get(VulnEnrichment, CVE)
        assert kept is not None and kept.kev_due_date == "2023-05-22"
        assert kept.epss_percentile == pytest.approx(0.97)

    kev_file.write_bytes(kev_doc("CVE-2099-0001"))  # dropped from the catalogue
    assert sync(container, kev).changed == 1
    row = advisory(container, PYSEC)
    assert row.kev is False and row.epss == pytest.approx(0.42)  # the EPSS score stays
    assert sync(container, kev).not_modified


def test_enrichment_known_first_applies_to_advisories_stored_later(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    (tmp_path / "kev.json").write_bytes(kev_doc(CVE))
    sync(container, add_feed(container, admin, "kev", (tmp_path / "kev.json").as_uri(), "kev"))
    assert counts(container)["vulns"] == 0
    sync(
        container,
        add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    assert advisory(container, PYSEC).kev is True


def test_a_broken_kev_document_changes_nothing(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    sync(
        container,
        add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    path = tmp_path / "kev.json"
    path.write_bytes(kev_doc(CVE))
    feed = add_feed(container, admin, "kev", path.as_uri(), "kev")
    sync(container, feed)
    broken = json.loads(kev_doc(CVE))
    broken["vulnerabilities"].append({"cveID": "not-a-cve"})
    path.write_text(json.dumps(broken))
    with pytest.raises(FeedError, match=r"vulnerabilities\[1\]\.cveID"):
        sync(container, feed)
    assert advisory(container, PYSEC).kev is True
    (tmp_path / "e.csv").write_text("cve,epss,percentile\nCVE-2021-21330,1.5,0.2\n")
    epss = add_feed(container, admin, "epss", (tmp_path / "e.csv").as_uri(), "epss")
    with pytest.raises(FeedError, match="line 2: epss must be between 0 and 1"):
        sync(container, epss)
    assert advisory(container, PYSEC).epss is None


def test_kev_over_https_is_fetched_conditionally(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    sync(
        container,
        add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    served = tmp_path / "served"
    served.mkdir()
    (served / "known_exploited_vulnerabilities.json").write_bytes(kev_doc(CVE))
    cert, key = self_signed_cert(tmp_path)
    with (
        Upstream(served, ssl_context=server_tls_context(cert, key)) as up,
        httpx.Client(verify=ssl.create_default_context(cafile=cert)) as client,
    ):
        url = f"{up.url}/known_exploited_vulnerabilities.json"
        feed = add_feed(container, admin, "kev", url, "kev")
        first = FeedSync(container.factory, client=client).sync_feed(feed)
        again = FeedSync(container.factory, client=client).sync_feed(feed)
        deadline = time.monotonic() + 10  # the server logs a request after answering it
        while len(up.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        statuses = [r.status for r in up.requests]
    assert first.changed == 1 and not first.not_modified
    assert again.not_modified
    assert statuses == [200, 304]
    assert advisory(container, PYSEC).kev is True


# --------------------------------------------------------------------------------------- bundle


@pytest.fixture
def other(container: Container, tmp_path: Path) -> Iterator[Container]:
    """A second, empty Stockade of the same backend (the air-gapped side)."""
    backend = "postgresql" if container.engine.dialect.name == "postgresql" else "sqlite"
    data = tmp_path / "other"
    data.mkdir()
    with fresh_database(backend, data, PG_URL) as url:
        upgrade(url)
        built = Container.build(load_settings(data_dir=data, database_url=url))
        built.bootstrap()
        yield built
        built.close()


def _stocked(container: Container, admin: Principal, tmp_path: Path) -> None:
    """Advisories of both kinds, KEV/EPSS, and an admin name-map entry."""
    sync(
        container,
        add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    sync(container, add_feed(container, admin, "nvd", nvd_page(tmp_path).as_uri(), "nvd"))
    (tmp_path / "kev.json").write_bytes(kev_doc(CVE))
    sync(container, add_feed(container, admin, "kev", (tmp_path / "kev.json").as_uri(), "kev"))
    with transaction(container.factory) as session:
        NameMapService(session).add(admin, "crowd", "atlassian:crowd", "NVD spelling")


def test_bundle_round_trip_to_a_fresh_stockade(
    container: Container, other: Container, admin: Principal, tmp_path: Path
) -> None:
    _stocked(container, admin, tmp_path)
    versions = [("crowd", "4.4.3", "0"), ("crowd", "4.4.4", "0"), ("aiohttp", "3.7.3", "0")]
    add_artifacts(container, channel_id(container, admin), versions)
    with transaction(container.factory) as session:  # curated knowledge crosses the gap too
        curations = CurationService(session)
        curations.curate(admin, PYSEC, "aiohttp", "3.7.3", "active", "confirmed by security")
        curations.curate(admin, NVD_ID, "crowd", "4.4.3", "cleared", "not deployed", builds="0")
    out = tmp_path / "cve.zip"
    with container.factory() as session:
        exported = export_bundle(session, out)
    assert exported.vulnerabilities == counts(container)["vulns"] == 10
    assert exported.name_map == 1 and exported.enrichment == 1 and exported.curations == 2
    assert not list(tmp_path.glob(".cve-*"))  # the temporary file was renamed

    add_artifacts(other, channel_id(other, admin_of(other)), versions, match=False)
    with transaction(other.factory) as session:
        done = import_bundle(session, out)
    assert (done.added, done.updated, done.name_map, done.enrichment) == (10, 0, 1, 1)
    assert done.curations == 2
    assert matches(other) == matches(container)  # statuses included: active, cleared
    assert matches(other)[(PYSEC, "aiohttp", "3.7.3", "0")] == "active"
    assert matches(other)[(NVD_ID, "crowd", "4.4.3", "0")] == "cleared"
    assert ("CVE-2022-43782", "crowd", "4.4.3", "0") in matches(other)
    assert ("CVE-2022-43782", "crowd", "4.4.4", "0") not in matches(other)
    assert advisory(other, PYSEC).kev is True
    source, copy = advisory(container, NVD_ID), advisory(other, NVD_ID)
    assert (copy.affected, copy.scores, copy.digest) == (
        source.affected,
        source.scores,
        source.digest,
    )

    with transaction(other.factory) as session:  # again: idempotent
        again = import_bundle(session, out)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 10)
    assert again.curations == 0

    # a decision made here later than the bundle's stays the one that counts
    with transaction(other.factory) as session:
        CurationService(session).curate(
            admin_of(other), PYSEC, "aiohttp", "3.7.3", "mitigated", "patched here"
        )
    with transaction(container.factory) as session:
        export_bundle(session, out)
    with transaction(other.factory) as session:
        import_bundle(session, out)
    assert matches(other)[(PYSEC, "aiohttp", "3.7.3", "0")] == "mitigated"


def admin_of(container: Container) -> Principal:
    from stockade.auth.service import UserService

    with transaction(container.factory) as session:
        users = UserService(session)
        return users.principal_for(users.get_by_name("admin"), via="password")


def test_a_failure_midway_leaves_the_database_as_it_was(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stocked(container, admin, tmp_path)
    out = tmp_path / "cve.zip"
    with container.factory() as session:
        export_bundle(session, out)
    fresh = tmp_path / "fresh"
    folder = osv_folder(fresh, "jinja2")
    sync(container, add_feed(container, admin, "jinja", folder.as_uri(), "osv"))
    # a bundle with changed records and new ones: edit every advisory's summary
    edited = tmp_path / "edited.zip"
    rewrite(out, edited, lambda rec: {**rec, "summary": "edited"})
    before, rows_before = counts(container), advisory(container, PYSEC).summary

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bundle_module, "_replace_enrichment", boom)  # after the upserts
    with pytest.raises(RuntimeError), transaction(container.factory) as session:
        import_bundle(session, edited)
    assert counts(container) == before
    assert advisory(container, PYSEC).summary == rows_before != "edited"


def rewrite(source: Path, target: Path, change: Any) -> None:
    """A valid bundle whose advisory records went through ``change`` (manifest recomputed)."""
    import hashlib

    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        manifest = json.loads(zin.read("manifest.json"))
        for name in zin.namelist():
            if name == "manifest.json":
                continue
            data = zin.read(name)
            if name.startswith("vulnerabilities/"):
                lines = [json.dumps(change(json.loads(x))) for x in data.splitlines() if x]
                data = "\n".join(lines).encode()
            manifest["files"][name] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
            zout.writestr(name, data)
        zout.writestr("manifest.json", json.dumps(manifest))


def _zip(path: Path, members: dict[str, bytes], *, manifest: dict[str, Any] | None = None) -> Path:
    import hashlib

    with zipfile.ZipFile(path, "w") as out:
        files = {
            n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members.items()
        }
        doc = manifest or {"format": "stockade-cve-bundle", "format_version": 1, "files": files}
        out.writestr("manifest.json", json.dumps(doc))
        for name, data in members.items():
            out.writestr(name, data)
    return path


RECORD = json.dumps({"vuln_id": "TEST-1", "source": "osv", "affected": []}).encode()


BROKEN: list[tuple[dict[str, bytes], str]] = [
    ({"../evil.jsonl": RECORD}, "unsafe member name"),
    ({"/abs/vulnerabilities/x.jsonl": RECORD}, "unsafe member name"),
    ({"vulnerabilities\\x.jsonl": RECORD}, "unsafe member name"),
    ({"vulnerabilities/x.jsonl": b"{not json"}, "vulnerabilities/x.jsonl: line 1: not JSON"),
    ({"vulnerabilities/x.jsonl": b'{"source": "osv"}'}, "line 1: not an advisory record"),
    ({"other.txt": b"hello"}, "other.txt: not a file a CVE bundle holds"),
]


def test_unsafe_or_broken_bundles_are_refused(container: Container, tmp_path: Path) -> None:
    before = counts(container)
    for number, (members, message) in enumerate(BROKEN):
        path = _zip(tmp_path / f"cve-{number}.zip", {"vulnerabilities/ok.jsonl": RECORD, **members})
        with (
            pytest.raises(BundleError, match=re.escape(message)),
            transaction(container.factory) as session,
        ):
            import_bundle(session, path)
        assert counts(container) == before, message


def test_bundle_checks_before_reading(container: Container, tmp_path: Path) -> None:
    def refused(path: Path, kind: type[Exception], message: str, **kw: Any) -> None:
        with pytest.raises(kind, match=message), transaction(container.factory) as session:
            import_bundle(session, path, **kw)

    good = _zip(tmp_path / "good.zip", {"vulnerabilities/a.jsonl": RECORD})
    refused(
        good,
        BundleTooLargeError,
        "unpacks to more than 100 bytes",
        limits=BundleLimits(max_total=100),
    )
    refused(good, BundleTooLargeError, "members, over 1", limits=BundleLimits(max_members=1))
    tampered = tmp_path / "tampered.zip"
    rewrite_raw(good, tampered, "vulnerabilities/a.jsonl", RECORD.replace(b"TEST-1", b"TEST-2"))
    refused(tampered, BundleError, "a.jsonl: sha256 differs from the manifest")
    future = _zip(
        tmp_path / "v2.zip",
        {},
        manifest={"format": "stockade-cve-bundle", "format_version": 2, "files": {}},
    )
    refused(future, BundleError, "format_version 2 is not supported")
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really")
    refused(tmp_path / "junk.zip", BundleError, "not a zip file")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as out:
        info = zipfile.ZipInfo("vulnerabilities/a.jsonl")
        info.external_attr = (0o120777) << 16
        out.writestr(info, "/etc/passwd")
    refused(link, BundleError, "symbolic links are refused")
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as out:
        out.writestr("vulnerabilities/a.jsonl", RECORD)
        with pytest.warns(UserWarning, match="Duplicate name"):
            out.writestr("vulnerabilities/a.jsonl", RECORD)
    refused(twice, BundleError, "holds this name twice")
    unlisted = _zip(
        tmp_path / "unlisted.zip",
        {},
        manifest={"format": "stockade-cve-bundle", "format_version": 1, "files": {}},
    )
    with zipfile.ZipFile(unlisted, "a") as out:
        out.writestr("vulnerabilities/b.jsonl", RECORD)
    refused(unlisted, BundleError, "b.jsonl: in the zip but not listed in the manifest")
    assert counts(container)["vulns"] == 0


def rewrite_raw(source: Path, target: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.namelist():
            zout.writestr(item, data if item == name else zin.read(item))


def test_a_zip_of_feed_files_is_imported_whole_or_not_at_all(
    container: Container, tmp_path: Path
) -> None:
    folder = osv_folder(tmp_path, "aiohttp")
    feeds = tmp_path / "feeds.zip"
    with zipfile.ZipFile(feeds, "w") as out:
        for path in sorted(folder.rglob("*.yaml")):
            out.write(path, path.relative_to(folder).as_posix())
    with transaction(container.factory) as session:
        done = import_zip(session, feeds)  # format detected: osv
    assert (done.format, done.added) == ("osv", 9)
    with zipfile.ZipFile(feeds, "a") as out:
        out.writestr("aiohttp/broken.yaml", "id: [unclosed")
    before = counts(container)
    with (
        pytest.raises(BundleError, match=r"aiohttp/broken\.yaml: not a valid osv document"),
        transaction(container.factory) as session,
    ):
        import_zip(session, feeds, "osv")
    assert counts(container) == before


def test_a_bundle_feed_over_file_url(
    container: Container, other: Container, admin: Principal, tmp_path: Path
) -> None:
    _stocked(container, admin, tmp_path)
    out = tmp_path / "cve.zip"
    with container.factory() as session:
        export_bundle(session, out)
    feed = add_feed(other, admin_of(other), "gap", out.as_uri(), "bundle")
    first = FeedSync(other.factory).sync_feed(feed)
    again = FeedSync(other.factory).sync_feed(feed)
    assert first.new == 10 and again.not_modified
    assert advisory(other, PYSEC).feed_id == feed


# ------------------------------------------------------------------------------------ name map


def test_an_admin_mapping_makes_an_nvd_record_match(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    versions = ["2.9.0", "3.0.0", "4.4.3", "4.4.4", "5.0.2", "5.0.3"]
    add_artifacts(container, channel_id(container, admin), [("crowd", v, "0") for v in versions])
    sync(container, add_feed(container, admin, "nvd", nvd_page(tmp_path).as_uri(), "nvd"))
    assert matches(container) == {}
    rev = counts(container)["revision"]

    with transaction(container.factory) as session:
        row, done = NameMapService(session).add(admin, "Crowd", "cpe:2.3:a:atlassian:crowd:*:*")
        assert (row.conda_name, row.identifier, row.origin) == ("crowd", "atlassian:crowd", "admin")
    assert done.added == 3
    found = {v for (_, _, v, _) in matches(container)}
    assert found == {"3.0.0", "4.4.3", "5.0.2"}
    assert counts(container)["revision"] > rev

    with transaction(container.factory) as session:
        NameMapService(session).remove(admin, row.id)
    assert matches(container) == {}
    with container.factory() as session:
        assert session.scalar(select(func.count()).select_from(VulnTarget)) == 0


def test_suppressing_a_shipped_entry_and_importing(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    add_artifacts(container, channel_id(container, admin), [("aiohttp-x", "3.7.3", "0")])
    sync(
        container,
        add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv"),
    )
    csv_text = "conda,identifier,note\naiohttp-x,pkg:pypi/aiohttp,fork\n"
    with transaction(container.factory) as session:
        added, known, done = NameMapService(session).import_file(admin, csv_text.encode())
    assert (added, known) == (1, 0) and done.added > 0
    assert (PYSEC, "aiohttp-x", "3.7.3", "0") in matches(container)

    bad = "conda,identifier\nok-name,pkg:pypi/ok\nBad Name!,pkg:pypi/x\nfine,nonsense\n"
    before = counts(container)
    with pytest.raises(NameMapError) as info, transaction(container.factory) as session:
        NameMapService(session).import_file(admin, bad.encode())
    assert "line 3" in info.value.detail and "line 4" in info.value.detail
    assert "line 2" not in info.value.detail
    assert counts(container) == before

    with transaction(container.factory) as session:  # shipped: openssl -> openssl:openssl
        service = NameMapService(session)
        shipped = service.list(admin, conda_name="openssl", origin="shipped")
        assert [r.identifier for r in shipped] == ["openssl:openssl"]
        hidden, _ = service.remove(admin, shipped[0].id)
        assert hidden.identifier == "!openssl:openssl" and hidden.origin == "admin"
        store = VulnStore(session)
        assert "openssl" not in store.name_map().conda_names_for_cpe("openssl:openssl")
        service.remove(admin, hidden.id)
        store.invalidate_name_map()
        assert "openssl" in store.name_map().conda_names_for_cpe("openssl:openssl")


def test_the_pypi_name_of_a_python_package_is_learned(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    channel_id(container, admin)

    def upload(name: str, dist: str, depends: tuple[str, ...], **extra: Any) -> None:
        payload = (
            file(f"site-packages/{dist}-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\n"),
            file(f"site-packages/{dist}/__init__.py", b""),
        )
        spec = PackageSpec(
            name=name, version="1.0", build="py_0", depends=depends, payload=payload, **extra
        )
        folder = tmp_path / name
        folder.mkdir()
        add_package(container, admin, "internal", build_conda(folder, spec))

    upload("pytorch-x", "torch_x", ("python >=3.8",), index_extra={"noarch": "python"})
    upload("same-name", "same_name", ("python",))
    upload("no-python", "other_dist", ("libzlib",))
    upload("declared", "else_dist", ("python",), index_extra={"purls": ["pkg:pypi/declared-x"]})
    with transaction(container.factory) as session:
        ids = list(session.scalars(select(Artifact.id)))
        Matcher(session).match_artifacts(ids)
    with container.factory() as session:
        rows = {
            (r.conda_name, r.identifier)
            for r in session.scalars(select(NameMapEntry).where(NameMapEntry.origin == "metadata"))
        }
        assert rows == {("pytorch-x", "pkg:pypi/torch-x"), ("declared", "pkg:pypi/declared-x")}
        names = VulnStore(session).name_map()
        assert names.conda_names_for_purl("pkg:pypi/torch-x") == {"pytorch-x"}
        assert "same-name" in names.conda_names_for_purl("pkg:pypi/same-name")


# ------------------------------------------------------------------- untrusted bundle contents

VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
GOOD: dict[str, Any] = {
    "vuln_id": "TEST-2",
    "source": "osv",
    "aliases": ["CVE-2099-0002"],
    "summary": "a test advisory",
    "details": "details",
    "published": "2024-01-01T00:00:00+00:00",
    "modified": "2024-01-02T10:00:00Z",
    "withdrawn": None,
    "scores": [{"version": "3.1", "vector": VECTOR, "base_score": 9.8, "source": "osv"}],
    "cwes": ["CWE-79"],
    "references": [{"url": "https://example.org/x", "tags": ["WEB"]}],
    "affected": [
        {
            "ecosystem": "PyPI",
            "name": "example",
            "purl": "pkg:pypi/example",
            "ranges": [{"kind": "ecosystem", "start": "1.0", "end": "1.5"}],
            "versions": ["0.9"],
        }
    ],
}


def _affected(**change: Any) -> dict[str, Any]:
    return {**GOOD, "affected": [{**GOOD["affected"][0], **change}]}


def _scored(**change: Any) -> dict[str, Any]:
    return {**GOOD, "scores": [{**GOOD["scores"][0], **change}]}


BAD_RECORDS: list[tuple[dict[str, Any], str]] = [
    ({**GOOD, "kev": "no"}, "the record has unknown key(s): kev"),
    ({**GOOD, "summary": {}}, "summary must be a string or null"),
    ({**GOOD, "aliases": [1]}, "aliases[0]: the list holds strings only"),
    ({**GOOD, "aliases": "CVE-2099-0002"}, "aliases must be a list"),
    ({**GOOD, "published": "2024-01-01T00:00:00"}, "published needs a timezone offset"),
    ({**GOOD, "modified": "yesterday"}, "modified is not an ISO 8601 date"),
    ({**GOOD, "withdrawn": 1700000000}, "withdrawn must be an ISO 8601 date string or null"),
    ({**GOOD, "source": ""}, "source must be a string of 1-16 characters"),
    ({**GOOD, "references": [{"url": 5}]}, "references[0].url must be a string or null"),
    ({**GOOD, "affected": ["PyPI"]}, "affected[0] must be an object"),
    (_affected(ranges=[{"end": 5}]), "affected[0].ranges[0].end must be a version string"),
    (_affected(ranges=[{"start": ""}]), "affected[0].ranges[0].start must be a version string"),
    (_affected(ranges=[{"end_inclusive": "false"}]), "end_inclusive must be true or false"),
    (_affected(ranges=[{"kind": "git"}]), "ranges[0].kind must be one of ecosystem, semver"),
    (_affected(ranges=[{"events": []}]), "ranges[0] has unknown key(s): events"),
    (_affected(ranges={"end": "1"}), "affected[0].ranges must be a list"),
    (_affected(versions=[1]), "affected[0].versions[0]: the list holds version strings only"),
    (_affected(cpes=[None]), "affected[0].cpes[0]: the list holds strings only"),
    (_affected(default_status="maybe"), "default_status must be one of affected"),
    (_affected(name=["x"]), "affected[0].name must be a string or null"),
    (_scored(base_score=5.0), "scores[0].base_score 5.0 is not the 9.8 its vector gives"),
    (_scored(base_score="9.8"), "scores[0].base_score must be a number between 0 and 10"),
    (_scored(base_score=None), "scores[0].base_score must be a number"),
    (_scored(vector="CVSS:3.1/AV:N"), "CVSS vector 'CVSS:3.1/AV:N'"),
    (_scored(vector="nonsense"), "not a CVSS vector"),
    (_scored(version="3.0"), "stated as CVSS 3.0 but written as CVSS 3.1"),
    (_scored(version=3.1), "scores[0].version must be one of"),
    (_scored(stated_score=True), "scores[0].stated_score must be a number"),
    (_scored(severity="high"), "scores[0] has unknown key(s): severity"),
]


def _bundle_of(path: Path, *records: Any) -> Path:
    lines = b"\n".join(json.dumps(r).encode() for r in records)
    return _zip(path, {"vulnerabilities/000001.jsonl": lines})


def test_a_checked_record_is_stored_with_scores_computed(
    container: Container, tmp_path: Path
) -> None:
    good = {**GOOD, "best_score": 1.0, "severity": "low"}  # derived: ignored, recomputed
    with transaction(container.factory) as session:
        done = import_bundle(session, _bundle_of(tmp_path / "good.zip", good))
    assert done.added == 1
    row = advisory(container, "TEST-2")
    assert (row.best_score, row.severity) == (9.8, "critical")
    assert row.published is not None and row.published.utcoffset() is not None


def test_every_bad_record_is_a_bundle_error_naming_member_and_record(
    container: Container, tmp_path: Path
) -> None:
    before = counts(container)
    for number, (record, message) in enumerate(BAD_RECORDS):
        # a good record first: the bad one is on line 2
        path = _bundle_of(tmp_path / f"bad-{number}.zip", {**GOOD, "vuln_id": "TEST-OK"}, record)
        with (
            pytest.raises(BundleError, match=re.escape(message)) as info,
            transaction(container.factory) as session,
        ):
            import_bundle(session, path)
        detail = info.value.detail
        assert detail.startswith(
            "vulnerabilities/000001.jsonl: line 2: not an advisory record (TEST-2): "
        ), detail
        assert info.value.extra == {
            "member": "vulnerabilities/000001.jsonl",
            "line": 2,
            "record": "TEST-2",
        }
        assert counts(container) == before, message


def test_a_bad_record_in_a_json_list_is_named_by_its_index(
    container: Container, tmp_path: Path
) -> None:
    records = [GOOD, {**GOOD, "vuln_id": "TEST-3", "cwes": [79]}, 7]
    path = _zip(tmp_path / "list.zip", {"vulnerabilities/list.json": json.dumps(records).encode()})
    with pytest.raises(BundleError) as info, transaction(container.factory) as session:
        import_bundle(session, path)
    assert info.value.detail == (
        "vulnerabilities/list.json: line 1, record [1]: not an advisory record (TEST-3): "
        "cwes[0]: the list holds strings only"
    )
    assert info.value.extra["index"] == 1 and info.value.extra["record"] == "TEST-3"
    path = _zip(tmp_path / "seven.zip", {"vulnerabilities/list.json": b"[7, 8]"})
    with (
        pytest.raises(BundleError, match=r"record \[0\]: not an advisory record: the record must"),
        transaction(container.factory) as session,
    ):
        import_bundle(session, path)
    assert counts(container)["vulns"] == 0


def test_enrichment_and_name_map_rows_are_checked(container: Container, tmp_path: Path) -> None:
    before = counts(container)
    cases: list[tuple[str, Any, str]] = [
        ("enrichment.json", {"rows": [{"cve_id": CVE, "kev": "no"}]}, "rows[0] is not an"),
        ("enrichment.json", {"rows": [{"cve_id": CVE, "epss": True}]}, "rows[0] is not an"),
        (
            "name_map.json",
            {"entries": [{"conda": "crowd", "identifier": "atlassian:crowd", "note": "x" * 1001}]},
            "name_map.json: entries[0]: the note is longer than 1000 characters",
        ),
        (
            "name_map.json",
            {"entries": [{"conda": "crowd", "identifier": "atlassian:crowd", "note": 5}]},
            "entries[0]: 'note' must be a string",
        ),
        (
            "name_map.json",
            {"entries": [{"conda": 5, "identifier": "atlassian:crowd"}]},
            "entries[0]: needs 'conda' and 'identifier' strings",
        ),
    ]
    for number, (member, doc, message) in enumerate(cases):
        path = _zip(
            tmp_path / f"side-{number}.zip",
            {"vulnerabilities/a.jsonl": RECORD, member: json.dumps(doc).encode()},
        )
        with (
            pytest.raises(BundleError, match=re.escape(message)),
            transaction(container.factory) as session,
        ):
            import_bundle(session, path)
        assert counts(container) == before, message
    decision = {
        "vuln_id": "TEST-1",
        "package": "aiohttp",
        "version": "3.7.3",
        "builds": None,
        "status": "cleared",
        "note": "n/a",
        "by": "alice",
        "at": "2026-01-02T03:04:05+00:00",
    }
    bad_decisions: list[tuple[dict[str, Any], str]] = [
        ({**decision, "vuln_id": "NOPE-1"}, "decisions[0]: no advisory 'NOPE-1'"),
        ({**decision, "status": "fine"}, "decisions[0]: status must be one of"),
        ({**decision, "note": ""}, "decisions[0]: note must be a non-empty string"),
        ({**decision, "at": "2026-01-02T03:04:05"}, "decisions[0]: at must be an ISO 8601"),
        ({**decision, "extra": 1}, "decisions[0]: unknown field(s) extra"),
    ]
    for number, (bad, message) in enumerate(bad_decisions):
        path = _zip(
            tmp_path / f"decision-{number}.zip",
            {
                "vulnerabilities/a.jsonl": RECORD,
                "curations.json": json.dumps({"decisions": [bad]}).encode(),
            },
        )
        with (
            pytest.raises(BundleError, match=re.escape(message)),
            transaction(container.factory) as session,
        ):
            import_bundle(session, path)
        assert counts(container) == before, message
    note = {"conda": "crowd", "identifier": "atlassian:crowd", "note": "y" * 1000}  # at the limit
    path = _zip(
        tmp_path / "note-ok.zip", {"name_map.json": json.dumps({"entries": [note]}).encode()}
    )
    with transaction(container.factory) as session:
        assert import_bundle(session, path).name_map == 1


def _compressed(path: Path, method: int) -> Path:
    """A bundle whose advisory member is compressed with ``method``."""
    import hashlib

    data = b"\n".join([RECORD] * 50)
    files = {
        "vulnerabilities/a.jsonl": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    }
    manifest = {"format": "stockade-cve-bundle", "format_version": 1, "files": files}
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("manifest.json", json.dumps(manifest))
        out.writestr("vulnerabilities/a.jsonl", data, compress_type=method)
    return path


def _corrupt(path: Path, name: str) -> None:
    """Overwrite the middle of ``name``'s compressed bytes."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    raw = bytearray(path.read_bytes())
    offset = info.header_offset
    start = offset + 30 + int.from_bytes(raw[offset + 26 : offset + 28], "little")
    start += int.from_bytes(raw[offset + 28 : offset + 30], "little")
    for i in range(start + 4, start + info.compress_size - 2):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_only_stored_and_deflate_members_are_read(container: Container, tmp_path: Path) -> None:
    from stockade.vulns.bundlefile import read_member

    for method, label in ((zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")):
        path = _compressed(tmp_path / f"{label}.zip", method)
        with (
            pytest.raises(
                BundleError,
                match=f"a.jsonl: compressed with {label}: only stored and deflate members",
            ),
            transaction(container.factory) as session,
        ):
            import_zip(session, path)
        _corrupt(path, "vulnerabilities/a.jsonl")  # read anyway: any decompression error
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("vulnerabilities/a.jsonl")
            with pytest.raises(BundleError, match=r"a\.jsonl: cannot be read \("):
                read_member(archive, info)
    deflated = _compressed(tmp_path / "deflate.zip", zipfile.ZIP_DEFLATED)
    with transaction(container.factory) as session:
        assert import_bundle(session, deflated).added == 1
    _corrupt(deflated, "vulnerabilities/a.jsonl")
    with (
        pytest.raises(BundleError, match=r"a\.jsonl: cannot be read \("),
        transaction(container.factory) as session,
    ):
        import_bundle(session, deflated)


def test_a_csv_field_over_the_csv_limit_is_a_name_map_error(
    container: Container, admin: Principal
) -> None:
    before = counts(container)
    body = "conda,identifier,note\nok,pkg:pypi/ok,fine\nx,pkg:pypi/x," + "n" * 140_000 + "\n"
    with pytest.raises(NameMapError) as info, transaction(container.factory) as session:
        NameMapService(session).import_file(admin, body.encode())
    assert info.value.detail.startswith("line 3: not readable CSV: field larger than field limit")
    long_note = "conda,identifier,note\nx,pkg:pypi/x," + "n" * 1001 + "\n"
    with pytest.raises(NameMapError, match="line 2: the note is longer than 1000"):
        with transaction(container.factory) as session:
            NameMapService(session).import_file(admin, long_note.encode())
    assert counts(container) == before
