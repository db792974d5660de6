"""The repository stands on its own: a clone with nothing beside it passes the unit tests that
read test data.

The committed HEAD of this working repository is cloned into an empty temporary folder (no
``shared/`` or anything else beside it), and the clone's unit tests run there with this
interpreter, importing the clone's own ``stockade`` and ``tests`` packages. Uncommitted changes are
not in the clone: this checks what a new user gets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, TESTDATA

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clean-clone")]

#: The unit test files that read test data from disk (packages, repodata, advisories, rules): the
#: ones a file beside the repository could make pass by accident. (CI itself runs in a clean clone.)
DATA_WORDS = ("TESTDATA", "testdata")


def _data_readers(clone: Path) -> list[str]:
    return sorted(
        str(path.relative_to(clone))
        for path in (clone / "tests" / "unit").rglob("test_*.py")
        if any(word in path.read_text() for word in DATA_WORDS)
    )


UNIT_TIMEOUT = 280  # seconds; the unit tests take about a minute on an idle 2-core machine


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git working tree (or no git): nothing to clone")
    with tempfile.TemporaryDirectory(prefix="stockade-clone-") as empty:
        target = Path(empty) / "stockade"
        _git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(target), cwd=Path(empty))
        yield target


def _env(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    env["PYTHONPATH"] = str(clone / "src")  # ahead of the venv's editable path to this tree
    return env


def test_the_clone_has_nothing_beside_it(clone: Path) -> None:
    assert sorted(p.name for p in clone.parent.iterdir()) == ["stockade"]
    assert _git("rev-parse", "HEAD", cwd=clone) == _git("rev-parse", "HEAD", cwd=ROOT)
    assert (clone / TESTDATA.relative_to(ROOT) / "PROVENANCE.md").is_file()


def test_the_clone_imports_its_own_code(clone: Path) -> None:
    code = "import stockade, tests.conftest as c; print(stockade.__file__); print(c.TESTDATA)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=clone,
        env=_env(clone),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    package, testdata = done.stdout.split()
    assert Path(package).is_relative_to(clone / "src")
    assert Path(testdata) == clone / "tests" / "data"


#: Files git does not track that a working tree may hold without them mattering to a clone.
CACHES = ("__pycache__", ".pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules")


def _untracked_under_tests_or_src() -> list[str]:
    """Files of this working tree, under ``tests/`` or ``src/``, that a clone does not get
    (untracked or ignored), caches aside."""
    listed = (
        _git("ls-files", "--others", "--exclude-standard", "--ignored", "tests", "src", cwd=ROOT)
        + "\n"
        + _git("ls-files", "--others", "--exclude-standard", "tests", "src", cwd=ROOT)
    )
    return sorted(
        {line for line in listed.splitlines() if line and not any(c in line for c in CACHES)}
    )


def test_no_test_reads_beside_the_repository(clone: Path) -> None:
    """No test or source file names a folder beside the repository (``../shared``): a clone has
    nothing there."""
    offenders = [
        str(path.relative_to(clone))
        for top in ("src", "tests", "benchmarks")
        for path in (clone / top).rglob("*.py")
        if path.name != "test_clean_clone.py"  # this file names them, to look for them
        and ("shared/testdata" in path.read_text() or "../shared" in path.read_text())
    ]
    assert offenders == [], offenders


def test_the_clone_passes_its_unit_tests(clone: Path) -> None:
    """The data-reading unit tests, run in the clone. Where this working tree has nothing under
    ``tests/`` or ``src/`` that a clone lacks, the clone's tests are these very files, which this
    run already runs here (CI itself runs in a clean clone): it is then skipped, to save CI time."""
    extra = _untracked_under_tests_or_src()
    if not extra:
        pytest.skip("the working tree holds nothing a clone lacks under tests/ and src/")
    readers = _data_readers(clone)
    assert len(readers) >= 5, readers  # (an empty list would run every test of the clone)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *readers, "-q", "-x"],
        check=False,
        cwd=clone,
        env=_env(clone),
        capture_output=True,
        text=True,
        timeout=UNIT_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout
