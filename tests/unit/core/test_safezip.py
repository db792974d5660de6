"""The one safe-zip reader (core/safezip.py): each refusal, normal zips, and its three callers."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from stockade.conda.condazip import check_entries
from stockade.conda.errors import PackageValidationError
from stockade.conda.members import check_symlink_target, normalize_path
from stockade.conda.package import ValidationLimits
from stockade.conda.tarstream import Budget
from stockade.core.errors import ErrorKind
from stockade.core.safezip import (
    MAX_NAME_LENGTH,
    ProblemKind,
    UnsafeZipError,
    ZipLimits,
    ZipRefusal,
    copy_verified_member,
    directory_extent,
    iter_member,
    open_zip,
    path_problem,
    read_member,
    safe_members,
)
from stockade.vulns.bundlefile import (
    BundleError,
    BundleLimits,
    BundleTooLargeError,
    check_name,
    members,
)
from stockade.vulns.bundlefile import read_member as bundle_read_member

DATA = b"".join(b"line %d of a member that deflates well\n" % i for i in range(400))

# ------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../x", ProblemKind.TRAVERSAL),
        ("a/../../x", ProblemKind.TRAVERSAL),
        ("/etc/passwd", ProblemKind.TRAVERSAL),
        ("C:x", ProblemKind.TRAVERSAL),
        ("c:/windows", ProblemKind.TRAVERSAL),
        ("a\\..\\b", ProblemKind.UNSAFE),
        ("", ProblemKind.UNSAFE),
        ("a//b", ProblemKind.UNSAFE),
        ("./a", ProblemKind.UNSAFE),
        ("a/.", ProblemKind.UNSAFE),
        ("a\x00b", ProblemKind.UNSAFE),
        ("a\x1b[31mb", ProblemKind.UNSAFE),
        ("a\x7f", ProblemKind.UNSAFE),
        ("a\x9bb", ProblemKind.UNSAFE),  # C1 control (CSI)
        ("evil\u202etxt.exe", ProblemKind.UNSAFE),  # bidi override
        ("a\u2028b", ProblemKind.UNSAFE),  # line separator
        ("a/\udc80", ProblemKind.ENCODING),
        ("x" * (MAX_NAME_LENGTH + 1), ProblemKind.UNSAFE),
    ],
)
def test_path_problem_refuses(name: str, kind: ProblemKind) -> None:
    problem = path_problem(name)
    assert problem is not None and problem.kind == kind


@pytest.mark.parametrize(
    "name", ["a", "lib/python3.11/site.py", "x" * MAX_NAME_LENGTH, "ünï/文件 a\u00a0b", "..a/b.."]
)
def test_path_problem_accepts_plain_relative_names(name: str) -> None:
    assert path_problem(name) is None


# ----------------------------------------------------------------------------- zip helpers


def _zip(path: Path, files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as out:
        for name, data in files.items():
            out.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return path


def _patch(path: Path, field: str, value: int, *, member: int = 0) -> None:
    """Set a field of the ``member``-th local header and central directory entry."""
    local = {"flags": (6, "<H"), "method": (8, "<H"), "crc": (14, "<L"), "size": (22, "<L")}
    central = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<L"), "size": (24, "<L")}
    raw = bytearray(path.read_bytes())
    for signature, fields in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        start = -1
        for _ in range(member + 1):
            start = raw.index(signature, start + 1)
        offset, fmt = fields[field]
        struct.pack_into(fmt, raw, start + offset, value)
    path.write_bytes(bytes(raw))


def _refusal(path: Path, limits: ZipLimits | None = None) -> UnsafeZipError:
    with open_zip(path) as archive, pytest.raises(UnsafeZipError) as caught:
        safe_members(archive, limits or ZipLimits())
    return caught.value


def _read_all(path: Path, name: str, chunk: int = 1 << 20) -> list[bytes]:
    with open_zip(path) as archive:
        return list(iter_member(archive, archive.getinfo(name), chunk))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["../x", "/abs/x", "a\\x", "C:/x", "a//x", "x/../../y"])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    error = _refusal(_zip(tmp_path / "z.zip", {"ok": b"1", name: b"2"}))
    assert error.reason == ZipRefusal.NAME and error.member == name
    assert error.code == "zip:name" and "unsafe member name" in error.detail


def test_a_nul_in_a_name_is_seen_although_zipfile_cuts_it(tmp_path: Path) -> None:
    path = tmp_path / "nul.zip"
    _zip(path, {"a.json_evil": b"1"})
    path.write_bytes(path.read_bytes().replace(b"a.json_evil", b"a.json\x00evil"))
    with open_zip(path) as archive:
        assert archive.namelist() == ["a.json"]  # what the old check looked at
    error = _refusal(path)
    assert error.member == "a.json\x00evil" and "NUL" in error.detail
    assert "\\x00" in error.detail  # shown escaped


def test_a_name_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.zip"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("a", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            out.writestr("a", b"2")
    assert _refusal(path).reason == ZipRefusal.DUPLICATE


def test_a_name_that_is_a_file_and_a_folder_is_refused(tmp_path: Path) -> None:
    error = _refusal(_zip(tmp_path / "z.zip", {"a": b"1", "a/b": b"2"}))
    assert error.reason == ZipRefusal.DUPLICATE and "a file and a folder" in error.detail
    error = _refusal(_zip(tmp_path / "y.zip", {"a/": b"", "a": b"2"}))
    assert error.reason == ZipRefusal.DUPLICATE


def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as out:
        info = zipfile.ZipInfo("a")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        out.writestr(info, "/etc/passwd")
    assert _refusal(path).reason == ZipRefusal.LINK


def test_encrypted_members_are_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "enc.zip", {"a": DATA})
    _patch(path, "flags", 0x1)
    assert _refusal(path).reason == ZipRefusal.ENCRYPTED


@pytest.mark.parametrize(
    ("method", "label"), [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")]
)
def test_only_stored_and_deflate_are_accepted(tmp_path: Path, method: int, label: str) -> None:
    error = _refusal(_zip(tmp_path / "m.zip", {"a": DATA}, method))
    assert error.reason == ZipRefusal.METHOD and f"compressed with {label}" in error.detail


def test_too_many_members_is_refused_as_too_large(tmp_path: Path) -> None:
    error = _refusal(
        _zip(tmp_path / "z.zip", {"a": b"", "b": b"", "c": b""}), ZipLimits(max_members=2)
    )
    assert error.reason == ZipRefusal.TOO_MANY and error.too_large
    assert error.kind == ErrorKind.TOO_LARGE


def test_declared_sizes_over_the_limits_are_refused_before_reading(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.zip", {"a": b"\0" * 100_000, "b": b"\0" * 100_000})
    assert path.stat().st_size < 2_000  # deflates to almost nothing
    one = _refusal(path, ZipLimits(max_member=99_999))
    assert one.reason == ZipRefusal.TOO_LARGE and one.member == "a"
    total = _refusal(path, ZipLimits(max_total=150_000))
    assert total.reason == ZipRefusal.TOO_LARGE and total.member == "b"
    with open_zip(path) as archive, pytest.raises(UnsafeZipError, match="read at once"):
        read_member(archive, archive.getinfo("a"), max_size=1000)


def test_a_member_inflating_past_its_declared_size_never_yields_more(tmp_path: Path) -> None:
    path = _zip(tmp_path / "more.zip", {"a": DATA})
    _patch(path, "size", 1000)  # the CRC is still the whole data's
    with pytest.raises(UnsafeZipError, match=r"a: cannot be read \(BadZipFile: Bad CRC-32"):
        _read_all(path, "a")
    _patch(path, "crc", zlib.crc32(DATA[:1000]))  # a CRC that matches the declared part
    blocks = _read_all(path, "a", chunk=300)
    assert b"".join(blocks) == DATA[:1000] and all(len(b) <= 300 for b in blocks)


def test_a_member_shorter_than_declared_is_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "less.zip", {"a": DATA})
    _patch(path, "size", len(DATA) + 10)
    with pytest.raises(UnsafeZipError, match="10 bytes fewer than the zip declares") as caught:
        _read_all(path, "a")
    assert caught.value.reason == ZipRefusal.CORRUPT


def test_a_stored_member_whose_sizes_differ_is_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "stored.zip", {"a": DATA}, zipfile.ZIP_STORED)
    _patch(path, "size", 10)
    assert _refusal(path).reason == ZipRefusal.CORRUPT


@pytest.mark.parametrize("keep", [0, 10, 200, 0.5])
def test_a_truncated_or_junk_zip_is_not_a_zip(tmp_path: Path, keep: float) -> None:
    whole = _zip(tmp_path / "whole.zip", {"a": DATA}).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[: int(len(whole) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(UnsafeZipError, match="not a zip file") as caught:
        open_zip(cut)
    assert caught.value.reason == ZipRefusal.NOT_ZIP and caught.value.member is None
    with pytest.raises(UnsafeZipError, match="not a zip file"):
        open_zip(io.BytesIO(b"PK\x03\x04 not really"))


def test_a_declared_entry_count_over_the_limit_is_refused_before_zipfile_reads(
    tmp_path: Path,
) -> None:
    path = _zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(20)})
    with path.open("rb") as stream:
        assert directory_extent(stream).entries == 20
    with pytest.raises(UnsafeZipError, match="declares 20 members, over 19") as caught:
        open_zip(path, ZipLimits(max_members=19))
    assert caught.value.too_large
    with pytest.raises(UnsafeZipError, match="declares 20 members"):
        open_zip(io.BytesIO(path.read_bytes()), ZipLimits(max_members=19))
    open_zip(io.BytesIO(path.read_bytes()), ZipLimits(max_members=20)).close()
    with pytest.raises(UnsafeZipError, match="not a zip file: no end of central directory"):
        open_zip(io.BytesIO(b"junk"), ZipLimits())


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_corrupt_data_is_refused_while_streaming(tmp_path: Path, method: int) -> None:
    path = _zip(tmp_path / "crc.zip", {"a": DATA}, method)
    raw = bytearray(path.read_bytes())
    start = 30 + len("a")  # the first member's data
    for i in range(start + 20, start + 40):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    got: list[bytes] = []
    with pytest.raises(UnsafeZipError, match=r"^a: cannot be read \(") as caught:
        got.extend(_read_all(path, "a", chunk=64))
    assert caught.value.member == "a" and caught.value.reason == ZipRefusal.CORRUPT
    assert sum(map(len, got)) <= len(DATA)


def test_copy_verified_member_checks_size_and_sha256(tmp_path: Path) -> None:
    path = _zip(tmp_path / "v.zip", {"dir/a": DATA})
    good = hashlib.sha256(DATA).hexdigest()
    with open_zip(path) as archive:
        info = safe_members(archive, ZipLimits())["dir/a"]
        sink = io.BytesIO()
        copy_verified_member(archive, info, sink, sha256=good, size=len(DATA), chunk=100)
        assert sink.getvalue() == DATA
        with pytest.raises(UnsafeZipError, match="dir/a: sha256 differs") as caught:
            copy_verified_member(archive, info, io.BytesIO(), sha256="0" * 64, size=len(DATA))
        assert caught.value.reason == ZipRefusal.MISMATCH
        with pytest.raises(UnsafeZipError, match=f"dir/a: {len(DATA)} bytes, 5 expected"):
            copy_verified_member(archive, info, io.BytesIO(), sha256=good, size=5)


# ------------------------------------------------------------------------------- normal


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_normal_zips_read(tmp_path: Path, method: int) -> None:
    files = {"manifest.json": b"{}", "dir/": b"", "dir/a": DATA, "dir/sub/b": b"", "c": b"x"}
    path = _zip(tmp_path / "ok.zip", files, method)
    with open_zip(path) as archive:
        found = safe_members(archive, ZipLimits(max_members=5, max_total=len(DATA) + 3))
        assert sorted(found) == ["c", "dir/a", "dir/sub/b", "manifest.json"]
        assert {n: read_member(archive, i) for n, i in found.items()} == {
            n: d for n, d in files.items() if n != "dir/"
        }


def test_zip64_members_read(tmp_path: Path) -> None:
    path = tmp_path / "z64.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        with out.open(zipfile.ZipInfo("big"), "w", force_zip64=True) as stream:
            for _ in range(50):
                stream.write(DATA)
    with path.open("rb") as stream:
        assert directory_extent(stream).entries == 1
    with open_zip(path, ZipLimits()) as archive:
        info = safe_members(archive, ZipLimits())["big"]
        assert info.file_size == 50 * len(DATA)
        digest = hashlib.sha256(DATA * 50).hexdigest()
        sink = io.BytesIO()
        copy_verified_member(archive, info, sink, sha256=digest, size=info.file_size, chunk=4096)
        assert len(sink.getvalue()) == info.file_size


# --------------------------------------------------------- the callers share the one rule

UNSAFE_NAMES = ["../x", "/abs", "a\\b", "C:x", "a\x00b", "a\x9bb", "a\u202eb", "x" * 1025, "a//b"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_every_caller_refuses_the_same_names(name: str) -> None:
    problem = path_problem(name)
    assert problem is not None
    rule = {"traversal": "path-traversal", "unsafe": "unsafe-path", "encoding": "encoding"}
    with pytest.raises(PackageValidationError) as caught:
        normalize_path(name)
    assert caught.value.rule == rule[problem.kind]
    with pytest.raises(PackageValidationError) as caught:
        normalize_path("./" + name if not name.startswith("/") else name)
    assert caught.value.rule in rule.values()
    with pytest.raises(BundleError, match="unsafe member name: it "):
        check_name(name)  # a cve.zip manifest's paths
    archive = _FakeZip(name)
    with pytest.raises(PackageValidationError) as caught:
        check_entries(archive, "x-1-0", Budget(ValidationLimits(), 1000))  # type: ignore[arg-type]
    assert caught.value.code.startswith("package:") and caught.value.rule != "format"


class _FakeZip:
    """Just enough of a ZipFile for ``check_entries``: one member with a raw name."""

    def __init__(self, name: str) -> None:
        self.info = zipfile.ZipInfo("placeholder")
        self.info.orig_filename = name

    def infolist(self) -> list[zipfile.ZipInfo]:
        return [self.info]


def test_a_tar_symlink_target_uses_the_same_text_rule() -> None:
    for bad in ("a\x9bb", "x\u202ey", "a\\b"):
        with pytest.raises(PackageValidationError) as caught:
            check_symlink_target(bad, "lib/l")
        assert caught.value.rule == "unsafe-path"
    with pytest.raises(PackageValidationError, match="absolute"):
        check_symlink_target("/" + "x" * 2000, "lib/l")
    assert check_symlink_target("../share/" + "x" * 2000, "lib/l").startswith("../")


def test_cve_bundles_map_refusals_to_their_own_errors(tmp_path: Path) -> None:
    path = tmp_path / "nul.zip"
    _zip(path, {"vulnerabilities/a.jsonl_": b"1"})
    path.write_bytes(path.read_bytes().replace(b"a.jsonl_", b"a.jsonl\x00"))
    with pytest.raises(BundleError, match="unsafe member name: it contains a NUL byte") as caught:
        _members(path, BundleLimits())
    assert caught.value.code == "vulns:bad-bundle"
    assert caught.value.extra["member"] == "vulnerabilities/a.jsonl\x00"
    big = _zip(tmp_path / "big.zip", {"a": DATA})
    with pytest.raises(BundleTooLargeError, match="unpacks to more than 10 bytes") as large:
        _members(big, BundleLimits(max_total=10))
    assert large.value.code == "vulns:bundle-too-large"
    _patch(big, "size", len(DATA) + 1)
    with open_zip(big) as archive, pytest.raises(BundleError, match="a: 1 bytes fewer"):
        bundle_read_member(archive, archive.getinfo("a"))


def _members(path: Path, limits: BundleLimits) -> object:
    with open_zip(path) as archive:
        return members(archive, limits)
