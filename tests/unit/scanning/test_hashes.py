"""The known-bad list scanner (artifact and file hashes, names with a version or all versions) and
the parser of OSV ``MAL-`` malicious-package records."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Member, ScanSubject, Verdict
from stockade.scanning.scanners.hashes import (
    HashListScanner,
    KnownBadList,
    MaliciousRecord,
    OsvRecordError,
    known_bad_list,
    parse_osv_malicious,
)
from tests.support.hostile import HostileCase, subject_for
from tests.support.hostile_yara import HOSTILE_YARA, KNOWN_BAD, KNOWN_BAD_FILE

HASH_CASES = [c for c in HOSTILE_YARA if c.scanner == "hashes"]
REAL_PACKAGES = Path(__file__).resolve().parents[3] / "tests" / "data" / "packages"
SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()


def _subject(name: str = "demo", version: str = "1.0", sha256: str = "0" * 64) -> ScanSubject:
    index = {"name": name, "version": version}
    return ScanSubject(f"{name}-{version}-0.conda", sha256, 1, name, "noarch", index)


@pytest.mark.parametrize("case", HASH_CASES, ids=lambda c: c.name)
def test_hostile_package_is_found_with_its_rule(case: HostileCase, tmp_path: Path) -> None:
    path = case.build(tmp_path)
    report = scan_archive(path, subject_for(path), [HashListScanner(KNOWN_BAD)])
    assert not report.errors
    assert [(f.rule, f.verdict) for f in report.findings] == [(case.rule, case.verdict)]


def test_real_packages_are_not_on_the_list() -> None:
    scanner = HashListScanner(KNOWN_BAD)
    for path in sorted(REAL_PACKAGES.iterdir()):
        if path.name.endswith((".conda", ".tar.bz2")):
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            subject = ScanSubject(path.name, sha, 1, path.name.rsplit("-", 2)[0], "noarch", {})
            assert scan_archive(path, subject, [scanner]).findings == [], path.name


def test_the_artifact_hash_is_checked_in_finish() -> None:
    scanner = HashListScanner(KnownBadList(sha256s=frozenset({SHA_A.upper()})))
    [finding] = scanner.finish(_subject(sha256=SHA_A))
    assert (finding.rule, finding.verdict, finding.member) == (
        "hashes:known-bad-artifact",
        Verdict.MALICIOUS,
        None,
    )
    assert SHA_A in finding.evidence
    assert list(scanner.finish(_subject(sha256=SHA_B))) == []


def test_a_known_bad_file_inside_a_package_is_found_but_only_whole() -> None:
    scanner = HashListScanner(KNOWN_BAD)
    whole = Member("bin/helper", KNOWN_BAD_FILE, len(KNOWN_BAD_FILE))
    [finding] = scanner.scan_member(_subject(), whole)
    assert (finding.rule, finding.member) == ("hashes:known-bad-file", "bin/helper")
    cut = Member("bin/helper", KNOWN_BAD_FILE, 10**6, truncated=True)
    assert list(scanner.scan_member(_subject(), cut)) == []


def test_names_match_one_version_or_every_version_case_blind() -> None:
    scanner = HashListScanner(KNOWN_BAD)
    [any_version] = scanner.finish(_subject("Evil-Listed-Any", "9.9"))
    assert any_version.rule == "hashes:malicious-package"
    assert "MAL-2026-0001" in any_version.evidence
    assert any_version.details["version"] == "*"
    [one] = scanner.finish(_subject("evil-listed-version", "1.0"))
    assert "MAL-2026-0002" in one.evidence
    assert list(scanner.finish(_subject("evil-listed-version", "1.1"))) == []
    assert list(scanner.finish(_subject("demo", "1.0"))) == []


def test_an_empty_list_wants_no_member_and_finds_nothing() -> None:
    scanner = HashListScanner()
    assert not scanner.wants("lib/x.so")
    assert HashListScanner(KNOWN_BAD).wants("lib/x.so")
    assert list(scanner.finish(_subject())) == []


def test_version_is_a_digest_of_the_snapshot() -> None:
    base = HashListScanner(KNOWN_BAD).version
    assert (
        HashListScanner(
            KnownBadList(KNOWN_BAD.sha256s, KNOWN_BAD.packages, KNOWN_BAD.labels)
        ).version
        == base
    )
    changes = [
        KnownBadList(KNOWN_BAD.sha256s | {SHA_A}, KNOWN_BAD.packages, KNOWN_BAD.labels),
        KnownBadList(KNOWN_BAD.sha256s, KNOWN_BAD.packages | {("x", None)}, KNOWN_BAD.labels),
        KnownBadList(KNOWN_BAD.sha256s, KNOWN_BAD.packages, {}),
        KnownBadList(),
    ]
    versions = {HashListScanner(c).version for c in changes}
    assert len(versions) == 4 and base not in versions


def test_a_bad_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="64 hexadecimal"):
        KnownBadList(sha256s=frozenset({"abc"}))


# --- OSV MAL- records -------------------------------------------------------------------------


def _record(**extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema_version": "1.5.0",
        "id": "MAL-2026-1234",
        "modified": "2026-11-01T00:00:00Z",
        "published": "2026-11-01T00:00:00Z",
        "summary": "Malicious code in reqeusts-toolbelt (PyPI)",
        "details": "The package steals credentials.",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "reqeusts-toolbelt"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                "database_specific": {
                    "malicious-packages-origins": [
                        {
                            "source": "ossf-package-analysis",
                            "sha256": SHA_A.upper(),
                            "versions": ["0.1.0"],
                        },
                        {"source": "other", "sha256": "not-a-hash"},
                    ]
                },
            }
        ],
    }
    return record | extra


def test_an_open_range_means_every_version_with_the_hashes_given() -> None:
    [record] = parse_osv_malicious(_record())
    assert record == MaliciousRecord(
        advisory="MAL-2026-1234",
        ecosystem="PyPI",
        name="reqeusts-toolbelt",
        versions=None,
        sha256s=frozenset({SHA_A}),
        summary="Malicious code in reqeusts-toolbelt (PyPI)",
    )


def test_listed_versions_and_record_level_hashes() -> None:
    affected = [
        {"package": {"ecosystem": "npm", "name": "evil-a"}, "versions": ["1.0.0", "1.0.1"]},
        {
            "package": {"ecosystem": "PyPI", "name": "evil-b"},
            "versions": ["2.0"],
            "database_specific": {"sha256s": [SHA_B]},
        },
    ]
    shared = {"malicious-packages-origins": [{"sha256": SHA_A}]}
    first, second = parse_osv_malicious(_record(affected=affected, database_specific=shared))
    assert (first.ecosystem, first.name, first.versions) == ("npm", "evil-a", {"1.0.0", "1.0.1"})
    assert first.sha256s == {SHA_A}
    assert second.versions == {"2.0"} and second.sha256s == {SHA_A, SHA_B}


def test_a_bounded_range_without_versions_is_every_version() -> None:
    affected = [
        {
            "package": {"ecosystem": "PyPI", "name": "evil"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.2"}]}],
        }
    ]
    [record] = parse_osv_malicious(_record(affected=affected))
    assert record.versions is None


def test_versions_with_a_closed_range_are_the_listed_ones() -> None:
    affected = [
        {
            "package": {"ecosystem": "PyPI", "name": "evil"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.1"}]}
            ],
            "versions": ["1.0", "1.1"],
        }
    ]
    [record] = parse_osv_malicious(_record(affected=affected))
    assert record.versions == {"1.0", "1.1"}


def test_records_that_are_not_malicious_or_were_withdrawn_give_nothing() -> None:
    assert parse_osv_malicious(_record(id="PYSEC-2022-1")) == []
    assert parse_osv_malicious(_record(id="GHSA-xxxx", aliases=["MAL-2026-9"])) != []
    assert parse_osv_malicious(_record(withdrawn="2026-11-02T00:00:00Z")) == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "JSON object"),
        ({"affected": []}, "id: missing"),
        ({"id": "MAL-1", "affected": {}}, "affected: a list"),
        ({"id": "MAL-1", "affected": [1]}, r"affected\[0\]: an object"),
        ({"id": "MAL-1", "affected": [{"package": {"name": "x"}}]}, "ecosystem and name"),
        (
            {
                "id": "MAL-1",
                "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "versions": "1"}],
            },
            "versions: a list",
        ),
        (
            {
                "id": "MAL-1",
                "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{}]}],
            },
            "list of events",
        ),
    ],
)
def test_a_record_that_breaks_the_schema_is_named(record: Any, message: str) -> None:
    with pytest.raises(OsvRecordError, match=message):
        parse_osv_malicious(record)


def test_parsed_records_feed_the_scanner() -> None:
    [record] = parse_osv_malicious(_record())
    snapshot = KnownBadList(
        sha256s=record.sha256s,
        packages=frozenset({(record.name, None)}),
        labels={record.name: record.advisory},
    )
    [finding] = HashListScanner(snapshot).finish(_subject("reqeusts-toolbelt", "0.1.0"))
    assert finding.details == {
        "name": "reqeusts-toolbelt",
        "version": "*",
        "source": "MAL-2026-1234",
    }


def test_a_snapshot_from_advisories_through_a_name_map() -> None:
    records = [
        *parse_osv_malicious(_record()),
        MaliciousRecord("MAL-2026-7", "PyPI", "Evil_Lib", frozenset({"1.0", "1.1"}), frozenset()),
        MaliciousRecord("MAL-2026-8", "npm", "left-pad-evil", None, frozenset()),
        MaliciousRecord("MAL-2026-9", "PyPI", "evil_lib", frozenset({"1.0"}), frozenset()),
    ]
    conda = {
        ("PyPI", "reqeusts-toolbelt"): ["reqeusts-toolbelt"],
        ("PyPI", "Evil_Lib"): ["evil-lib"],
    }
    conda[("PyPI", "evil_lib")] = ["Evil-Lib"]
    snapshot = known_bad_list(
        records, lambda eco, name: conda.get((eco, name), []), sha256s=[SHA_B]
    )
    assert snapshot.sha256s == {SHA_A, SHA_B}
    assert snapshot.packages == {
        ("reqeusts-toolbelt", None),
        ("evil-lib", "1.0"),
        ("evil-lib", "1.1"),
    }
    assert snapshot.labels["evil-lib==1.0"] == "MAL-2026-7, MAL-2026-9"
    assert snapshot.labels[SHA_A] == "MAL-2026-1234"
    scanner = HashListScanner(snapshot)
    [finding] = scanner.finish(_subject("evil-lib", "1.1"))
    assert finding.details["source"] == "MAL-2026-7"
    assert list(scanner.finish(_subject("evil-lib", "2.0"))) == []
    assert list(scanner.finish(_subject("left-pad-evil", "1.0"))) == []
