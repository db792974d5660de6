"""NVD API 2.0 pages: every record parses, every vector scores as NVD states, CPE configurations."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stockade.vulns.errors import FeedError
from stockade.vulns.feeds import FeedWarning, parse_nvd
from stockade.vulns.feeds.nvd import parse_cpe
from stockade.vulns.model import CvssVersion, RangeKind, Severity, VersionRange
from stockade.vulns.ranges import affects
from tests.unit.vulns.feeddata import NVD_PAGES, nvd_page


@pytest.mark.parametrize("path", NVD_PAGES, ids=lambda p: p.name)
def test_page_parses_strictly_with_every_record(path: Path) -> None:
    raw = json.loads(path.read_bytes())
    warnings: list[FeedWarning] = []
    parsed = parse_nvd(path.read_bytes(), warnings=warnings, strict=True)
    assert [v.id for v in parsed] == [item["cve"]["id"] for item in raw["vulnerabilities"]]
    assert warnings == []


@pytest.mark.parametrize("path", NVD_PAGES, ids=lambda p: p.name)
def test_every_computed_score_equals_the_stated_score(path: Path) -> None:
    raw = json.loads(path.read_bytes())
    stated = [
        (item["cve"]["id"], m["cvssData"]["vectorString"], m["cvssData"]["baseScore"])
        for item in raw["vulnerabilities"]
        for metrics in item["cve"].get("metrics", {}).values()
        for m in metrics
    ]
    computed = [(v.id, s.vector, s.base_score) for v in parse_nvd(raw) for s in v.scores]
    assert sorted(computed) == sorted(stated)
    assert all(s.stated_score == s.base_score for v in parse_nvd(raw) for s in v.scores)


def test_vectors_seen_across_pages() -> None:
    versions = {s.version for p in NVD_PAGES for v in parse_nvd(p.read_bytes()) for s in v.scores}
    assert versions == {CvssVersion.V2, CvssVersion.V3_0, CvssVersion.V3_1}


def test_record_fields() -> None:
    cve = nvd_page("cves-2023.json")["CVE-2022-43781"]
    assert cve.source == "nvd"
    assert cve.details.startswith("There is a command injection vulnerability")
    assert cve.summary == ""
    assert cve.published == datetime(2022, 11, 17, 0, 15, 18, 483000, tzinfo=UTC)
    assert cve.cwes == ("CWE-77",)
    assert cve.severity is Severity.CRITICAL
    assert cve.best_score().base_score == 9.8  # type: ignore[union-attr]
    assert cve.references[0].tags == ("Mitigation", "Release Notes", "Vendor Advisory")


def test_primary_assessment_comes_first() -> None:
    cve = nvd_page("cves-2023.json")["CVE-2022-4051"]
    assert [(s.source, s.base_score) for s in cve.scores] == [
        ("nvd@nist.gov", 9.8),
        ("cna@vuldb.com", 6.3),
    ]
    assert cve.best_score().source == "nvd@nist.gov"  # type: ignore[union-attr]


def test_rejected_records_are_withdrawn_and_v2_only_records_use_spec_bands() -> None:
    page = nvd_page("cves-1999.json")
    assert sorted(k for k, v in page.items() if v.is_withdrawn) == [
        "CVE-1999-0335",
        "CVE-1999-1056",
        "CVE-1999-1310",
    ]
    sendmail = page["CVE-1999-0095"]
    assert sendmail.scores[0].version is CvssVersion.V2
    assert sendmail.severity is Severity.CRITICAL  # 10.0; NVD's v2 label says HIGH
    assert sendmail.cwes == ()  # NVD-CWE-Other is not a CWE id


def test_cpe_ranges_with_start_and_end_bounds() -> None:
    (bitbucket,) = nvd_page("cves-2023.json")["CVE-2022-43781"].affected
    assert bitbucket.cpe_pair == "atlassian:bitbucket"
    assert len(bitbucket.ranges) == 8
    assert bitbucket.ranges[0] == VersionRange(RangeKind.CUSTOM, "7.0.0", True, "7.6.19", False)
    for version in ("7.0.0", "7.6.18", "7.7.0", "7.17.11", "8.0.4", "8.4.1"):
        assert affects(bitbucket, version), version
    for version in ("6.10.17", "7.6.19", "7.6.20", "7.17.12", "7.21.6", "8.0.5", "8.4.2", "9.0.0"):
        assert not affects(bitbucket, version), version


def test_cpe_end_including_and_exact_versions() -> None:
    bash, tcsh = nvd_page("cves-1999.json")["CVE-1999-1383"].affected
    assert bash.cpe_pair == "gnu:bash" and tcsh.cpe_pair == "tcsh:tcsh"
    assert affects(bash, "1.14.6") and affects(bash, "1.0")
    assert not affects(bash, "1.14.7") and not affects(bash, "2.0")
    assert affects(tcsh, "6.05") and affects(tcsh, "6.5")  # conda: 6.05 == 6.5
    assert not affects(tcsh, "6.06")
    (sendmail,) = nvd_page("cves-1999.json")["CVE-1999-0095"].affected
    assert sendmail.versions == ("5.58",) and sendmail.ranges == ()


def test_non_vulnerable_platform_matches_are_not_products() -> None:
    (firmware,) = nvd_page("cves-2023.json")["CVE-2022-40881"].affected
    assert firmware.cpe_pair == "contec:solarview_compact_firmware"
    assert firmware.versions == ("6.00",)


def test_parse_cpe() -> None:
    cpe = parse_cpe("cpe:2.3:a:nodejs:node.js:16.13.0:*:*:*:lts:*:*:*")
    assert cpe is not None
    assert (cpe.part, cpe.vendor, cpe.product, cpe.version) == ("a", "nodejs", "node.js", "16.13.0")
    escaped = parse_cpe(r"cpe:2.3:a:foo\:bar:baz:1.0:rc1:*:*:*:*:*:*")
    assert escaped is not None and (escaped.vendor, escaped.update) == ("foo:bar", "rc1")
    assert parse_cpe("cpe:/a:openssl:openssl:1.0") is None
    assert parse_cpe("cpe:2.3:a:::1.0:*:*:*:*:*:*:*") is None


def _page(*matches: dict[str, object]) -> dict[str, object]:
    node = {"operator": "OR", "negate": False, "cpeMatch": list(matches)}
    cve = {"id": "CVE-2000-0001", "configurations": [{"nodes": [node]}]}
    return {"vulnerabilities": [{"cve": cve}]}


def test_version_wildcards_and_updates() -> None:
    (cve,) = parse_nvd(
        _page(
            {"vulnerable": True, "criteria": "cpe:2.3:a:v:any:*:*:*:*:*:*:*:*"},
            {"vulnerable": True, "criteria": "cpe:2.3:a:v:none:-:*:*:*:*:*:*:*"},
            {"vulnerable": True, "criteria": "cpe:2.3:a:v:pre:2.7.0:rc1:*:*:*:*:*:*"},
            {"vulnerable": True, "criteria": "cpe:2.3:a:v:sp:1.0:sp1:*:*:*:*:*:*"},
            {
                "vulnerable": True,
                "criteria": "cpe:2.3:a:v:lo:*:*:*:*:*:*:*:*",
                "versionStartExcluding": "1.0",
            },
        )
    )
    any_, none, pre, sp, lo = cve.affected
    assert any_.ranges == (VersionRange(RangeKind.CUSTOM),) and affects(any_, "99.1")
    assert none.ranges == () and none.versions == () and not affects(none, "1.0")
    assert pre.versions == ("2.7.0rc1",) and affects(pre, "2.7.0rc1") and not affects(pre, "2.7.0")
    assert sp.versions == ("1.0",)
    assert not affects(lo, "1.0") and affects(lo, "1.0.1")


def test_bad_cpe_warns_or_raises_when_strict() -> None:
    page = _page({"vulnerable": True, "criteria": "cpe:2.3:a:broken"})
    warnings: list[FeedWarning] = []
    (cve,) = parse_nvd(page, warnings=warnings)
    assert cve.affected == ()
    assert warnings[0].field == "configurations[0].nodes[0].cpeMatch[0].criteria"
    with pytest.raises(FeedError, match=r"record CVE-2000-0001, field configurations\[0\]"):
        parse_nvd(page, strict=True)


def test_bad_vector_in_nvd_names_record_and_field() -> None:
    metric = {
        "source": "x",
        "type": "Primary",
        "cvssData": {"version": "3.1", "vectorString": "CVSS:3.1/AV:N"},
    }
    page = {
        "vulnerabilities": [
            {"cve": {"id": "CVE-2000-0002", "metrics": {"cvssMetricV31": [metric]}}}
        ]
    }
    warnings: list[FeedWarning] = []
    (cve,) = parse_nvd(page, warnings=warnings)
    assert cve.scores == ()
    assert warnings[0].field == "metrics.cvssMetricV31[0].cvssData"
    with pytest.raises(FeedError, match=r"record CVE-2000-0002.*CVSS:3.1/AV:N"):
        parse_nvd(page, strict=True)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"vulnerabilities": {}}', "field vulnerabilities: expected a list"),
        (b'{"vulnerabilities": [{"cve": {"published": "2020-01-01"}}]}', "field id"),
        (b'{"vulnerabilities": [{"nope": 1}]}', "record #0, field cve"),
        (b'{"vulnerabilities": [{"cve": {"id": "CVE-1", "metrics": []}}]}', "field metrics"),
    ],
)
def test_malformed_pages(doc: bytes, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse_nvd(doc)
