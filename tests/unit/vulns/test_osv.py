"""OSV parsing against the 983 PyPI advisories and 4 GitHub advisories, and odd input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stockade.vulns.errors import FeedError
from stockade.vulns.feeds import FeedWarning, parse_osv
from stockade.vulns.feeds.osv import intervals
from stockade.vulns.model import CvssVersion, RangeKind, Severity, VersionRange
from tests.unit.vulns.feeddata import OSV_GITHUB, OSV_PYPI, osv

GITHUB_BANDS = {"LOW": Severity.LOW, "MODERATE": Severity.MEDIUM, "HIGH": Severity.HIGH}


def test_every_pypi_advisory_parses_and_only_git_ranges_are_left_out() -> None:
    assert len(OSV_PYPI) == 983
    warnings: list[FeedWarning] = []
    parsed = [v for path in OSV_PYPI for v in parse_osv(path.read_bytes(), warnings=warnings)]
    assert len(parsed) == 983
    assert {w.kind for w in warnings} == {"ignored"}
    assert all("GIT range" in w.message for w in warnings)
    assert len(warnings) == 282
    assert sum(v.is_withdrawn for v in parsed) == 7
    assert all(v.source == "osv" and v.affected for v in parsed)
    assert all(a.ecosystem == "PyPI" and a.purl for v in parsed for a in v.affected)
    # every CVSS vector in the advisories scores (136 advisories carry one)
    assert sum(bool(v.scores) for v in parsed) == 136
    assert all(s.version in (CvssVersion.V3_0, CvssVersion.V3_1) for v in parsed for s in v.scores)


def test_pypi_advisories_parse_in_strict_mode() -> None:
    for path in OSV_PYPI:
        parse_osv(path.read_bytes(), strict=True)


def test_aiohttp_advisory_fields() -> None:
    adv = osv("osv-pypi/aiohttp/PYSEC-2021-76.yaml")
    assert adv.id == "PYSEC-2021-76"
    assert adv.aliases == ("CVE-2021-21330", "GHSA-v6wp-4m6f-gcjg")
    assert adv.ids[0] == "PYSEC-2021-76"
    assert adv.details.startswith("aiohttp is an asynchronous HTTP")
    assert adv.published == datetime(2021, 2, 26, 3, 15, tzinfo=UTC)
    assert adv.modified == datetime(2021, 3, 26, 20, 1, tzinfo=UTC)
    assert not adv.is_withdrawn
    (aff,) = adv.affected
    assert (aff.ecosystem, aff.name, aff.purl) == ("PyPI", "aiohttp", "pkg:pypi/aiohttp")
    assert aff.ranges == (VersionRange(RangeKind.ECOSYSTEM, None, True, "3.7.4", False),)
    assert "0.1" in aff.versions and "3.7.3" in aff.versions and "2.0.0rc1" in aff.versions
    assert adv.references[0].tags == ("FIX",)


def test_yaml_versions_stay_strings() -> None:
    """``- 1.10`` unquoted in YAML must not become the float 1.1."""
    doc = (
        b"id: X-1\naffected:\n- package: {name: p, ecosystem: PyPI}\n  versions:\n  - 1.10\n  - 2\n"
    )
    (adv,) = parse_osv(doc)
    assert adv.affected[0].versions == ("1.10", "2")


def test_withdrawn_advisory() -> None:
    adv = osv("osv-pypi/loguru/PYSEC-2022-15.yaml")
    assert adv.withdrawn == datetime(2022, 2, 22, 16, 15, 7, tzinfo=UTC)
    assert adv.affected[0].ranges == () and adv.affected[0].versions == ()


def test_github_advisories() -> None:
    parsed = {v.id: v for path in OSV_GITHUB for v in parse_osv(path.read_bytes(), strict=True)}
    assert set(parsed) == {
        "GHSA-2hjr-vmf3-xwvp",
        "GHSA-2jm2-2p35-rp3j",
        "GHSA-8hxh-r6f7-jf45",
        "GHSA-wjxc-pjx9-4wvm",
    }
    elastic = parsed["GHSA-2hjr-vmf3-xwvp"]
    assert [(s.version, s.base_score) for s in elastic.scores] == [
        (CvssVersion.V3_1, 5.2),
        (CvssVersion.V4, 4.1),
    ]
    assert elastic.best_score() is elastic.scores[1]
    assert elastic.cwes == ("CWE-532",)
    assert [a.ranges[0].end for a in elastic.affected] == ["7.17.16", "8.11.2"]
    assert elastic.affected[1].ranges[0].start == "8.0.0"
    assert parsed["GHSA-2jm2-2p35-rp3j"].scores[0].base_score == 8.8
    assert parsed["GHSA-wjxc-pjx9-4wvm"].scores == ()
    assert parsed["GHSA-wjxc-pjx9-4wvm"].aliases == ()


def test_github_stated_severity_agrees_with_the_computed_band() -> None:
    """GitHub states a band, not a score: the band of the computed score must agree."""
    for path in OSV_GITHUB:
        raw = json.loads(path.read_bytes())
        (adv,) = parse_osv(raw)
        if adv.scores:
            v3 = next(s for s in adv.scores if s.version is not CvssVersion.V4)
            assert v3.severity is GITHUB_BANDS[raw["database_specific"]["severity"]], adv.id


def _events(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    return list(pairs)


def test_intervals_from_events() -> None:
    eco = RangeKind.ECOSYSTEM
    got = intervals(
        _events(
            ("introduced", "0"), ("fixed", "1.5"), ("introduced", "2.0"), ("last_affected", "2.3")
        ),
        eco,
        letters=False,
    )
    assert got == [
        VersionRange(eco, None, True, "1.5", False),
        VersionRange(eco, "2.0", True, "2.3", True),
    ]
    # events out of order are evaluated in version order, as the OSV schema says
    shuffled = _events(
        ("introduced", "2.0"), ("fixed", "2.4"), ("introduced", "1.0"), ("fixed", "1.2")
    )
    assert intervals(shuffled, eco, letters=False) == [
        VersionRange(eco, "1.0", True, "1.2", False),
        VersionRange(eco, "2.0", True, "2.4", False),
    ]
    # an open interval runs to the end; a limit caps it
    assert intervals(_events(("introduced", "1.0")), eco, letters=False) == [
        VersionRange(eco, "1.0", True, None, False)
    ]
    assert intervals(_events(("introduced", "1.0"), ("limit", "3.0")), eco, letters=False) == [
        VersionRange(eco, "1.0", True, "3.0", False)
    ]
    assert intervals(_events(("introduced", "1.0"), ("limit", "*")), eco, letters=False) == [
        VersionRange(eco, "1.0", True, None, False)
    ]


def test_missing_id_is_an_error_naming_the_field() -> None:
    with pytest.raises(FeedError) as caught:
        parse_osv(b'{"summary": "no id", "affected": []}')
    assert caught.value.code == "vulns:bad-feed"
    assert caught.value.field == "id"
    assert "field id" in caught.value.detail


def test_wrong_types_are_errors_naming_record_and_field() -> None:
    with pytest.raises(FeedError, match=r"record X-1, field affected: expected a list"):
        parse_osv(b'{"id": "X-1", "affected": {"package": {}}}')
    with pytest.raises(FeedError, match=r"record X-2, field affected\[0\].package.name"):
        parse_osv(b'{"id": "X-2", "affected": [{"package": {"ecosystem": "PyPI"}}]}')
    with pytest.raises(FeedError, match="neither JSON nor YAML"):
        parse_osv(b"{id: [unclosed")


def test_bad_vector_is_skipped_with_a_warning_or_raises_when_strict() -> None:
    doc = {
        "id": "X-3",
        "severity": [
            {"type": "CVSS_V3", "score": "CVSS:3.1/AV:Z"},
            {"type": "Ubuntu", "score": "medium"},
            {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
        ],
        "affected": [],
        "unknown_field": {"is": "ignored"},
    }
    warnings: list[FeedWarning] = []
    (adv,) = parse_osv(doc, warnings=warnings)
    assert [s.base_score for s in adv.scores] == [9.8]
    assert [(w.kind, w.field) for w in warnings] == [
        ("invalid", "severity[0].score"),
        ("ignored", "severity[1]"),
    ]
    assert "CVSS:3.1/AV:Z" in warnings[0].message
    with pytest.raises(FeedError, match=r"record X-3, field severity\[0\].score: CVSS vector"):
        parse_osv(doc, strict=True)


def test_odd_but_valid_records_do_not_crash() -> None:
    warnings: list[FeedWarning] = []
    doc = [
        {"id": "X-4"},  # nothing but an id
        {"id": "X-5", "affected": [{"ranges": [{"type": "GIT", "events": []}]}]},  # no package
        {
            "id": "X-6",
            "published": "yesterday",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "p"},
                    "ranges": [
                        {"type": "ECOSYSTEM", "events": [{"fixed": "1.0", "introduced": "0"}]}
                    ],
                }
            ],
        },
    ]
    parsed = parse_osv(json.dumps(doc).encode(), warnings=warnings)
    assert [v.id for v in parsed] == ["X-4", "X-5", "X-6"]
    assert parsed[1].affected == ()
    assert parsed[2].published is None
    assert parsed[2].affected[0].ranges == ()  # an event with two keys is not one event
    assert {w.field for w in warnings} == {
        "affected[0].package",
        "published",
        "affected[0].ranges[0].events[0]",
    }
