"""The record schema (``stockade.conda.records``): every field typed as conda and rattler read it.

Each hostile value is refused naming its field, and for each one rattler's own repodata reader
(``SparseRepoData``, what pixi and py-rattler use) is shown to refuse it too or to be unable to
solve with it, so "we accept" implies "rattler reads it". Every real record of the shared test
data is accepted.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from rattler import Channel, MatchSpec, PackageName, SparseRepoData, solve_with_sparse_repodata
from rattler.exceptions import SolverError

from stockade.conda.records import (
    SERVER_KEYS,
    RecordChecker,
    _field_problem,
    _plainly_valid,
    decoded_problem,
    record_problem,
    upstream_record,
    without_server_keys,
)
from tests.conftest import TESTDATA

GOOD: dict[str, Any] = {
    "name": "demo",
    "version": "1.0",
    "build": "h0_0",
    "build_number": 0,
    "subdir": "linux-64",
    "depends": ["python >=3.8", "libgcc-ng >=12"],
    "constrains": ["numpy <2"],
    "license": "MIT",
    "timestamp": 1_700_000_000_000,
    "md5": "0" * 32,
    "sha256": "0" * 64,
    "size": 1,
}

#: (field, value): each breaks the record; conda or rattler cannot read it.
HOSTILE: list[tuple[str, Any]] = [
    ("name", ""),
    ("name", 5),
    ("name", "a/b"),
    ("name", "A b"),
    ("name", "x\u00e9"),
    ("name", "a" * 300),
    ("version", "1..2"),
    ("version", "1.*"),
    ("version", ""),
    ("version", ["1"]),
    ("version", "1." * 100 + "1"),
    ("build", ""),
    ("build", {}),
    ("build", "a b"),
    ("build", "../x"),
    ("build_number", -1),
    ("build_number", 1.5),
    ("build_number", "1"),
    ("build_number", True),
    ("build_number", 2**40),
    ("subdir", "Linux-64"),
    ("subdir", 64),
    ("arch", 5),
    ("platform", []),
    ("depends", "python"),
    ("depends", [1]),
    ("depends", ["foo >=>1"]),
    ("depends", ["###"]),
    ("depends", ["foo 1..2"]),
    ("constrains", [""]),
    ("track_features", {"a": 1}),
    ("features", ["x"]),
    ("noarch", ["x"]),
    ("noarch", "weird"),
    ("noarch", "Python"),
    ("noarch", 1),
    ("license", {}),
    ("license", ["MIT"]),
    ("license_family", []),
    ("timestamp", "now"),
    ("timestamp", 1.5),
    ("timestamp", 1e40),
    ("timestamp", -5),
    ("timestamp", 10**16),
    ("md5", "zz"),
    ("sha256", "A" * 64),
    ("size", -1),
    ("size", "1"),
    ("purls", ["notapurl"]),
    ("purls", "pkg:pypi/x"),
    ("python_site_packages_path", 3),
    ("python_site_packages_path", "../outside"),
    ("python_site_packages_path", "/abs/lib"),
    ("flags", "x"),
    ("extra_depends", {"x": "a"}),
    ("extra_depends", {"x": ["foo >=>1"]}),
    ("run_exports", {"weak": "x"}),
    ("run_exports", 5),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_hostile_fields_are_named(field: str, value: Any) -> None:
    problem = record_problem(GOOD | {field: value})
    assert problem is not None and problem.field == field, problem


@pytest.mark.parametrize("field", ["name", "version", "build", "build_number"])
def test_required_fields(field: str) -> None:
    record = {k: v for k, v in GOOD.items() if k != field}
    problem = record_problem(record)
    assert problem is not None and (problem.field, problem.detail) == (field, "is missing")
    problem = record_problem(GOOD | {field: None})  # null counts as absent, as conda reads it
    assert problem is not None and problem.field == field


def test_subdir_is_required_only_when_asked() -> None:
    record = {k: v for k, v in GOOD.items() if k != "subdir"}
    assert record_problem(record) is None
    problem = record_problem(record, require_subdir=True)
    assert problem is not None and problem.field == "subdir"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("noarch", "python"),
        ("noarch", "generic"),
        ("noarch", True),
        ("noarch", False),
        ("noarch", ""),
        ("track_features", "a b"),
        ("track_features", ["a"]),
        ("features", "blas_mkl"),
        ("depends", None),
        ("constrains", None),
        ("license", None),
        ("timestamp", 1_700_000_000),  # seconds, as older packages give it
        ("purls", ["pkg:pypi/demo"]),
        ("python_site_packages_path", "lib/python3.13t/site-packages"),
        ("run_exports", {"weak": ["demo >=1.0"]}),
        ("run_exports", ["demo"]),
        ("extra_depends", {"test": ["pytest"]}),
        ("flags", ["release"]),
        ("depends", ["python_abi 3.11.* *_cp311", "foo=1.0=h1_0", "numpy[version='>=1']"]),
        ("unknown_key", {"any": "thing"}),
    ],
)
def test_forms_conda_accepts(field: str, value: Any) -> None:
    assert record_problem(GOOD | {field: value}) is None


def _rattler_reads(record: dict[str, Any], tmp_path: Path) -> bool:
    """Whether rattler's repodata reader loads ``record`` (the reader pixi and py-rattler use)."""
    path = tmp_path / "repodata.json"
    doc = {"info": {"subdir": "linux-64"}, "packages.conda": {"demo-1.0-h0_0.conda": record}}
    path.write_text(json.dumps(doc))
    sparse = SparseRepoData(Channel("https://example.invalid/c/"), "linux-64", str(path))
    name = record["name"] if isinstance(record.get("name"), str) and record["name"] else "demo"
    try:
        sparse.load_records(PackageName(name))
    except Exception:
        return False
    return True


#: Hostile values rattler's reader loads although they break something else: empty names and
#: builds, builds with a space or slash (no match spec can name them), values beyond our
#: tables' columns, a negative timestamp, upper-case hex (our downloads compare lower-case
#: digests), paths leaving the environment (CEP 17), and match specs rattler reads only when
#: solving (the package is then never installable: see the test below).
LOADED_BY_RATTLER: list[tuple[str, Any]] = [
    ("name", ""),
    ("name", "a" * 300),
    ("build", ""),
    ("build", "a b"),
    ("build", "../x"),
    ("version", "1." * 100 + "1"),
    ("build_number", 2**40),
    ("subdir", "Linux-64"),
    ("depends", ["foo >=>1"]),
    ("depends", ["###"]),
    ("depends", ["foo 1..2"]),
    ("constrains", [""]),
    ("timestamp", -5),
    ("sha256", "A" * 64),
    ("python_site_packages_path", "../outside"),
    ("python_site_packages_path", "/abs/lib"),
    ("extra_depends", {"x": ["foo >=>1"]}),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_rattler_refuses_what_we_refuse(tmp_path: Path, field: str, value: Any) -> None:
    """Parity: apart from the listed stricter rules, a hostile record breaks rattler too."""
    if (field, value) in LOADED_BY_RATTLER:
        return
    assert not _rattler_reads(GOOD | {field: value}, tmp_path)


def test_a_spec_rattler_cannot_parse_makes_the_package_uninstallable(tmp_path: Path) -> None:
    path = tmp_path / "repodata.json"
    record = GOOD | {"subdir": "noarch", "depends": ["foo >=>1"]}
    doc = {"info": {"subdir": "noarch"}, "packages.conda": {"demo-1.0-h0_0.conda": record}}
    path.write_text(json.dumps(doc))
    sparse = SparseRepoData(Channel("https://example.invalid/c/"), "noarch", str(path))
    with pytest.raises(SolverError, match="failed to parse"):
        asyncio.run(solve_with_sparse_repodata([MatchSpec("demo")], [sparse]))


def _real_records() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(TESTDATA.glob("**/repodata.json")):
        doc = orjson.loads(path.read_bytes())
        for section in ("packages", "packages.conda"):
            for filename, record in (doc.get(section) or {}).items():
                found.append((f"{path.parent.name}/{filename}", record))
    return found


def test_every_real_record_is_accepted() -> None:
    records = _real_records()
    assert len(records) > 5000
    refused = {name: str(p) for name, rec in records if (p := record_problem(rec)) is not None}
    assert refused == {}


def test_server_keys_are_dropped_from_a_package() -> None:
    claimed = GOOD | dict.fromkeys(("url", "fn", "channel", "schannel", "auth"), "claimed")
    kept = without_server_keys(claimed | {"size": 10**12, "indexed_timestamp": 1})
    assert not set(kept) & SERVER_KEYS
    assert kept["name"] == "demo" and kept["depends"] == GOOD["depends"]


def test_upstream_records_keep_hashes_and_lose_locations_and_nulls() -> None:
    record = upstream_record(GOOD | {"url": "http://elsewhere/x.conda", "depends": None})
    assert record["sha256"] == GOOD["sha256"] and record["size"] == 1
    assert "url" not in record and "depends" not in record


def test_stored_bytes() -> None:
    assert decoded_problem(b"{not json")[1] is not None
    assert decoded_problem(b"[1, 2]")[1] is not None
    record, problem = decoded_problem(orjson.dumps(GOOD | {"license": None}))
    assert problem is None and record is not None and "license" not in record


def test_checker_remembers_valid_records_only() -> None:
    checker = RecordChecker(max_remembered=2)
    good, bad = orjson.dumps(GOOD), orjson.dumps(GOOD | {"version": "1..2"})
    invalid = checker.invalid_rows([1, 2], ["a.conda", "b.conda"], [good, bad])
    assert invalid.keys() == {"b.conda"}
    assert checker.problem(bad) is not None  # bad verdicts are never cached as good
    for n in range(3):
        assert checker.problem(orjson.dumps(GOOD | {"build_number": n})) is None
    assert len(checker._valid) <= 2


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_the_quick_path_never_passes_a_hostile_record(field: str, value: Any) -> None:
    assert not _plainly_valid(GOOD | {field: value}, require_subdir=False)
    assert not _plainly_valid({k: v for k, v in GOOD.items() if k != "subdir"}, require_subdir=True)


def test_the_quick_path_agrees_with_the_full_check_on_real_records() -> None:
    for name, record in _real_records():
        quick = _plainly_valid(record, require_subdir=False)
        assert not quick or _field_problem(record, require_subdir=False) is None, name
