"""False-positive rate 0: every real package in the test data is clean for the project's scanners.

Every ``.conda`` and ``.tar.bz2`` under the repository's test data (``tests/data``; its ``bad/``
folder holds broken archives, not packages) is scanned through the engine by the link-script,
Python and names scanners, with every test-data package name as the organisation's internal
names too.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stockade.scanning.engine import scan_archive
from stockade.scanning.interfaces import Verdict
from stockade.scanning.scanners import linkrules, linkscripts
from stockade.scanning.scanners import names as names_scanner
from stockade.scanning.scanners import python as python_scanner
from tests.conftest import TESTDATA
from tests.support.hostile import HOSTILE, own_scanners, read_index, subject_for

SUFFIXES = (".conda", ".tar.bz2")


def real_packages(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in root.rglob("*")
        if path.name.endswith(SUFFIXES) and "bad" not in path.relative_to(root).parts
    )


REPO_PACKAGES = real_packages(TESTDATA)


@pytest.fixture(scope="module")
def internal_names() -> frozenset[str]:
    return frozenset(str(read_index(path)["name"]) for path in REPO_PACKAGES)


def test_the_repository_has_real_packages() -> None:
    assert len(REPO_PACKAGES) >= 40
    assert any(path.name.startswith("link-scripts-") for path in REPO_PACKAGES)


@pytest.mark.parametrize("path", REPO_PACKAGES, ids=lambda path: str(path.relative_to(TESTDATA)))
def test_repository_package_is_clean(path: Path, internal_names: frozenset[str]) -> None:
    report = scan_archive(path, subject_for(path, internal_names), own_scanners())
    assert report.errors == {}
    assert report.findings == []


def test_scripts_of_real_packages_are_seen() -> None:
    """The clean result is not for want of looking: real link scripts reach the scanner."""
    path = TESTDATA / "packages" / "link-scripts-0.1.0-h4616a5c_0.conda"
    report = scan_archive(path, subject_for(path), own_scanners())
    assert report.members >= 4


def test_one_instance_gives_the_same_findings_from_many_threads(tmp_path: Path) -> None:
    """Scanners keep no state between calls: one instance may scan many packages at once."""
    scanners = own_scanners()
    paths = [(case.build(tmp_path), case.known_names) for case in HOSTILE]

    def scan(item: tuple[Path, frozenset[str]]) -> list[tuple[str, str | None]]:
        path, known = item
        report = scan_archive(path, subject_for(path, known), scanners)
        return sorted((f.rule, f.member) for f in report.findings)

    alone = [scan(item) for item in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(scan, paths * 3))
    assert together == alone * 3


def test_versions_follow_the_rule_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    link, python, names = own_scanners()
    monkeypatch.setattr(linkrules, "LINE_RULES", linkrules.LINE_RULES[:-1])
    assert linkscripts._fingerprint() != link.version
    monkeypatch.setitem(python_scanner.RULES, "python:pth-code", Verdict.MALICIOUS)
    assert python_scanner._fingerprint() != python.version
    monkeypatch.setattr(names_scanner, "_popular_bytes", lambda: b"# empty\n")
    assert names_scanner._fingerprint() != names.version
