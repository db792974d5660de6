"""CVE JSON 5: OpenSSL's records, scores from CNA and ADP metrics, statuses and odd input."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from stockade.vulns.errors import FeedError
from stockade.vulns.feeds import FeedWarning, parse_cve5
from stockade.vulns.feeds.cve5 import ecosystem_of_collection
from stockade.vulns.model import CvssVersion, RangeKind, Status, VersionRange
from stockade.vulns.ranges import affects, status_of
from tests.unit.vulns.feeddata import CVE5, cve5


def test_every_openssl_record_parses_strictly() -> None:
    parsed = [v for path in CVE5 for v in parse_cve5(path.read_bytes(), strict=True)]
    assert [v.id for v in parsed] == [p.stem for p in CVE5]
    for vuln in parsed:
        (openssl,) = vuln.affected
        assert openssl.cpe_pair == "openssl:openssl"
        assert openssl.default_status is Status.UNAFFECTED
        assert vuln.scores == ()  # OpenSSL states its own levels ("Low", "Moderate"), not CVSS


def test_record_fields() -> None:
    vuln = cve5("CVE-2022-3996")
    assert vuln.source == "cve5"
    assert vuln.summary == "X.509 Policy Constraints Double Locking"
    assert vuln.details.startswith("If an X.509 certificate contains a malformed policy")
    assert vuln.published == datetime(2022, 12, 13, 7, 0, tzinfo=UTC)
    assert vuln.cwes == ("CWE-667",)
    assert vuln.references[0].tags == ("vendor-advisory",)
    assert vuln.affected[0].ranges == (
        VersionRange(RangeKind.SEMVER, "3.0.0", True, "3.0.7", True, Status.AFFECTED),
    )


@pytest.mark.parametrize(
    ("cve_id", "affected", "unaffected"),
    [
        ("CVE-2002-0655", ["0.9.6", "0.9.6a", "0.9.6d"], ["0.9.6e", "0.9.6m", "0.9.5", "0.9.7"]),
        (
            "CVE-2006-2937",
            ["0.9.7", "0.9.7k", "0.9.8", "0.9.8c"],
            ["0.9.7l", "0.9.7m", "0.9.8d", "0.9.6", "1.0.0"],
        ),
        ("CVE-2010-0433", ["0.9.8", "0.9.8m"], ["0.9.8n", "0.9.8za", "1.0.0"]),
        (
            "CVE-2015-0206",
            ["1.0.1", "1.0.1a", "1.0.1j", "1.0.0", "1.0.0o"],
            ["1.0.1k", "1.0.1u", "1.0.0p", "1.0.2", "0.9.8zh", "1.1.1w"],
        ),
        ("CVE-2022-3996", ["3.0.0", "3.0.5", "3.0.7"], ["3.0.8", "3.1.0", "1.1.1s", "2.9.9"]),
        (
            "CVE-2025-9231",
            ["3.5.0", "3.5.3", "3.4.2", "3.3.4", "3.2.0", "3.2.5"],
            ["3.5.4", "3.4.3", "3.3.5", "3.2.6", "3.1.8", "3.0.17", "3.6.0", "1.1.1w"],
        ),
    ],
)
def test_openssl_ranges_with_letter_releases(
    cve_id: str, affected: list[str], unaffected: list[str]
) -> None:
    (openssl,) = cve5(cve_id).affected
    for version in affected:
        assert affects(openssl, version), (cve_id, version)
    for version in unaffected:
        assert not affects(openssl, version), (cve_id, version)


def _record(**cna: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dataType": "CVE_RECORD",
        "dataVersion": "5.1",
        "cveMetadata": {"cveId": "CVE-2099-0001", "state": "PUBLISHED"},
        "containers": {"cna": {"providerMetadata": {"shortName": "acme"}, **cna}},
    }
    return base


METRICS = [
    {
        "cvssV3_1": {
            "version": "3.1",
            "baseScore": 9.8,
            "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        }
    },
    {
        "cvssV3_0": {
            "version": "3.0",
            "baseScore": 8.8,
            "vectorString": "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H",
        }
    },
    {
        "cvssV2_0": {
            "version": "2.0",
            "baseScore": 4.3,
            "vectorString": "AV:N/AC:M/Au:N/C:N/I:P/A:N",
        }
    },
    {
        "cvssV4_0": {
            "version": "4.0",
            "baseScore": 4.1,
            "vectorString": "CVSS:4.0/AV:A/AC:L/AT:P/PR:L/UI:P/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N",
        }
    },
    {"format": "other", "other": {"type": "x", "content": {"text": "Low"}}},
]


def test_cna_and_adp_metrics_score_as_stated() -> None:
    record = _record(metrics=METRICS, affected=[])
    record["containers"]["adp"] = [
        {
            "providerMetadata": {"shortName": "CISA-ADP"},
            "metrics": [
                {
                    "cvssV3_1": {
                        "baseScore": 7.5,
                        "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
                    }
                }
            ],
            "problemTypes": [
                {"descriptions": [{"lang": "en", "description": "CWE-400 Uncontrolled"}]}
            ],
        }
    ]
    (vuln,) = parse_cve5(record, strict=True)
    assert [(s.version, s.source, s.base_score) for s in vuln.scores] == [
        (CvssVersion.V3_1, "acme", 9.8),
        (CvssVersion.V3_0, "acme", 8.8),
        (CvssVersion.V2, "acme", 4.3),
        (CvssVersion.V4, "acme", 4.1),
        (CvssVersion.V3_1, "CISA-ADP", 7.5),
    ]
    assert all(s.stated_score == s.base_score for s in vuln.scores)
    assert vuln.best_score().version is CvssVersion.V4  # type: ignore[union-attr]
    assert vuln.cwes == ("CWE-400",)


def test_statuses_default_status_and_changes() -> None:
    affected = [
        {
            "collectionURL": "https://pypi.org",
            "packageName": "example",
            "vendor": "n/a",
            "product": "Example Lib",
            "defaultStatus": "affected",
            "versions": [
                {
                    "version": "0",
                    "lessThan": "1.0",
                    "status": "unaffected",
                    "versionType": "python",
                },
                {"version": "1.5", "status": "unaffected"},
                {
                    "version": "2.0",
                    "lessThan": "*",
                    "status": "affected",
                    "versionType": "semver",
                    "changes": [
                        {"at": "2.3.1", "status": "unaffected"},
                        {"at": "2.4", "status": "affected"},
                    ],
                },
                {
                    "version": "3.0",
                    "lessThanOrEqual": "3.1.*",
                    "status": "unaffected",
                    "versionType": "custom",
                },
                {"version": "abc123", "status": "affected", "versionType": "git"},
            ],
        }
    ]
    warnings: list[FeedWarning] = []
    (vuln,) = parse_cve5(_record(affected=affected), warnings=warnings)
    (pkg,) = vuln.affected
    assert (pkg.ecosystem, pkg.name, pkg.vendor, pkg.product) == (
        "PyPI",
        "example",
        None,
        "example_lib",
    )
    assert [w.kind for w in warnings] == ["ignored"]
    expect = {
        "0.9": Status.UNAFFECTED,
        "1.0": Status.AFFECTED,  # default
        "1.5": Status.UNAFFECTED,  # exact entry
        "1.6": Status.AFFECTED,
        "2.0": Status.AFFECTED,
        "2.3.1": Status.UNAFFECTED,  # changed at 2.3.1
        "2.3.9": Status.UNAFFECTED,
        "2.4": Status.AFFECTED,  # changed back at 2.4
        "3.1.7": Status.UNAFFECTED,  # within 3.0 .. 3.1.* (an unaffected range wins)
        "3.2": Status.AFFECTED,
        "not a version!": Status.UNKNOWN,
    }
    assert {v: status_of(pkg, v) for v in expect} == expect


def test_default_status_is_unknown_when_absent() -> None:
    (vuln,) = parse_cve5(_record(affected=[{"vendor": "v", "product": "p"}]))
    assert vuln.affected[0].default_status is Status.UNKNOWN
    assert not affects(vuln.affected[0], "1.0")


def test_rejected_record_is_withdrawn() -> None:
    record = {
        "dataType": "CVE_RECORD",
        "cveMetadata": {
            "cveId": "CVE-2099-0002",
            "state": "REJECTED",
            "dateRejected": "2023-01-02T03:04:05",
        },
        "containers": {"cna": {"rejectedReasons": [{"lang": "en", "value": "duplicate"}]}},
    }
    (vuln,) = parse_cve5(record)
    assert vuln.withdrawn == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert vuln.affected == ()


def test_collection_urls() -> None:
    assert ecosystem_of_collection("https://pypi.org/") == "PyPI"
    assert ecosystem_of_collection("https://registry.npmjs.org") == "npm"
    assert ecosystem_of_collection("https://example.com/repo") is None


def test_odd_records() -> None:
    with pytest.raises(FeedError, match=r"field cveMetadata.cveId"):
        parse_cve5({"cveMetadata": {}, "containers": {"cna": {}}})
    with pytest.raises(FeedError, match=r"record CVE-2099-0001, field containers.cna"):
        parse_cve5({"cveMetadata": {"cveId": "CVE-2099-0001"}, "containers": {}})
    record = _record(
        affected=[{"vendor": "v", "product": "p", "versions": [{"status": "affected"}]}]
    )
    with pytest.raises(FeedError, match=r"affected\[0\].versions\[0\].version"):
        parse_cve5(record)
    bad_vector = _record(metrics=[{"cvssV3_1": {"vectorString": "CVSS:3.1/AV:N", "baseScore": 1}}])
    warnings: list[FeedWarning] = []
    (vuln,) = parse_cve5(copy.deepcopy(bad_vector), warnings=warnings)
    assert vuln.scores == () and warnings[0].field == "containers.cna.metrics[0].cvssV3_1"
    with pytest.raises(FeedError, match=re.escape("CVSS:3.1/AV:N")):
        parse_cve5(bad_vector, strict=True)
    nameless = _record(affected=[{"vendor": "n/a", "product": "n/a", "versions": []}])
    warnings = []
    (vuln,) = parse_cve5(nameless, warnings=warnings)
    assert vuln.affected == () and "names no product" in warnings[0].message
