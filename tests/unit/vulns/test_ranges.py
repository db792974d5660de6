"""Range evaluation with conda ordering, on real OSV advisories and on the normalisation rules."""

from __future__ import annotations

import dataclasses

import pytest

from stockade.vulns.feeds import parse_osv
from stockade.vulns.model import Affected, RangeKind, Status, VersionRange
from stockade.vulns.ranges import affects, comparable, normalise, status_of
from tests.unit.vulns.feeddata import OSV_PYPI, osv

# Advisories whose explicit ``versions`` list disagrees with their own ranges under PEP 440 as
# well (pre-releases before ``introduced``, the fixed version listed), or lists strings that are
# no version at all. The union (versions OR ranges) is what counts; see the test below.
INCONSISTENT = {"PYSEC-2023-61", "PYSEC-2023-177", "PYSEC-2020-341", "PYSEC-2019-102"}


def test_every_listed_version_falls_in_the_advisory_ranges() -> None:
    """60,681 listed versions of the 983 PyPI advisories, checked against the ranges alone."""
    checked = 0
    outside: set[str] = set()
    for path in OSV_PYPI:
        (adv,) = parse_osv(path.read_bytes())
        for entry in adv.affected:
            if not entry.ranges:
                continue
            ranges_only = dataclasses.replace(entry, versions=())
            for version in entry.versions:
                checked += 1
                if not affects(ranges_only, version):
                    outside.add(adv.id)
    assert checked == 60681
    assert outside == INCONSISTENT


def test_fixed_versions_are_not_affected_unless_listed() -> None:
    for path in OSV_PYPI:
        (adv,) = parse_osv(path.read_bytes())
        for entry in adv.affected:
            for rng in entry.ranges:
                if rng.end is not None and not rng.end_inclusive and rng.end not in entry.versions:
                    assert not affects(entry, rng.end), (adv.id, rng.end)


@pytest.mark.parametrize(
    ("path", "affected", "unaffected"),
    [
        (
            "osv-pypi/aiohttp/PYSEC-2021-76.yaml",
            ["0.1", "2.0.0rc1", "3.7.3", "3.7.0b1", "3.0.0", "3.7.4.dev0", "3.7.4rc1"],
            ["3.7.4", "3.7.4.post0", "3.8.0", "4.0.0a1"],
        ),
        (
            "osv-pypi/django/PYSEC-2023-61.yaml",
            ["3.2", "3.2.18", "4.0", "4.1.8", "4.2"],
            ["3.1.14", "3.2.19", "3.2.20", "4.1.9", "4.1.10", "4.2.1", "5.0"],
        ),
    ],
)
def test_osv_advisories(path: str, affected: list[str], unaffected: list[str]) -> None:
    (entry,) = osv(path).affected
    for version in affected:
        assert affects(entry, version), version
    for version in unaffected:
        assert not affects(entry, version), version


def test_osv_last_affected_and_explicit_versions() -> None:
    doc = {
        "id": "TEST-1",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "p"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "1.0"}, {"last_affected": "1.4.2"}],
                    },
                    {"type": "SEMVER", "events": [{"introduced": "2.0.0"}, {"fixed": "2.1.0"}]},
                ],
                "versions": ["0.5", "v0.6"],
            }
        ],
    }
    (entry,) = parse_osv(doc)[0].affected
    for version in ("1.0", "1.4", "1.4.2", "2.0.0", "2.0.9", "0.5", "0.5.0", "0.6", "v1.2"):
        assert affects(entry, version), version
    for version in ("0.9", "1.4.3", "1.5", "2.1.0", "2.1.0.post1", "0.5.1", "3", "", "?!"):
        assert not affects(entry, version), version


def test_unparseable_versions_match_nothing_and_raise_nothing() -> None:
    entry = Affected(ecosystem="PyPI", name="p", ranges=(VersionRange(),), versions=("1.0",))
    assert affects(entry, "1.0") and affects(entry, "7")
    for bad in ("", "   ", "*", "1.0 beta", "1..0", "-"):
        assert status_of(entry, bad) is Status.UNKNOWN
    broken_bound = Affected(ranges=(VersionRange(RangeKind.CUSTOM, "not a version", True, "2.0"),))
    assert not affects(broken_bound, "1.0")


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.dev1", "1.0a1"),
        ("1.0a1", "1.0b1"),
        ("1.0b1", "1.0rc1"),
        ("1.0.dev1", "1.0rc1"),  # conda alone orders these the other way
        ("1.0rc1", "1.0"),
        ("1.0", "1.0.post1"),
        ("1.0.post1", "1.0.1"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0.0-alpha.1", "1.0.0-beta"),
        ("v1.2", "1.10"),
        ("1!0.5", "1!1.0"),
        ("9.0", "1!0.1"),
    ],
)
def test_pep440_and_semver_order(lower: str, higher: str) -> None:
    low, high = comparable(lower, letter_releases=False), comparable(higher, letter_releases=False)
    assert low is not None and high is not None
    assert low < high


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.1", "1.0.1a"),
        ("1.0.1a", "1.0.1k"),
        ("1.0.1z", "1.0.1za"),
        ("1.0.1zh", "1.0.2"),
        ("9d", "9e"),
    ],
)
def test_letter_release_order(lower: str, higher: str) -> None:
    low, high = comparable(lower), comparable(higher)
    assert low is not None and high is not None
    assert low < high


@pytest.mark.parametrize(
    ("raw", "letters", "expected"),
    [
        ("v1.2.3", True, "1.2.3"),
        ("1.0.DEV1", False, "1.0dev1"),
        ("1.0-rc.1", False, "1.0rc1"),
        ("2.0.0beta1", False, "2.0.0b1"),
        ("1.0c1", False, "1.0rc1"),
        ("1.0.1k", True, "1.0.1.post11"),
        ("1.0a", False, "1.0a"),  # PyPI: an alpha, not a letter release
        ("1.0a", True, "1.0.post1"),
    ],
)
def test_normalise(raw: str, letters: bool, expected: str) -> None:
    assert normalise(raw, letter_releases=letters) == expected


def test_pypi_trailing_letter_keeps_its_pep440_meaning() -> None:
    entry = Affected(ecosystem="PyPI", name="p", ranges=(VersionRange(end="1.0"),))
    assert affects(entry, "1.0a")  # an alpha of 1.0, before the fix
    cpe = Affected(vendor="openssl", product="openssl", ranges=(VersionRange(end="1.0"),))
    assert not affects(cpe, "1.0a")  # OpenSSL 1.0a comes after 1.0


def test_start_exclusive_and_exact_ranges() -> None:
    entry = Affected(
        ranges=(
            VersionRange(RangeKind.CUSTOM, "1.0", False, "2.0", True),
            VersionRange(RangeKind.CUSTOM, "1.5", True, "1.5", True, Status.UNAFFECTED),
        )
    )
    assert not affects(entry, "1.0") and affects(entry, "1.0.1") and affects(entry, "2.0")
    assert status_of(entry, "1.5") is Status.UNAFFECTED
    assert entry.ranges[1].exact and not entry.ranges[0].exact
