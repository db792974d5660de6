"""The look-alike name scanner: one edit or one homoglyph from a popular or an internal name."""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

import pytest

from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Finding, Scanner, ScanSubject, Verdict
from stockade.scanning.scanners.names import (
    NameIndex,
    NameScanner,
    popular_index,
    skeleton,
    within_one_edit,
)
from tests.support.hostile import HOSTILE, HostileCase, subject_for

SCANNER = NameScanner()


def findings(name: str, known: frozenset[str] = frozenset()) -> list[Finding]:
    subject = ScanSubject(f"{name}-1.0-0.conda", "0" * 64, 1, name, "noarch", {}, known)
    return list(SCANNER.finish(subject))


def imitated(name: str, known: frozenset[str] = frozenset()) -> dict[str, str]:
    return {f.rule: str(f.details["imitates"]) for f in findings(name, known)}


def test_is_a_scanner_that_reads_no_member() -> None:
    scanner: Scanner = SCANNER
    assert scanner.name == "names"
    assert scanner.version.startswith("1+")
    assert not scanner.wants("info/index.json")
    assert not scanner.wants("lib/python3.11/site-packages/x/__init__.py")


def test_popular_list_ships_in_the_package() -> None:
    data = files("stockade.scanning").joinpath("data/popular_names.txt").read_text()
    assert data.startswith("# Popular conda-forge and PyPI package names")
    names = [line for line in data.splitlines() if line and not line.startswith("#")]
    assert len(names) >= 3000
    assert names == sorted(set(names))
    assert all(name == name.lower() and " " not in name for name in names)
    for must in ("numpy", "requests", "scikit-learn", "openssl", "libgcc-ng", "python"):
        assert must in popular_index().names


@pytest.mark.parametrize(
    ("name", "popular"),
    [
        ("reqeusts", "requests"),  # transposition
        ("requets", "requests"),  # deletion
        ("requestss", "requests"),  # insertion
        ("reqursts", "requests"),  # substitution
        ("nunpy", "numpy"),
        ("pandsa", "pandas"),
        ("scikitlearn", "scikit-learn"),  # a separator dropped
        ("scikit_learn", "scikit-learn"),  # a separator swapped
        ("typing.extensions", "typing-extensions"),
        ("matp1otlib", "matplotlib"),  # 1 for l
        ("djang0", "django"),  # 0 for o
        ("boto-core", "botocore"),  # a separator added
        ("arrnow", "arrow"),  # rn for m, then one edit
        ("cryptograpy", "cryptography"),
        ("opensll", "openssl"),
        ("r\u0435quests", "requests"),  # Cyrillic ie
        ("n\u03c5mpy", "numpy"),  # Greek upsilon
        ("pand\u00e1s", "pandas"),  # an accent
    ],
)
def test_lookalike_of_popular_is_suspicious(name: str, popular: str) -> None:
    (finding,) = findings(name)
    assert finding.rule == "names:lookalike-popular"
    assert finding.verdict is Verdict.SUSPICIOUS
    assert finding.member is None
    assert finding.details["imitates"] == popular
    assert popular in finding.evidence


@pytest.mark.parametrize(
    "name",
    [
        "requests",  # the name itself
        "numpy",
        "typing_extensions",  # conda-forge's own spelling is listed
        "importlib_metadata",
        "ruamel.yaml",
        "libcblas",  # one edit from libblas, but popular itself
        "pyqt6",  # a versioned family: differs only in a trailing number
        "boto4",
        "xtensor-io",
        "fly",  # too short to judge
        "abc",
        "my-internal-tool",
        "",
    ],
)
def test_not_a_lookalike(name: str) -> None:
    assert findings(name) == []


def test_lookalike_of_internal_name() -> None:
    known = frozenset({"acme-billing-client", "acme-ledger"})
    assert imitated("acme-billing-clent", known) == {
        "names:lookalike-internal": "acme-billing-client"
    }
    assert imitated("acme_ledger", known) == {"names:lookalike-internal": "acme-ledger"}
    assert imitated("acme-ledger", known) == {}  # the internal package itself
    assert imitated("acme-ledger2", known) == {}  # a versioned family
    assert imitated("acme-other", known) == {}


def test_both_rules_can_fire() -> None:
    assert imitated("reqeusts", frozenset({"reqeustz"})) == {
        "names:lookalike-popular": "requests",
        "names:lookalike-internal": "reqeustz",
    }


def test_skeleton_folds_lookalikes() -> None:
    assert skeleton("Rn_1o.O") == "m-lo-o"
    assert skeleton("\u0455\u0441i\u0440y") == "scipy"
    assert skeleton("vvheel") == "wheel"


@pytest.mark.parametrize(
    ("a", "b", "close"),
    [
        ("abcd", "abcd", True),
        ("abcd", "abdc", True),
        ("abcd", "abd", True),
        ("abcd", "abcde", True),
        ("abcd", "axcd", True),
        ("abcd", "badc", False),
        ("abcd", "ab", False),
        ("abcd", "axcy", False),
        ("abcd", "acbd", True),
    ],
)
def test_within_one_edit(a: str, b: str, close: bool) -> None:
    assert within_one_edit(a, b) is close
    assert within_one_edit(b, a) is close


def test_index_finds_only_true_neighbours() -> None:
    index = NameIndex(["alpha", "alphabet", "beta"])
    assert index.lookalikes("alpah") == ["alpha"]
    assert index.lookalikes("alphx") == ["alpha"]
    assert index.lookalikes("xlphx") == []  # two edits: shares a deletion key, not a neighbour
    assert index.lookalikes("alpha") == []


def test_lookup_is_fast() -> None:
    popular_index()
    started = time.perf_counter()
    for number in range(2000):
        popular_index().lookalikes(f"package-{number}-name")
    assert time.perf_counter() - started < 2.0  # ~0.1 ms each; a linear scan would be ~100x


NAME_CASES = [case for case in HOSTILE if case.scanner == "names"]


@pytest.mark.parametrize("case", NAME_CASES, ids=lambda case: case.name)
def test_hostile_package_is_found_through_the_engine(case: HostileCase, tmp_path: Path) -> None:
    path = case.build(tmp_path)
    report = scan_archive(path, subject_for(path, case.known_names), [SCANNER])
    assert {(f.rule, f.verdict) for f in report.findings} == {(case.rule, case.verdict)}


def test_other_hostile_packages_have_innocent_names() -> None:
    for case in HOSTILE:
        if case.scanner != "names":
            assert findings(case.name) == [], case.name


def test_absurdly_long_name_is_not_compared() -> None:
    started = time.perf_counter()
    assert findings("requests" * 5000) == []
    assert time.perf_counter() - started < 1.0


def test_evidence_shows_homoglyphs_as_escapes() -> None:
    (finding,) = findings("r\u0435quests")
    assert "r\\u0435quests" in finding.evidence
    assert finding.evidence.isascii()
