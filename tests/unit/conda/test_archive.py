from __future__ import annotations

import bz2
import io
import json
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
import zstandard

from stockade.conda import tarstream
from stockade.conda.archive import PackageInfo, PathEntry, ValidationLimits, inspect_package
from stockade.conda.errors import PackageTooLargeError, PackageValidationError
from stockade.conda.tarstream import QUADRATIC_PAX
from stockade.core.errors import ErrorKind, StockadeError
from tests.conftest import TESTDATA
from tests.factories.packages import (
    DEFAULT_TIMESTAMP,
    Entry,
    PackageSpec,
    build,
    build_conda,
    build_tar_bz2,
    conda_bomb,
    conda_members,
    directory,
    file,
    hardlink,
    special,
    symlink,
    tar_bytes,
    tar_bz2_bomb,
    write_zip,
    zstd,
)

LIMITS = ValidationLimits()
NOW_MS = DEFAULT_TIMESTAMP + 1000
LATER_MS = 4_000_000_000_000  # after every real package of the test data (year 2096)
Format = Literal["conda", "tar.bz2"]
FORMATS: list[Format] = ["conda", "tar.bz2"]


def _real_packages() -> list[Path]:
    found = [*TESTDATA.glob("packages/*"), *TESTDATA.glob("channels/**/*")]
    return sorted(p for p in found if p.name.endswith((".conda", ".tar.bz2")))


def _inspect(path: Path, filename: str | None = None, **kwargs: Any) -> PackageInfo:
    kwargs.setdefault("limits", LIMITS)
    kwargs.setdefault("now_ms", NOW_MS)
    return inspect_package(path, filename or path.name, **kwargs)


def _refused(path: Path, rule: str, filename: str | None = None, **kwargs: Any) -> StockadeError:
    with pytest.raises((PackageValidationError, PackageTooLargeError)) as caught:
        _inspect(path, filename, **kwargs)
    error = caught.value
    assert error.code == f"package:{rule}", error.detail
    assert error.extra["rule"] == rule
    return error


def _index_of(path: Path) -> dict[str, Any]:
    """Read info/index.json independently of the code under test."""
    if path.name.endswith(".tar.bz2"):
        tar_data = bz2.decompress(path.read_bytes())
    else:
        stem = path.name.removesuffix(".conda")
        with zipfile.ZipFile(path) as archive, archive.open(f"info-{stem}.tar.zst") as raw:
            tar_data = zstandard.ZstdDecompressor().stream_reader(raw).read()
    with tarfile.open(fileobj=io.BytesIO(tar_data)) as tar:
        member = tar.extractfile("info/index.json")
        assert member is not None
        index: dict[str, Any] = json.loads(member.read())
    return index


# Real packages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _real_packages(), ids=lambda p: p.name)
def test_real_packages_are_accepted(path: Path) -> None:
    info = _inspect(path, now_ms=LATER_MS)
    assert info.index == _index_of(path)
    assert info.filename == path.name
    assert info.format == ("conda" if path.name.endswith(".conda") else "tar.bz2")
    assert path.name.startswith(f"{info.name}-{info.version}-{info.build}.")
    assert (info.build_number, info.subdir) == (info.index["build_number"], info.index["subdir"])
    assert info.unpacked_size > 0


def test_every_real_package_was_found() -> None:
    assert len(_real_packages()) >= 95


def test_test_recipes_match_their_repodata() -> None:
    for repodata_path in sorted(TESTDATA.glob("channels/test-recipes/*/repodata.json")):
        repodata = json.loads(repodata_path.read_text())
        records = {**repodata.get("packages", {}), **repodata.get("packages.conda", {})}
        assert records
        for filename, record in records.items():
            info = _inspect(repodata_path.parent / filename, now_ms=LATER_MS)
            assert info.subdir == repodata_path.parent.name
            for field in ("name", "version", "build", "build_number"):
                assert info.index[field] == record[field]
            assert info.index.get("depends", []) == record.get("depends", [])


def test_real_package_details() -> None:
    packages = TESTDATA / "packages"
    scripts = _inspect(packages / "link-scripts-0.1.0-h4616a5c_0.conda", now_ms=LATER_MS)
    assert scripts.link_scripts == [
        "Scripts/.link-scripts-post-link.bat",
        "Scripts/.link-scripts-pre-unlink.bat",
        "bin/.link-scripts-post-link.sh",
        "bin/.link-scripts-pre-unlink.sh",
    ]
    cph = _inspect(packages / "cph_test_data-0.0.1-0.tar.bz2", now_ms=LATER_MS)
    dangling = [p for p in cph.paths if p.path == "lib/libdangle.lib"]  # a dangling link: allowed
    assert [p.path_type for p in dangling] == ["softlink"]
    run_exports = packages / "run_exports_versions-1.0-he35c369_0.tar.bz2"
    assert _inspect(run_exports, now_ms=LATER_MS).run_exports
    flask = _inspect(
        packages / "flask-0.11.1-py_0.tar.bz2", now_ms=LATER_MS
    )  # info/files, no paths.json
    assert flask.about["home"]
    assert PathEntry("site-packages/flask/app.py", "hardlink", None, None) in flask.paths


# The broken packages of the test data -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("bad_package.tar.bz2", "format"),  # not a bzip2 stream
        ("another_bad_package.conda", "format"),  # zero bytes
        ("a.tar.bz2", "missing-index"),
        ("subfolder.tar.bz2", "missing-index"),
    ],
)
def test_shared_bad_packages_under_a_valid_name(name: str, rule: str) -> None:
    ext = ".conda" if name.endswith(".conda") else ".tar.bz2"
    _refused(TESTDATA / "bad" / name, rule, filename=f"upload-1.0-0{ext}")


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("bad_package.tar.bz2", "filename"),
        ("another_bad_package.conda", "filename"),
        ("a.tar.bz2", "filename"),
        ("subfolder.tar.bz2", "filename"),
        ("dotslash-test-1.0.0-0.conda", "format"),  # no metadata.json (and ./-prefixed members)
        ("ca-certificates-2024.7.4-hbcca054_0.conda", "unsafe-path"),  # zip members under a dir
    ],
)
def test_shared_bad_packages(name: str, rule: str) -> None:
    _refused(TESTDATA / "bad" / name, rule)


def test_nested_zip_names_the_member() -> None:
    error = _refused(TESTDATA / "bad" / "ca-certificates-2024.7.4-hbcca054_0.conda", "unsafe-path")
    assert error.extra["member"].startswith("Users/jcorreia/Downloads/")


def test_dotslash_members_are_normalized(tmp_path: Path) -> None:
    source = TESTDATA / "bad" / "dotslash-test-1.0.0-0.conda"
    with zipfile.ZipFile(source) as archive:
        members = [(n, archive.read(n)) for n in archive.namelist()]
    fixed = write_zip(
        tmp_path / source.name, [("metadata.json", b'{"conda_pkg_format_version": 2}'), *members]
    )
    error = _refused(fixed, "index-json")  # ./info/index.json was found; it has no subdir
    assert error.extra["field"] == "subdir"


@pytest.mark.parametrize("fmt", FORMATS)
def test_dotslash_prefix_is_accepted(tmp_path: Path, fmt: Format) -> None:
    spec = PackageSpec(payload=(directory("."), file("./lib/a.txt", b"a")))
    spec = replace(
        spec,
        paths=json.dumps({"paths": [{"_path": "lib/a.txt", "path_type": "hardlink"}]}).encode(),
    )
    info = _inspect(build(tmp_path, spec, fmt=fmt))
    assert [p.path for p in info.paths] == ["lib/a.txt"]


# Valid packages from the factory ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_factory_package_is_accepted(tmp_path: Path, fmt: Format) -> None:
    spec = PackageSpec(
        name="demo",
        version="2.1",
        build="h1_3",
        build_number=3,
        subdir="linux-64",
        depends=("python >=3.11",),
        payload=(
            directory("lib"),
            file("lib/demo.so", b"\x7fELF"),
            symlink("lib/demo.so.2", "demo.so"),
            symlink("lib/up", "../bin"),
            hardlink("lib/copy.so", "lib/demo.so"),
            file("bin/.demo-post-link.sh", b"echo hi\n", mode=0o755),
        ),
        about={"home": "https://example.org"},
        run_exports={"weak": ["demo >=2.1"]},
    )
    info = _inspect(build(tmp_path, spec, fmt=fmt), expected_subdir="linux-64")
    assert (info.name, info.version, info.build, info.build_number, info.subdir) == (
        "demo",
        "2.1",
        "h1_3",
        3,
        "linux-64",
    )
    assert info.index == spec.index()
    assert info.about == {"home": "https://example.org"}
    assert info.run_exports == {"weak": ["demo >=2.1"]}
    assert info.link_scripts == ["bin/.demo-post-link.sh"]
    assert [p.path_type for p in info.paths] == [
        "hardlink",
        "softlink",
        "softlink",
        "hardlink",
        "hardlink",
    ]
    assert info.unpacked_size > 0


def test_paths_derived_from_members_without_paths_json(tmp_path: Path) -> None:
    spec = PackageSpec(paths="none", payload=(file("a.txt", b"abc"), symlink("b", "a.txt")))
    info = _inspect(build_conda(tmp_path, spec))
    assert info.paths == [
        PathEntry(
            "a.txt",
            "hardlink",
            3,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        PathEntry("b", "softlink", None, None),
    ]


def test_seconds_timestamps_and_no_timestamp(tmp_path: Path) -> None:
    now_s = NOW_MS // 1000
    _inspect(build_conda(tmp_path, PackageSpec(timestamp=now_s + 3600)))
    _inspect(build_conda(tmp_path, PackageSpec(name="b", timestamp=None)))


# Evil packages ------------------------------------------------------------------------------------


MEMBER_CASES: list[tuple[str, tuple[Entry, ...], str]] = [
    ("dotdot", (file("../x", b"x"),), "path-traversal"),
    ("dotdot-inside", (file("lib/../../x", b"x"),), "path-traversal"),
    ("absolute", (file("/etc/x", b"x"),), "path-traversal"),
    ("drive", (file("C:/x", b"x"),), "path-traversal"),
    ("backslash", (file("lib\\..\\x", b"x"),), "unsafe-path"),
    ("nul", (Entry("lib/ok", b"x", pax={"path": "lib/a\x00b"}),), "unsafe-path"),
    ("newline", (file("lib/a\nb", b"x"),), "unsafe-path"),
    ("empty-component", (file("lib//x", b"x"),), "unsafe-path"),
    ("not-utf8", (file("lib/\udcff", b"x"),), "encoding"),
    ("symlink-up", (symlink("lib/passwd", "../../etc/passwd"),), "link-escape"),
    ("symlink-absolute", (symlink("lib/passwd", "/etc/passwd"),), "link-escape"),
    ("symlink-chain", (symlink("lib/d", "."), symlink("lib/e", "d/../../..")), "link-escape"),
    (
        "symlink-via-dir",
        (directory("a/b"), symlink("a/b/c", "../.."), symlink("x", "a/b/c/..")),
        "link-escape",
    ),
    ("symlink-loop", (symlink("a", "b/x"), symlink("b", "a/y")), "link-escape"),
    ("hardlink-outside", (hardlink("lib/x", "../../etc/passwd"),), "link-escape"),
    ("hardlink-absolute", (hardlink("lib/x", "/etc/passwd"),), "link-escape"),
    ("hardlink-missing", (hardlink("lib/x", "lib/nothing"),), "link-escape"),
    ("fifo", (special("lib/fifo", "fifo"),), "special-file"),
    ("chardev", (special("dev/null", "chardev"),), "special-file"),
    ("blockdev", (special("dev/sda", "blockdev"),), "special-file"),
    ("setuid", (file("bin/su", b"x", mode=0o4755),), "special-file"),
    ("duplicate", (file("lib/a", b"x"), file("lib/a", b"y")), "duplicate-member"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("payload", "rule"), [c[1:] for c in MEMBER_CASES], ids=[c[0] for c in MEMBER_CASES]
)
def test_evil_members(tmp_path: Path, fmt: Format, payload: tuple[Entry, ...], rule: str) -> None:
    spec = PackageSpec(payload=payload, paths="none")
    error = _refused(build(tmp_path, spec, fmt=fmt), rule)
    assert "member" in error.extra


def test_symlink_inside_via_other_link_is_accepted(tmp_path: Path) -> None:
    payload = (
        directory("share/data"),
        symlink("lib/d", "../share/data"),
        symlink("lib/e", "d/../.."),
    )
    _inspect(build_conda(tmp_path, PackageSpec(payload=payload, paths="none")))


def test_member_outside_info_in_info_tar(tmp_path: Path) -> None:
    spec = PackageSpec(extra_info=(file("bin/hidden", b"x"),))
    assert _refused(build_conda(tmp_path, spec), "format").extra["member"] == "bin/hidden"


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_must_be_regular_files(tmp_path: Path, fmt: Format) -> None:
    spec = PackageSpec(paths="none", extra_info=(symlink("info/paths.json", "index.json"),))
    _refused(build(tmp_path, spec, fmt=fmt), "format")


def test_info_member_in_pkg_tar(tmp_path: Path) -> None:
    spec = PackageSpec(payload=(file("info/index.json", b"{}"),), paths="none")
    _refused(build_conda(tmp_path, spec), "format")


@pytest.mark.parametrize("fmt", FORMATS)
def test_filename_mismatch(tmp_path: Path, fmt: Format) -> None:
    spec = PackageSpec(name="real")
    if fmt == "conda":  # the zip members are named after the upload name
        path = build_conda(tmp_path, spec, filename="other-1.0-0.conda", stem="other-1.0-0")
    else:
        path = build_tar_bz2(tmp_path, spec, filename="other-1.0-0.tar.bz2")
    assert _refused(path, "filename-mismatch").extra["field"] == "name"
    spec = PackageSpec(index_extra={"build": "1"})
    error = _refused(build(tmp_path, spec, fmt=fmt), "filename-mismatch")
    assert error.extra["field"] == "build"


def test_conda_inner_names_must_match_the_filename(tmp_path: Path) -> None:
    path = build_conda(tmp_path, PackageSpec(name="real"))
    renamed = path.rename(tmp_path / "other-1.0-0.conda")
    _refused(renamed, "format")


@pytest.mark.parametrize("fmt", FORMATS)
def test_subdir_mismatch(tmp_path: Path, fmt: Format) -> None:
    path = build(tmp_path, PackageSpec(subdir="linux-64"), fmt=fmt)
    _inspect(path, expected_subdir="linux-64")
    error = _refused(path, "subdir-mismatch", expected_subdir="noarch")
    assert error.extra["field"] == "subdir"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "timestamp", [NOW_MS + 2 * 24 * 3600 * 1000, (NOW_MS // 1000) + 2 * 24 * 3600]
)
def test_future_timestamp(tmp_path: Path, fmt: Format, timestamp: int) -> None:
    path = build(tmp_path, PackageSpec(timestamp=timestamp), fmt=fmt)
    assert _refused(path, "future-timestamp").extra["field"] == "timestamp"
    _inspect(path, now_ms=NOW_MS + 2 * 24 * 3600 * 1000)


@pytest.mark.parametrize(
    ("spec", "rule", "field"),
    [
        (PackageSpec(name="Upper"), "name", "name"),
        (PackageSpec(name="__virtual"), "name", "name"),
        (PackageSpec(version="1.0RC1"), "version", "version"),
        (PackageSpec(subdir="Linux-64"), "subdir", "subdir"),
        (PackageSpec(index_extra={"build_number": "0"}), "index-json", "build_number"),
        (PackageSpec(index_extra={"build_number": True}), "index-json", "build_number"),
        (PackageSpec(index_extra={"depends": "python"}), "index-json", "depends"),
        (PackageSpec(index_extra={"timestamp": "now"}), "index-json", "timestamp"),
        (PackageSpec(index_raw=b'{"name": "example", "version": "1.0"}'), "index-json", "build"),
        (PackageSpec(index_raw=b'["not", "an", "object"]'), "index-json", None),
        (PackageSpec(index_raw=b"{'single': 'quotes'}"), "index-json", None),
        (PackageSpec(index_raw=b'{"name": "caf\xe9"}'), "encoding", None),
        (PackageSpec(with_index=False), "missing-index", None),
        (PackageSpec(about=None, extra_info=(file("info/about.json", b"[1]"),)), "info-json", None),
        (PackageSpec(extra_info=(file("info/link.json", b'{"x": "\xff"}'),)), "encoding", None),
        (PackageSpec(extra_info=(file("info/files", b"lib/\xff\n"),)), "encoding", None),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_index_and_info(
    tmp_path: Path, fmt: Format, spec: PackageSpec, rule: str, field: str | None
) -> None:
    error = _refused(build(tmp_path, spec, fmt=fmt), rule)
    assert error.extra.get("field") == field


def _paths(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"paths": list(entries), "paths_version": 1}).encode()


A_TXT = {
    "_path": "a.txt",
    "path_type": "hardlink",
    "size_in_bytes": 1,
    "sha256": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
}


@pytest.mark.parametrize(
    ("paths", "member"),
    [
        (_paths(A_TXT, {"_path": "ghost", "path_type": "hardlink"}), "ghost"),
        (_paths(), "a.txt"),
        (_paths({**A_TXT, "sha256": "0" * 64}), "a.txt"),
        (_paths({**A_TXT, "size_in_bytes": 2}), "a.txt"),
        (_paths({**A_TXT, "path_type": "softlink"}), "a.txt"),
        (_paths({**A_TXT, "path_type": "weird"}), "a.txt"),
        (_paths(A_TXT, A_TXT), "a.txt"),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_paths_json_disagreeing(tmp_path: Path, fmt: Format, paths: bytes, member: str) -> None:
    spec = PackageSpec(payload=(file("a.txt", b"a"),), paths=paths)
    error = _refused(build(tmp_path, spec, fmt=fmt), "paths-mismatch")
    assert error.extra["member"] == member


def test_paths_json_malformed(tmp_path: Path) -> None:
    spec = PackageSpec(paths=b'{"paths": [{"path_type": "hardlink"}]}')
    assert _refused(build_conda(tmp_path, spec), "info-json").extra["field"] == "_path"


# The .conda container ----------------------------------------------------------------------------


def _conda_with(tmp_path: Path, members: list[tuple[str, bytes]], **kwargs: Any) -> Path:
    return write_zip(tmp_path / f"{PackageSpec().stem}.conda", members, **kwargs)


def test_conda_structure(tmp_path: Path) -> None:
    members = conda_members(PackageSpec())
    _refused(_conda_with(tmp_path, members[:2]), "format")  # no pkg tar
    _refused(_conda_with(tmp_path, [members[0], members[2]]), "format")  # no info tar
    _refused(_conda_with(tmp_path, members[1:]), "format")  # no metadata.json
    _refused(_conda_with(tmp_path, [*members, ("extra.txt", b"")]), "format")
    _refused(_conda_with(tmp_path, [*members, members[2]]), "format")  # repeated
    _refused(_conda_with(tmp_path, members, compression=zipfile.ZIP_DEFLATED), "format")
    _refused(
        _conda_with(
            tmp_path, [("metadata.json", b'{"conda_pkg_format_version": 1}'), *members[1:]]
        ),
        "format",
    )
    _refused(_conda_with(tmp_path, [("../metadata.json", b"{}"), *members]), "path-traversal")
    _refused(_conda_with(tmp_path, [("dir/metadata.json", b"{}"), *members]), "unsafe-path")
    _refused(
        _conda_with(tmp_path, [(n, d[:-20] if n.startswith("pkg") else d) for n, d in members]),
        "format",
    )


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"PK\x03\x04" + data[4:40],
        lambda data: b"not a zip at all",
    ],
)
def test_conda_corrupt_zip(tmp_path: Path, corrupt: Any) -> None:
    path = build_conda(tmp_path)
    path.write_bytes(corrupt(path.read_bytes()))
    _refused(path, "format")


@pytest.mark.parametrize(
    "pkg_zst",
    [
        b"not zstd at all",
        zstd(b"not a tar archive" * 100),
        zstd(tar_bytes([file("a.txt", b"a" * 4096)])[:2048]),  # tar cut inside a member
        zstd(tar_bytes([file("a.txt", b"a")], end=False)),  # no end-of-archive marker
        zstd(tar_bytes([file("a.txt", b"a")]) + b"smuggled"),  # data after the end marker
        zstd(tar_bytes([file("a.txt", b"a")])[:512] + b"\x01" * 512),  # corrupt header
    ],
)
def test_conda_broken_pkg_tar(tmp_path: Path, pkg_zst: bytes) -> None:
    spec = PackageSpec(payload=(), paths="none")
    _refused(build_conda(tmp_path, spec, pkg_zst=pkg_zst), "format")


def test_tar_bz2_broken(tmp_path: Path) -> None:
    spec = PackageSpec()
    path = build_tar_bz2(tmp_path, spec)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    _refused(path, "format")  # truncated bzip2 stream
    path.write_bytes(tar_bytes(spec.info_entries()))
    _refused(path, "format")  # a tar, but not compressed
    path.write_bytes(b"BZh9" + b"\x00" * 64)
    _refused(path, "format")
    path.write_bytes(bz2.compress(b"just text"))
    _refused(path, "format")


def test_sparse_and_oversized_headers(tmp_path: Path) -> None:
    sparse = Entry("lib/sparse", b"x", pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})
    _refused(build_conda(tmp_path, PackageSpec(payload=(sparse,), paths="none")), "special-file")
    long_name = "lib/" + "n" * 20_000
    _refused(
        build_conda(tmp_path, PackageSpec(payload=(file(long_name, b"x"),), paths="none")), "format"
    )


@pytest.mark.skipif(not QUADRATIC_PAX, reason="this Python parses pax headers in linear time")
def test_pax_header_with_a_long_run_of_digits(tmp_path: Path) -> None:
    digits = Entry("lib/ok", b"x", pax={"comment": "1" * 20})
    _refused(build_conda(tmp_path, PackageSpec(payload=(digits,), paths="none")), "format")


def test_pax_headers_in_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = tuple(Entry(f"lib/{i}", b"x", pax={"comment": "c" * 200}) for i in range(20))
    path = build_conda(tmp_path, PackageSpec(payload=payload, paths="none"))
    _inspect(path)
    monkeypatch.setattr(tarstream, "MAX_PAX_TOTAL", 2000)
    _refused(path, "format")


def test_zip64_local_headers_are_accepted(tmp_path: Path) -> None:
    members = conda_members(PackageSpec())
    _inspect(write_zip(tmp_path / f"{PackageSpec().stem}.conda", members, force_zip64=True))


def test_conda_central_directory_too_large(tmp_path: Path) -> None:
    members = conda_members(PackageSpec())
    padding = [(f"{i:05d}" + "x" * 200, b"") for i in range(400)]
    _refused(_conda_with(tmp_path, [*members, *padding]), "format")


def test_tar_bz2_with_info_last(tmp_path: Path) -> None:
    spec = PackageSpec()
    _inspect(build_tar_bz2(tmp_path, spec, entries=[*spec.payload, *spec.info_entries()]))


# Size caps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_archive_size(tmp_path: Path, fmt: Format) -> None:
    path = build(tmp_path, fmt=fmt)
    limits = ValidationLimits(max_archive_size=path.stat().st_size - 1)
    error = _refused(path, "archive-size", limits=limits)
    assert isinstance(error, PackageTooLargeError)
    assert error.kind is ErrorKind.TOO_LARGE


@pytest.mark.parametrize("make", [conda_bomb, tar_bz2_bomb], ids=["zstd", "bz2"])
def test_decompression_bomb_ratio(tmp_path: Path, make: Any) -> None:
    path = make(tmp_path, 1024**3)  # 1 GiB of zeros
    assert path.stat().st_size < 64 * 1024
    _refused(path, "decompression-ratio")


@pytest.mark.parametrize("make", [conda_bomb, tar_bz2_bomb], ids=["zstd", "bz2"])
def test_decompression_bomb_unpacked_size(tmp_path: Path, make: Any) -> None:
    path = make(tmp_path, 1024**3)
    _refused(path, "unpacked-size", limits=ValidationLimits(max_unpacked_size=1024**2))


@pytest.mark.parametrize("make", [conda_bomb, tar_bz2_bomb], ids=["zstd", "bz2"])
def test_big_but_allowed_unpacked_size(tmp_path: Path, make: Any) -> None:
    path = make(tmp_path, 16 * 1024**2)
    info = _inspect(path, limits=ValidationLimits(max_ratio=10**6))
    assert info.paths == [
        PathEntry("lib/zeros.bin", "hardlink", 16 * 1024**2, info.paths[0].sha256)
    ]
    assert info.unpacked_size > 16 * 1024**2


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_size(tmp_path: Path, fmt: Format) -> None:
    spec = PackageSpec(extra_info=(file("info/recipe/meta.yaml", b"x" * 8192),))
    path = build(tmp_path, spec, fmt=fmt)
    error = _refused(path, "info-size", limits=ValidationLimits(max_info_size=4096))
    assert error.extra["member"] == "info/recipe/meta.yaml"
    _inspect(path, limits=ValidationLimits(max_info_size=16384))


@pytest.mark.parametrize("fmt", FORMATS)
def test_member_count(tmp_path: Path, fmt: Format) -> None:
    payload = tuple(file(f"lib/f{i}", b"") for i in range(20))
    path = build(tmp_path, PackageSpec(payload=payload), fmt=fmt)
    _refused(path, "member-count", limits=ValidationLimits(max_members=10))
    _inspect(path, limits=ValidationLimits(max_members=30))


def test_error_shape(tmp_path: Path) -> None:
    error = _refused(
        build_conda(tmp_path, PackageSpec(payload=(file("../x", b"x"),), paths="none")),
        "path-traversal",
    )
    assert isinstance(error, PackageValidationError)
    assert error.kind is ErrorKind.INVALID
    assert error.extra == {"rule": "path-traversal", "member": "../x"}
    assert "'..'" in error.detail
