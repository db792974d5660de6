"""Uploads with a hostile ``info/index.json`` (built with the package factory) are refused naming
the field; keys the server owns are dropped from what a package says about itself.

On the code before this fix, ``version: 1..2``, ``noarch: ["x"]``, ``license: {}``, a match spec
rattler cannot parse, ``build_number: 2**40`` and the other values below were all accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stockade.conda.archive import ValidationLimits, inspect_package
from stockade.conda.errors import PackageValidationError
from tests.factories.packages import DEFAULT_TIMESTAMP, PackageSpec, build

NOW_MS = DEFAULT_TIMESTAMP + 1000
FORMATS = ["conda", "tar.bz2"]

#: (what to put in index.json, the rule, the field named)
HOSTILE: list[tuple[dict[str, Any], str, str]] = [
    ({"noarch": ["x"]}, "index-json", "noarch"),
    ({"noarch": "weird"}, "index-json", "noarch"),
    ({"license": {}}, "index-json", "license"),
    ({"license_family": ["GPL"]}, "index-json", "license_family"),
    ({"depends": ["foo >=>1"]}, "index-json", "depends"),
    ({"depends": ["###"]}, "index-json", "depends"),
    ({"constrains": ["bar 1..2"]}, "index-json", "constrains"),
    ({"constrains": "bar"}, "index-json", "constrains"),
    ({"build_number": 2**40}, "index-json", "build_number"),
    ({"build_number": 1.0}, "index-json", "build_number"),
    ({"timestamp": 1e40}, "index-json", "timestamp"),
    ({"timestamp": 1.5}, "index-json", "timestamp"),
    ({"track_features": {"a": 1}}, "index-json", "track_features"),
    ({"features": ["mkl"]}, "index-json", "features"),
    ({"arch": 64}, "index-json", "arch"),
    ({"platform": ["linux"]}, "index-json", "platform"),
    ({"purls": ["not-a-purl"]}, "index-json", "purls"),
    ({"python_site_packages_path": "../../etc"}, "index-json", "python_site_packages_path"),
    ({"extra_depends": {"test": "pytest"}}, "index-json", "extra_depends"),
    ({"flags": "x"}, "index-json", "flags"),
    ({"run_exports": {"weak": 5}}, "index-json", "run_exports"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("extra", "rule", "field"), HOSTILE)
def test_hostile_index_fields(
    tmp_path: Path, fmt: str, extra: dict[str, Any], rule: str, field: str
) -> None:
    path = build(tmp_path, PackageSpec(index_extra=extra), fmt=fmt)  # type: ignore[arg-type]
    with pytest.raises(PackageValidationError) as caught:
        inspect_package(path, path.name, limits=ValidationLimits(), now_ms=NOW_MS)
    error = caught.value
    assert (error.code, error.extra["field"]) == (f"package:{rule}", field), error.detail
    assert field in error.detail and error.extra["member"] == "info/index.json"


@pytest.mark.parametrize("version", ["1..2", "1.", "1+", "1__2", "1.0+a+b"])
def test_versions_rattler_cannot_read(tmp_path: Path, version: str) -> None:
    """Each fits CEP 26's character set, which is why the old check let it through."""
    path = build(tmp_path, PackageSpec(version=version))
    with pytest.raises(PackageValidationError) as caught:
        inspect_package(path, path.name, limits=ValidationLimits(), now_ms=NOW_MS)
    assert caught.value.code == "package:version" and caught.value.extra["field"] == "version"
    assert "rattler" in caught.value.detail


def test_run_exports_json_is_typed(tmp_path: Path) -> None:
    path = build(tmp_path, PackageSpec(run_exports={"weak": "not-a-list"}))
    with pytest.raises(PackageValidationError) as caught:
        inspect_package(path, path.name, limits=ValidationLimits(), now_ms=NOW_MS)
    assert caught.value.code == "package:info-json"
    assert caught.value.extra["field"] == "run_exports"


def test_server_keys_are_dropped(tmp_path: Path) -> None:
    claims = {
        "url": "https://evil.example/x.conda",
        "fn": "other-1.0-0.conda",
        "channel": "https://evil.example/conda",
        "schannel": "evil",
        "md5": "0" * 32,
        "sha256": "0" * 64,
        "size": 1,
        "indexed_timestamp": 1,
        "legacy_bz2_md5": "nonsense",
    }
    spec = PackageSpec(index_extra=claims | {"license": "MIT", "noarch": "generic"})
    path = build(tmp_path, spec)
    info = inspect_package(path, path.name, limits=ValidationLimits(), now_ms=NOW_MS)
    assert not set(claims) & set(info.index)
    assert info.index["license"] == "MIT" and info.index["noarch"] == "generic"


@pytest.mark.parametrize("noarch", [True, False, "python", "generic", None])
def test_legacy_noarch_forms_are_accepted(tmp_path: Path, noarch: object) -> None:
    path = build(tmp_path, PackageSpec(index_extra={"noarch": noarch}))
    info = inspect_package(path, path.name, limits=ValidationLimits(), now_ms=NOW_MS)
    assert info.index["noarch"] == noarch
