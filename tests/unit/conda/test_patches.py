"""Tests of stockade.conda.patches with real patch instructions (rattler, conda-index test data)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from stockade.conda.patches import (
    REVOKED_DEPENDENCY,
    PatchInstructions,
    apply_patches,
    conda_twin,
)
from stockade.conda.repodata import build_repodata_json, decode_record, encode_record
from stockade.core.errors import InvalidInputError
from tests.conftest import TESTDATA

PATCH_DIR = TESTDATA / "repodata" / "patch-linux-64"
HOTFIX_DIR = TESTDATA / "channels" / "index-hotfix" / "osx-64"
CROSS_310 = "cross-python_emscripten-32-3.10.1-h60d57d3_8"
CROSS_312 = "cross-python_emscripten-32-3.12.1-h60d57d3_8"
EMSCRIPTEN = "emscripten_emscripten-32-3.1.27-h60d57d3_5"
PYTORCH_CPU = "pytorch-cpu-2.6.0-cpu_mkl_h8b52ce0_104.conda"


def _json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _encoded(doc: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    return (
        {fn: encode_record(r) for fn, r in doc.get("packages", {}).items()},
        {fn: encode_record(r) for fn, r in doc.get("packages.conda", {}).items()},
    )


def _decoded(records: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {fn: decode_record(raw) for fn, raw in records.items()}


def _reference(doc: dict[str, Any], instructions: dict[str, Any]) -> dict[str, Any]:
    """The instructions' meaning, written out plainly and independently of the module."""
    packages = copy.deepcopy(doc.get("packages", {}))
    conda = copy.deepcopy(doc.get("packages.conda", {}))

    def patch(record: dict[str, Any], fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = copy.deepcopy(value)

    for fn, fields in instructions.get("packages", {}).items():
        if fn in packages:
            patch(packages[fn], fields)
        twin = fn[: -len(".tar.bz2")] + ".conda"
        if twin in conda:
            patch(conda[twin], fields)
    for fn, fields in instructions.get("packages.conda", {}).items():
        if fn in conda:
            patch(conda[fn], fields)
    removed = []
    for action in ("revoke", "remove"):
        for fn in instructions.get(action, []):
            targets = [(packages, fn), (conda, fn.replace(".tar.bz2", ".conda"))]
            for section, name in targets:
                if name not in section:
                    continue
                if action == "remove":
                    del section[name]
                    removed.append(name)
                else:
                    section[name]["revoked"] = True
                    section[name]["depends"] = [
                        *section[name]["depends"],
                        REVOKED_DEPENDENCY,
                    ]
    return {
        "packages": packages,
        "packages.conda": conda,
        "removed": sorted(set(removed)),
    }


RATTLER_CASES = [
    ("repodata_from_packages.json", "patch_instructions.json"),
    ("repodata_from_packages.json", "patch_instructions_2.json"),
    ("repodata_from_packages.json", "patch_instructions_3.json"),
    ("repodata_from_packages.json", "patch_instructions_4.json"),
    ("repodata_from_packages_5.json", "patch_instructions_5.json"),
]


@pytest.mark.parametrize(("repodata", "patch"), RATTLER_CASES, ids=lambda v: v)
def test_real_patches_match_the_reference_loop(repodata: str, patch: str) -> None:
    doc, raw = _json(PATCH_DIR / repodata), _json(PATCH_DIR / patch)
    tar_bz2, conda = _encoded(doc)

    new_tar, new_conda, removed = apply_patches(tar_bz2, conda, PatchInstructions.from_json(raw))

    expected = _reference(doc, raw)
    assert _decoded(new_tar) == expected["packages"]
    assert _decoded(new_conda) == expected["packages.conda"]
    assert removed == expected["removed"]
    # through the repodata writer too
    built = json.loads(build_repodata_json("linux-64", new_tar.items(), new_conda.items(), removed))
    assert built["packages"] == expected["packages"]
    assert built["packages.conda"] == expected["packages.conda"]
    assert built["removed"] == expected["removed"]


def _apply(repodata: str, patch: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    doc = _json(PATCH_DIR / repodata)
    tar_bz2, conda = _encoded(doc)
    instructions = PatchInstructions.from_json(_json(PATCH_DIR / patch))
    new_tar, new_conda, removed = apply_patches(tar_bz2, conda, instructions)
    return _decoded(new_tar), _decoded(new_conda), removed


def test_field_patches_by_hand() -> None:
    """Compare with rattler's snapshot ``test_patching``."""
    tar_bz2, conda, removed = _apply(RATTLER_CASES[0][0], RATTLER_CASES[0][1])
    expected_depends = [
        "coreutils",
        "crossenv >=1.2",
        "emscripten_emscripten-32",
        "pip",
        "wolfssl 12.0",
    ]
    for record in (
        tar_bz2[CROSS_310 + ".tar.bz2"],
        conda[CROSS_310 + ".conda"],
    ):  # .conda twin too
        assert record["license"] == "WOLF LICENSE"
        assert record["depends"] == expected_depends
        assert record["constrains"] == ["curl >5.0"]
        assert record["sha256"] in {
            "50064d294599734090b9a33a2194a94f5d3743325d5bae61fab3fa5151acf0f9",
            "12064d294599734090b9a33a2194a94f5d3743325d5bae61fab3fa5151acf0f9",
        }
    assert conda[CROSS_312 + ".conda"]["license"] == "WOLF LICENSE II"
    assert "python 3.12.*" in conda[CROSS_312 + ".conda"]["depends"]
    assert "license" not in tar_bz2[EMSCRIPTEN + ".tar.bz2"]
    assert removed == []


def test_remove_by_tar_bz2_name_takes_the_conda_twin() -> None:
    """rattler's snapshot ``test_removing_1``."""
    tar_bz2, conda, removed = _apply(RATTLER_CASES[1][0], RATTLER_CASES[1][1])
    assert tar_bz2 == {}
    assert list(conda) == [CROSS_312 + ".conda"]
    assert removed == [
        CROSS_310 + ".conda",
        CROSS_310 + ".tar.bz2",
        EMSCRIPTEN + ".tar.bz2",
    ]


def test_remove_by_conda_name_and_missing_names() -> None:
    """rattler's snapshot ``test_removing_2``: a missing file is not listed as removed."""
    tar_bz2, conda, removed = _apply(RATTLER_CASES[2][0], RATTLER_CASES[2][1])
    assert set(tar_bz2) == {CROSS_310 + ".tar.bz2", EMSCRIPTEN + ".tar.bz2"}
    assert list(conda) == [CROSS_312 + ".conda"]
    assert removed == [CROSS_310 + ".conda"]


def test_purls_and_null_track_features() -> None:
    tar_bz2, conda, _ = _apply(RATTLER_CASES[3][0], RATTLER_CASES[3][1])
    assert tar_bz2[CROSS_310 + ".tar.bz2"]["purls"] == ["pkg:pypi/cross-python@3.10.1"]
    assert conda[CROSS_310 + ".conda"]["purls"] == ["pkg:pypi/cross-python@3.10.1"]
    assert "purls" not in conda[CROSS_312 + ".conda"]

    _, conda5, _ = _apply(RATTLER_CASES[4][0], RATTLER_CASES[4][1])
    assert "track_features" not in conda5[PYTORCH_CPU]
    assert conda5[PYTORCH_CPU]["depends"] == ["pytorch 2.6.0 cpu_mkl*104"]


def test_untouched_records_keep_their_bytes_and_inputs_are_not_modified() -> None:
    doc = _json(PATCH_DIR / "repodata_from_packages.json")
    tar_bz2, conda = _encoded(doc)
    before = (dict(tar_bz2), dict(conda))
    instructions = PatchInstructions.from_json(_json(PATCH_DIR / "patch_instructions.json"))

    new_tar, _, _ = apply_patches(tar_bz2, conda, instructions)

    assert (tar_bz2, conda) == before
    assert new_tar[EMSCRIPTEN + ".tar.bz2"] is tar_bz2[EMSCRIPTEN + ".tar.bz2"]
    assert new_tar[CROSS_310 + ".tar.bz2"] != tar_bz2[CROSS_310 + ".tar.bz2"]


# --- conda-index's hot-fix channel ---------------------------------------------------------

# conda-index's tests/test_index.py (test_channel_patch_instructions_json, test_patch_from_tarball)
HOTFIX_INSTRUCTIONS = {
    "patch_instructions_version": 1,
    "packages": {
        "track_features_test-1.0-0.tar.bz2": {"track_features": None},
        "hotfix_depends_test-1.0-dummy_0.tar.bz2": {
            "depends": ["zlib", "dummy"],
            "features": None,
        },
    },
    "revoke": ["revoke_test-1.0-0.tar.bz2"],
    "remove": ["remove_test-1.0-0.tar.bz2"],
}


def test_hotfix_channel_as_published_by_conda_index() -> None:
    """Its repodata.json equals repodata_from_packages.json: the instructions explaining the
    difference are empty, and applying them must reproduce the published file exactly."""
    raw = _json(HOTFIX_DIR / "repodata_from_packages.json")
    published = _json(HOTFIX_DIR / "repodata.json")
    tar_bz2, conda = _encoded(raw)

    new_tar, new_conda, removed = apply_patches(tar_bz2, conda, PatchInstructions.from_json({}))

    built = json.loads(build_repodata_json("osx-64", new_tar.items(), new_conda.items(), removed))
    assert built == published


def _hotfix_with_twins() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The hot-fix records plus .conda twins (the channel holds those files, unlisted)."""
    raw = _json(HOTFIX_DIR / "repodata_from_packages.json")
    twins = {conda_twin(fn): dict(r, size=r["size"] + 1) for fn, r in raw["packages"].items()}
    return _encoded({"packages": raw["packages"], "packages.conda": twins})


def test_hotfix_instructions_from_conda_index_tests() -> None:
    tar_bz2, conda = _hotfix_with_twins()
    instructions = PatchInstructions.from_json(HOTFIX_INSTRUCTIONS)

    new_tar, new_conda, removed = apply_patches(tar_bz2, conda, instructions)

    assert removed == ["remove_test-1.0-0.conda", "remove_test-1.0-0.tar.bz2"]
    for ext, records in (
        (".tar.bz2", _decoded(new_tar)),
        (".conda", _decoded(new_conda)),
    ):
        assert "track_features" not in records["track_features_test-1.0-0" + ext]
        hotfix = records["hotfix_depends_test-1.0-dummy_0" + ext]
        assert "features" not in hotfix
        assert hotfix["depends"] == ["zlib", "dummy"]
        revoked = records["revoke_test-1.0-0" + ext]
        assert revoked["revoked"] is True
        assert revoked["depends"] == [
            "zlib",
            REVOKED_DEPENDENCY,
        ]  # marker once, zlib kept
        assert "remove_test-1.0-0" + ext not in records
    assert _decoded(new_conda)["revoke_test-1.0-0.conda"]["size"] == 2397  # twin's own fields


def test_hotfix_matches_the_reference_loop() -> None:
    tar_bz2, conda = _hotfix_with_twins()
    doc = {"packages": _decoded(tar_bz2), "packages.conda": _decoded(conda)}
    new_tar, new_conda, removed = apply_patches(
        tar_bz2, conda, PatchInstructions.from_json(HOTFIX_INSTRUCTIONS)
    )
    expected = _reference(doc, HOTFIX_INSTRUCTIONS)
    assert (_decoded(new_tar), _decoded(new_conda), removed) == (
        expected["packages"],
        expected["packages.conda"],
        expected["removed"],
    )


# --- edge cases ----------------------------------------------------------------------------


def _one(record: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    fn = "a-1.0-0.tar.bz2"
    new_tar, _, _ = apply_patches(
        {fn: encode_record(record)},
        {},
        PatchInstructions.from_json({"packages": {fn: patch}}),
    )
    return decode_record(new_tar[fn])


def test_null_for_an_absent_field_leaves_it_absent() -> None:
    assert _one({"name": "a", "depends": []}, {"features": None}) == {
        "name": "a",
        "depends": [],
    }


def test_nested_objects_merge_key_by_key() -> None:
    record = {"name": "a", "run_exports": {"weak": ["a"], "strong": ["b"]}}
    patched = _one(record, {"run_exports": {"weak": ["c"], "strong": None, "noarch": ["d"]}})
    assert patched["run_exports"] == {"weak": ["c"], "noarch": ["d"]}


def test_revoke_without_depends_and_twice() -> None:
    fn = "a-1.0-0.conda"
    doc = {"revoke": [fn, fn]}
    already = {"name": "a", "depends": [REVOKED_DEPENDENCY]}
    _, new_conda, _ = apply_patches(
        {}, {fn: encode_record({"name": "a"})}, PatchInstructions.from_json(doc)
    )
    assert decode_record(new_conda[fn]) == {
        "name": "a",
        "revoked": True,
        "depends": [REVOKED_DEPENDENCY],
    }
    _, new_conda, _ = apply_patches(
        {}, {fn: encode_record(already)}, PatchInstructions.from_json(doc)
    )
    assert decode_record(new_conda[fn])["depends"] == [REVOKED_DEPENDENCY]


def test_conda_specific_patch_applies_after_the_tar_bz2_one() -> None:
    doc = {
        "packages": {"a-1-0.tar.bz2": {"license": "MIT", "depends": ["x"]}},
        "packages.conda": {"a-1-0.conda": {"license": "BSD"}},
    }
    _, new_conda, _ = apply_patches(
        {},
        {"a-1-0.conda": encode_record({"name": "a"})},
        PatchInstructions.from_json(doc),
    )
    assert decode_record(new_conda["a-1-0.conda"]) == {
        "name": "a",
        "license": "BSD",
        "depends": ["x"],
    }


# --- documents -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [case[1] for case in RATTLER_CASES])
def test_real_documents_roundtrip(name: str) -> None:
    instructions = PatchInstructions.from_json(_json(PATCH_DIR / name))
    assert PatchInstructions.from_json(instructions.to_json()) == instructions


def test_to_json_shape() -> None:
    doc = PatchInstructions.from_json(HOTFIX_INSTRUCTIONS).to_json()
    assert doc["patch_instructions_version"] == 1
    assert doc["packages.conda"] == {}
    assert doc["revoke"] == ["revoke_test-1.0-0.tar.bz2"]
    assert doc["packages"]["track_features_test-1.0-0.tar.bz2"] == {"track_features": None}


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([], "JSON object"),
        ({"pakages": {}}, "unknown top-level"),
        ({"patch_instructions_version": 2}, "patch_instructions_version"),
        ({"patch_instructions_version": True}, "patch_instructions_version"),
        ({"packages": []}, "'packages' must be an object"),
        ({"packages": {"a-1-0.conda": {}}}, "must end with .tar.bz2"),
        ({"packages.conda": {"a-1-0.tar.bz2": {}}}, "must end with .conda"),
        ({"packages": {"../a-1-0.tar.bz2": {}}}, "not a package filename"),
        ({"packages": {"a-1-0.tar.bz2": ["depends"]}}, "must be an object of fields"),
        (
            {"packages": {"a-1-0.tar.bz2": {"sha256": "00"}}},
            "'sha256' cannot be patched",
        ),
        (
            {"packages": {"a-1-0.tar.bz2": {"version": "2"}}},
            "'version' cannot be patched",
        ),
        ({"packages": {"a-1-0.tar.bz2": {"depends": "zlib"}}}, "list of strings"),
        ({"packages": {"a-1-0.tar.bz2": {"constrains": [1]}}}, "list of strings"),
        ({"packages": {"a-1-0.tar.bz2": {"license": 3}}}, "string or null"),
        ({"packages": {"a-1-0.tar.bz2": {"track_features": 3}}}, "track_features"),
        ({"revoke": "a-1-0.conda"}, "'revoke' must be a list"),
        ({"remove": ["a-1-0.zip"]}, "must end with .tar.bz2 or .conda"),
        ({"remove": [7]}, "not a package filename"),
    ],
)
def test_invalid_documents_are_refused_clearly(doc: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        PatchInstructions.from_json(doc)
    assert info.value.code == "patch:invalid"
    assert fragment in info.value.detail


def test_valid_optional_forms() -> None:
    doc = {
        "patch_instructions_version": 0,
        "packages": {
            "a-1-0.tar.bz2": {
                "track_features": "x y",
                "features": None,
                "depends": None,
            },
            "b-1-0.tar.bz2": {
                "track_features": ["x"],
                "timestamp": 1,
                "revoked": False,
            },
        },
        "revoke": None,
    }
    instructions = PatchInstructions.from_json(doc)
    assert instructions.revoke == []
    assert not instructions.is_empty()
    assert PatchInstructions.from_json({}).is_empty()


def test_merged_later_layer_wins_and_lists_union() -> None:
    base = PatchInstructions.from_json(
        {
            "packages": {
                "a-1-0.tar.bz2": {
                    "license": "MIT",
                    "depends": ["x"],
                    "run_exports": {"weak": ["a"]},
                }
            },
            "revoke": ["a-1-0.tar.bz2"],
            "remove": ["b-1-0.conda"],
        }
    )
    later = PatchInstructions.from_json(
        {
            "packages": {"a-1-0.tar.bz2": {"license": None, "run_exports": {"strong": ["b"]}}},
            "packages.conda": {"c-1-0.conda": {"license": "BSD"}},
            "revoke": ["a-1-0.tar.bz2", "c-1-0.conda"],
        }
    )
    merged = base.merged(later)
    assert merged.packages == {
        "a-1-0.tar.bz2": {
            "license": None,
            "depends": ["x"],
            "run_exports": {"weak": ["a"], "strong": ["b"]},
        }
    }
    assert merged.packages_conda == {"c-1-0.conda": {"license": "BSD"}}
    assert merged.revoke == ["a-1-0.tar.bz2", "c-1-0.conda"]
    assert merged.remove == ["b-1-0.conda"]
    assert base.packages["a-1-0.tar.bz2"]["license"] == "MIT"  # inputs untouched


def test_merged_equals_applying_layers_in_sequence() -> None:
    doc = _json(PATCH_DIR / "repodata_from_packages.json")
    tar_bz2, conda = _encoded(doc)
    first = PatchInstructions.from_json(_json(PATCH_DIR / "patch_instructions.json"))
    second = PatchInstructions.from_json(_json(PATCH_DIR / "patch_instructions_4.json"))

    step_tar, step_conda, _ = apply_patches(tar_bz2, conda, first)
    seq_tar, seq_conda, seq_removed = apply_patches(step_tar, step_conda, second)
    one_tar, one_conda, one_removed = apply_patches(tar_bz2, conda, first.merged(second))

    assert (_decoded(one_tar), _decoded(one_conda), one_removed) == (
        _decoded(seq_tar),
        _decoded(seq_conda),
        seq_removed,
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timestamp": 10**40}, "timestamp"),  # issue 11: wedged publication for good
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": 1.0e12}, "timestamp"),
        ({"noarch": "yes"}, "noarch"),
        ({"revoked": "true"}, "revoked"),
        ({"arch": 64}, "arch"),
        ({"run_exports": {"weak": "x"}}, "run_exports"),
        ({"extra_depends": {"test": [1]}}, "extra_depends"),
        ({"x": -(2**63) - 1}, "x"),
        ({"x": {"y": float("inf")}}, "x"),
        ({"x": [[[[[[[[[[1]]]]]]]]]]}, "x"),
        ({"x": "a" * 10_001}, "x"),
    ],
)
def test_patch_values_are_checked_like_repodata_records(
    changes: dict[str, object], field: str
) -> None:
    for section, fn in (("packages", "a-1-0.tar.bz2"), ("packages.conda", "a-1-0.conda")):
        with pytest.raises(InvalidInputError) as error:
            PatchInstructions.from_json({section: {fn: changes}})
        assert error.value.code == "patch:invalid"
        assert error.value.extra["field"] == field
        assert repr(field) in error.value.detail


def test_patch_values_within_range_are_accepted() -> None:
    changes = {
        "timestamp": 253_402_300_799_999,
        "noarch": "python",
        "run_exports": {"weak": ["zlib >=1.3"]},
        "x_custom": {"n": 2**63 - 1, "f": 1.5, "l": ["a", None, True]},
    }
    doc = PatchInstructions.from_json({"packages.conda": {"a-1-0.conda": changes}})
    assert doc.packages_conda["a-1-0.conda"] == changes
