from __future__ import annotations

import pytest

from stockade.conda.errors import PackageValidationError
from stockade.conda.names import (
    is_valid_name,
    is_valid_subdir,
    parse_filename,
    validate_build,
    validate_name,
    validate_subdir,
    validate_version,
)


@pytest.mark.parametrize(
    "name",
    [
        "numpy",
        "python-dateutil",
        "ruamel.yaml",
        "_libgcc_mutex",
        "_openmp_mutex",
        "r-base",
        "3to2",
        "a",
        "x-",
        "conda-index-pkg-a",
        "run_exports_versions",
        "a" * 64,
    ],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "NumPy",  # CEP 26: lowercase only
        "__virtual",  # two underscores: virtual packages only
        "-leading-dash",
        ".hidden",
        "a--b",
        "a._b",
        "a b",
        "a/b",
        "a\\b",
        "caf\u00e9",
        "name\n",
        "a" * 65,
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(PackageValidationError) as caught:
        validate_name(name)
    assert caught.value.code == "package:name"
    assert caught.value.extra == {"rule": "name", "field": "name"}
    assert not is_valid_name(name)


def test_name_must_be_a_string() -> None:
    with pytest.raises(PackageValidationError, match="must be a string"):
        validate_name(3)


@pytest.mark.parametrize(
    "version", ["1.0", "2024.7.4", "1!2.0", "1.0.post1", "3.99.99", "1_2+local"]
)
def test_valid_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["", "1.0-1", "1.0RC1", "1 0", "1.*", "v" * 65])
def test_invalid_versions(version: str) -> None:
    with pytest.raises(PackageValidationError) as caught:
        validate_version(version)
    assert caught.value.code == "package:version"
    assert caught.value.extra["field"] == "version"


@pytest.mark.parametrize(
    "build", ["0", "py37_1000", "hbcca054_0", "cpython", "h4616a5c_0", "a.b+C"]
)
def test_valid_builds(build: str) -> None:
    assert validate_build(build) == build


@pytest.mark.parametrize("build", ["", "py-0", "a b", "x!", "b" * 65])
def test_invalid_builds(build: str) -> None:
    with pytest.raises(PackageValidationError) as caught:
        validate_build(build)
    assert caught.value.code == "package:build"


@pytest.mark.parametrize("subdir", ["noarch", "linux-64", "osx-arm64", "win-64", "linux-fake"])
def test_valid_subdirs(subdir: str) -> None:
    assert validate_subdir(subdir) == subdir
    assert is_valid_subdir(subdir)


@pytest.mark.parametrize(
    "subdir", ["", "Linux-64", "linux", "linux-64-x", "../x", "noarch/", "a-" + "b" * 31]
)
def test_invalid_subdirs(subdir: str) -> None:
    with pytest.raises(PackageValidationError) as caught:
        validate_subdir(subdir)
    assert caught.value.code == "package:subdir"
    assert not is_valid_subdir(subdir)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("numpy-1.26.4-py311h_0.conda", ("numpy", "1.26.4", "py311h_0", ".conda")),
        (
            "python-dateutil-2.9-pyhd8ed1ab_0.tar.bz2",
            ("python-dateutil", "2.9", "pyhd8ed1ab_0", ".tar.bz2"),
        ),
        (
            "clobber-fd-rev-1-0.1.0-h4616a5c_0.conda",
            ("clobber-fd-rev-1", "0.1.0", "h4616a5c_0", ".conda"),
        ),
    ],
)
def test_parse_filename(filename: str, expected: tuple[str, str, str, str]) -> None:
    assert parse_filename(filename) == expected


@pytest.mark.parametrize(
    "filename",
    [
        "",
        "numpy-1.0-0.zip",
        "numpy-1.0-0.tar.gz",
        "numpy-1.0-0",
        "numpy-1.0.conda",
        "-1.0-0.conda",
        "numpy--0.conda",
        "numpy-1.0-.conda",
        ".conda",
        "dir/numpy-1.0-0.conda",
        "..\\numpy-1.0-0.conda",
        "numpy-1.0-0\x00.conda",
        "numpy-1.0-0.conda\n",
        "a" * 205 + "-1-0.conda",
    ],
)
def test_bad_filenames(filename: str) -> None:
    with pytest.raises(PackageValidationError) as caught:
        parse_filename(filename)
    assert caught.value.code == "package:filename"
    assert caught.value.extra["field"] == "filename"
