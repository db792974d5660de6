from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from stockade.conda.condazip import check_central_directory
from stockade.conda.errors import PackageValidationError
from stockade.conda.members import MAX_LINK_HOPS, MemberRecord, check_links, normalize_path
from stockade.conda.tarstream import check_pax_records


def _links(*pairs: tuple[str, str]) -> dict[str, MemberRecord]:
    return {path: MemberRecord(path, "symlink", "", target=target) for path, target in pairs}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("lib/a", "lib/a"), ("./lib/a", "lib/a"), ("././a", "a"), ("./", ""), (".", "")],
)
def test_normalize_path(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("", "unsafe-path"),
        ("/abs", "path-traversal"),
        ("c:\\x", "unsafe-path"),
        ("d:/x", "path-traversal"),
        ("a/../b", "path-traversal"),
        ("a/./b", "unsafe-path"),
        ("a//b", "unsafe-path"),
        ("a/\x7f", "unsafe-path"),
        ("a/\udc80", "encoding"),
    ],
)
def test_normalize_path_refuses(raw: str, rule: str) -> None:
    with pytest.raises(PackageValidationError) as caught:
        normalize_path(raw)
    assert caught.value.rule == rule


def test_links_inside_are_accepted() -> None:
    check_links(
        _links(
            ("bin/python", "python3.11"),
            ("lib/libz.so", "libz.so.1"),  # dangling
            ("share/up", ".."),  # the root itself
            ("lib/d", "../share"),
            ("lib/e", "d/../lib"),  # through lib/d: share/../lib
            ("a", "b/c"),
            ("b", "lib"),
        )
    )


@pytest.mark.parametrize(
    "links",
    [
        (("x", ".."),),
        (("lib/x", "../../y"),),
        (("d", "."), ("x", "d/../..")),
        (("lib/d", "../share/deep"), ("lib/x", "d/../../..")),
        (("a", "b/x"), ("b", "a/y")),  # a loop
    ],
)
def test_links_escaping_are_refused(links: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(PackageValidationError) as caught:
        check_links(_links(*links))
    assert caught.value.rule == "link-escape"


def test_link_chains_are_bounded() -> None:
    def chain(length: int) -> dict[str, MemberRecord]:
        links = [(f"l{i}", f"l{i + 1}/x") for i in range(length)]
        return _links(*links, ("user", "l0/y"))

    check_links(chain(MAX_LINK_HOPS - 1))
    with pytest.raises(PackageValidationError):
        check_links(chain(MAX_LINK_HOPS + 1))


def test_many_long_links_resolve_quickly() -> None:
    deep = "/".join(["d"] * 1000) + "/" + "/".join([".."] * 1000)
    started = time.monotonic()
    check_links(_links(*((f"lib/l{i}", f"{deep}/x{i}") for i in range(2000))))
    with pytest.raises(PackageValidationError):
        check_links(_links(*((f"lib/l{i}", f"{deep}/../../x{i}") for i in range(2000))))
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "records",
    [
        b"13 path=abcd\n",
        b"13 path=abcd\n" + b"\x00" * 100,
        b"",
    ],
)
def test_pax_records_accepted(records: bytes) -> None:
    check_pax_records(records)


@pytest.mark.parametrize(
    ("records", "rule"),
    [
        (b"12 path=abcd\n", "format"),  # length one short
        (b"99 path=abcd\n", "format"),  # past the end
        (b"x3 path=abcd\n", "format"),
        (b"13 pathXabcd\n", "format"),
        (b"13 path=abcd\n\x00junk", "format"),
        (b"22 GNU.sparse.major=1\n", "special-file"),
    ],
)
def test_pax_records_refused(records: bytes, rule: str) -> None:
    with pytest.raises(PackageValidationError) as caught:
        check_pax_records(records)
    assert caught.value.rule == rule


def _end_record(directory_size: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 3, 3, directory_size, 0, 0)


def test_central_directory_guard(tmp_path: Path) -> None:
    path = tmp_path / "x.conda"
    path.write_bytes(b"junk" + _end_record(200))
    check_central_directory(path)
    path.write_bytes(b"junk" + _end_record(10**6))
    with pytest.raises(PackageValidationError, match="far too large"):
        check_central_directory(path)
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 3, 3, 10**9, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 4, 1)
    path.write_bytes(b"junk" + zip64 + locator + _end_record(0xFFFFFFFF))
    with pytest.raises(PackageValidationError, match="far too large"):
        check_central_directory(path)
    path.write_bytes(locator + _end_record(200))
    with pytest.raises(PackageValidationError, match="zip64"):
        check_central_directory(path)
    path.write_bytes(b"no end record here")
    with pytest.raises(PackageValidationError, match="not a zip"):
        check_central_directory(path)
