"""Feeds synced from the real test data, matched against artifacts with the advisories' versions."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.vulns.feeds import parse_cve5, parse_nvd
from stockade.vulns.feedsync import FeedSync
from stockade.vulns.models import (
    ArtifactVulnSummary,
    NameMapEntry,
    VulnFeed,
    VulnMatch,
    VulnTarget,
)
from stockade.vulns.models import Vulnerability as VulnRow
from tests.integration.vulns.support import (
    VULNS,
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
    sync,
)

PACKAGES = ("aiohttp", "jinja2")


def _expectations(folder: Path) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """From the raw YAML: ``(id, name, version)`` listed as affected, and ones not affected.

    Not affected: the fixed versions, and every listed version of a withdrawn advisory.
    """
    affected: set[tuple[str, str, str]] = set()
    fixed: set[tuple[str, str, str]] = set()
    for path in sorted(folder.rglob("*.yaml")):
        doc = yaml.load(path.read_bytes(), Loader=yaml.BaseLoader)
        for entry in doc.get("affected", []):
            name = entry["package"]["name"].lower()
            listed = entry.get("versions", [])
            for version in listed[:1] + listed[-1:]:
                (fixed if doc.get("withdrawn") else affected).add((doc["id"], name, version))
            for rng in entry.get("ranges", []):
                if rng["type"] != "ECOSYSTEM":
                    continue
                for event in rng["events"]:
                    if "fixed" in event and event["fixed"] not in listed:
                        fixed.add((doc["id"], name, event["fixed"]))
    return affected, fixed


def test_osv_listed_versions_match_and_fixed_ones_do_not(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    folder = osv_folder(tmp_path, *PACKAGES)
    affected, fixed = _expectations(folder)
    versions = {(n, v) for _, n, v in affected | fixed} | {(n, "99.0") for n in PACKAGES}
    chan = channel_id(container, admin)
    add_artifacts(container, chan, [(n, v, "py_0") for n, v in sorted(versions)], match=False)
    feed = add_feed(container, admin, "pypa", folder.as_uri(), "osv")

    counts = sync(container, feed)

    assert counts.new == len(list(folder.rglob("*.yaml"))) == 14
    assert counts.failed == 0
    assert counts.matches_added > 0
    found = matches(container)
    for vuln_id, name, version in sorted(affected):
        assert found.get((vuln_id, name, version, "py_0")) == "reported", (vuln_id, version)
    for vuln_id, name, version in sorted(fixed):
        assert (vuln_id, name, version, "py_0") not in found, (vuln_id, version)
    assert not any(v == "99.0" for _, _, v, _ in found)
    assert counts.matches_added == len(found)


def test_resync_unchanged_folder_is_not_modified(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    feed = add_feed(container, admin, "pypa", osv_folder(tmp_path, "jinja2").as_uri(), "osv")
    first = sync(container, feed)
    again = sync(container, feed)
    assert first.new == 5
    assert again.not_modified
    assert (again.new, again.changed, again.matches_added) == (0, 0, 0)
    with container.factory() as session:
        row = session.get(VulnFeed, feed)
        assert row is not None
        assert row.last_status == "unchanged"
        assert row.content_sha256 is not None


def test_changed_record_is_stored_again_and_others_skipped(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    folder = osv_folder(tmp_path, "jinja2")
    feed = add_feed(container, admin, "pypa", folder.as_uri(), "osv")
    sync(container, feed)
    record = next(folder.rglob("*.yaml"))
    record.write_text(record.read_text().replace("modified:", "summary: edited\nmodified:", 1))
    counts = sync(container, feed)
    assert (counts.new, counts.changed, counts.unchanged) == (0, 1, 4)


def test_nvd_and_cve5_scores_equal_the_feeds(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    nvd = add_feed(container, admin, "nvd", (VULNS / "nvd-api-2.0").as_uri(), "nvd")
    counts = sync(container, nvd)
    assert counts.failed == 0
    assert counts.new == 200 + 200 + 38 + 3  # cves-pypi-aliases.json: three CVEs OSV aliases
    stated = {}
    for name in (
        "cves-1999.json",
        "cves-2023.json",
        "vunnel-full-page.json",
        "cves-pypi-aliases.json",
    ):
        for vuln in parse_nvd((VULNS / "nvd-api-2.0" / name).read_bytes()):
            best = vuln.best_score()
            stated[vuln.id] = best.stated_score if best is not None else None
    with container.factory() as session:
        query = select(VulnRow.vuln_id, VulnRow.best_score)
        rows: dict[str, float | None] = {}
        for vuln_id, best_score in session.execute(query):
            rows[vuln_id] = best_score
        status = session.scalar(select(VulnFeed.last_status).where(VulnFeed.id == nvd))
    assert status == "ok"
    assert sum(1 for s in stated.values() if s is not None) > 300
    for vuln_id, score in stated.items():
        assert rows[vuln_id] == score, vuln_id
    with container.factory() as session:
        severity = session.scalar(
            select(VulnRow.severity).where(VulnRow.vuln_id == "CVE-2022-41880")
        )
    assert severity == "critical"  # 9.1


def test_broken_file_is_counted_and_the_rest_stored(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    folder = osv_folder(tmp_path, "jinja2")
    (folder / "broken.json").write_text("{not json")
    feed = add_feed(container, admin, "pypa", folder.as_uri(), "osv")
    counts = sync(container, feed)
    assert (counts.new, counts.failed) == (5, 1)
    assert counts.errors[0].startswith("broken.json: ")
    with container.factory() as session:
        row = session.get(VulnFeed, feed)
        assert row is not None
        assert (row.last_status, bool(row.last_error)) == ("partial", True)


def test_cve5_openssl_letter_releases(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    chan = channel_id(container, admin)
    versions = ["1.0.1", "1.0.1j", "1.0.1k", "1.0.0o", "1.0.0p", "3.0.7", "3.0.8", "3.5.3", "3.5.4"]
    add_artifacts(container, chan, [("openssl", v, "h0") for v in versions], match=False)
    feed = add_feed(container, admin, "openssl", (VULNS / "cve-json-5").as_uri(), "cve5")
    counts = sync(container, feed)
    assert counts.new == 6
    found = {(v, ver) for v, _, ver, _ in matches(container)}
    assert ("CVE-2015-0206", "1.0.1") in found
    assert ("CVE-2015-0206", "1.0.1j") in found
    assert ("CVE-2015-0206", "1.0.1k") not in found  # fixed
    assert ("CVE-2015-0206", "1.0.0o") in found
    assert ("CVE-2015-0206", "1.0.0p") not in found
    assert ("CVE-2022-3996", "3.0.7") in found  # lessThanOrEqual 3.0.7
    assert ("CVE-2022-3996", "3.0.8") not in found
    assert ("CVE-2025-9231", "3.5.3") in found
    assert ("CVE-2025-9231", "3.5.4") not in found
    for path in sorted((VULNS / "cve-json-5").glob("*.json")):
        (vuln,) = parse_cve5(path.read_bytes())
        best = vuln.best_score()
        with container.factory() as session:
            stored = session.scalar(select(VulnRow.best_score).where(VulnRow.vuln_id == vuln.id))
        assert stored == (best.base_score if best is not None else None)


def test_artifact_added_after_sync_is_matched(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    feed = add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv")
    sync(container, feed)
    assert matches(container) == {}
    chan = channel_id(container, admin)
    (new,) = add_artifacts(container, chan, [("aiohttp", "3.7.3", "py_0")])
    found = matches(container)
    assert found[("PYSEC-2021-76", "aiohttp", "3.7.3", "py_0")] == "reported"
    with container.factory() as session:
        summary = session.get(ArtifactVulnSummary, new)
        assert summary is not None
        assert summary.worst_status == "reported"
        assert summary.counts == {"reported": sum(1 for k in found if k[2] == "3.7.3")}


def test_withdrawn_advisory_removes_matches(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    folder = osv_folder(tmp_path, "aiohttp")
    chan = channel_id(container, admin)
    (art,) = add_artifacts(container, chan, [("aiohttp", "3.7.3", "py_0")], match=False)
    feed = add_feed(container, admin, "pypa", folder.as_uri(), "osv")
    sync(container, feed)
    assert ("PYSEC-2021-76", "aiohttp", "3.7.3", "py_0") in matches(container)
    before = len(matches(container))
    record = folder / "aiohttp" / "PYSEC-2021-76.yaml"
    record.write_text(record.read_text() + 'withdrawn: "2024-01-01T00:00:00Z"\n')

    counts = sync(container, feed)

    assert (counts.changed, counts.withdrawn, counts.matches_removed) == (1, 1, 1)
    assert ("PYSEC-2021-76", "aiohttp", "3.7.3", "py_0") not in matches(container)
    assert len(matches(container)) == before - 1
    with container.factory() as session:
        row = session.scalar(select(VulnRow).where(VulnRow.vuln_id == "PYSEC-2021-76"))
        assert row is not None
        assert row.withdrawn is not None
        targets = session.scalar(
            select(func.count())
            .select_from(VulnTarget)
            .where(VulnTarget.vulnerability_id == row.id)
        )
        assert targets == 0
        summary = session.get(ArtifactVulnSummary, art)
        assert summary is not None
        assert summary.counts["reported"] == before - 1


def test_index_purls_teach_the_name_map(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """A package declaring ``purls`` in index.json is matched under that PyPI name."""
    from tests.factories.packages import PackageSpec, build_conda
    from tests.integration.conftest import add_package

    feed = add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv")
    sync(container, feed)
    channel_id(container, admin)
    spec = PackageSpec(
        name="aiohttp-server",
        version="3.7.3",
        build="py_0",
        index_extra={"purls": ["pkg:pypi/aiohttp@3.7.3"]},
    )
    add_package(container, admin, "internal", build_conda(tmp_path, spec))
    with transaction(container.factory) as session:
        from stockade.channels.models import Artifact
        from stockade.vulns.matcher import Matcher

        ids = list(session.scalars(select(Artifact.id).where(Artifact.name == "aiohttp-server")))
        Matcher(session).match_artifacts(ids)
        learned = session.scalar(
            select(NameMapEntry.origin).where(
                NameMapEntry.conda_name == "aiohttp-server",
                NameMapEntry.identifier == "pkg:pypi/aiohttp",
            )
        )
    assert learned == "metadata"
    assert ("PYSEC-2021-76", "aiohttp-server", "3.7.3", "py_0") in matches(container)


def test_https_feed_conditional_get(container: Container, admin: Principal, tmp_path: Path) -> None:
    body = (VULNS / "cve-json-5" / "CVE-2022-3996.json").read_bytes()
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.headers))
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, content=body, headers={"ETag": '"v1"'})

    feed = add_feed(container, admin, "cna", "https://feeds.example/openssl.json", "cve5")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        first = FeedSync(container.factory, client=client).sync_feed(feed)
        second = FeedSync(container.factory, client=client).sync_feed(feed)
    assert first.new == 1
    assert second.not_modified
    assert "if-none-match" not in seen[0]
    assert seen[1]["if-none-match"] == '"v1"'


def test_feed_urls_are_https_or_file(container: Container, admin: Principal) -> None:
    from stockade.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        add_feed(container, admin, "plain", "http://feeds.example/x.json", "osv")
    with pytest.raises(InvalidInputError):
        add_feed(container, admin, "odd", "file:///tmp/x", "xml")


def test_match_rows_cascade_with_artifacts(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    feed = add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv")
    sync(container, feed)
    chan = channel_id(container, admin)
    (art,) = add_artifacts(container, chan, [("aiohttp", "3.7.3", "py_0")])
    with transaction(container.factory) as session:
        from stockade.channels.models import Artifact

        row = session.get(Artifact, art)
        assert row is not None
        session.delete(row)
    with container.factory() as session:
        assert session.scalar(select(func.count()).select_from(VulnMatch)) == 0
        assert session.get(ArtifactVulnSummary, art) is None
