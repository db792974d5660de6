"""The zip container of a ``.conda``: checked before and after :mod:`zipfile` opens it.

A ``.conda`` is an uncompressed zip of exactly ``metadata.json`` (``{"conda_pkg_format_version":
2}``), ``info-<stem>.tar.zst`` and ``pkg-<stem>.tar.zst``, all at the top level, where ``<stem>`` is
the filename without its extension (conda clients look the members up by that name). Its central
directory is a few hundred bytes; :mod:`zipfile` reads a central directory whole and builds an
object per entry, so a bigger one is refused before zipfile sees it.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Final

import orjson

from stockade.conda.errors import PackageValidationError
from stockade.conda.members import check_path
from stockade.conda.tarstream import Budget
from stockade.core.safezip import UnsafeZipError, directory_extent

MAX_CENTRAL_DIRECTORY: Final = 64 * 1024
MAX_METADATA_SIZE: Final = 64 * 1024


def _format(detail: str) -> PackageValidationError:
    return PackageValidationError("format", detail)


def check_central_directory(path: Path) -> None:
    """Refuse a file with no zip end record, or a central directory too large for a ``.conda``."""
    try:
        with path.open("rb") as stream:
            extent = directory_extent(stream)
    except UnsafeZipError as exc:
        if exc.problem.startswith("no end"):
            raise _format("the .conda file is not a zip archive") from None
        raise _format(exc.problem) from None
    if extent.size > MAX_CENTRAL_DIRECTORY:
        raise _format("the zip central directory is far too large for a .conda")


def _check_name(name: str) -> None:
    check_path(name.removesuffix("/") or name, what="zip member name", member=name)
    if "/" in name:
        raise PackageValidationError(
            "unsafe-path",
            "zip member is inside a directory: .conda members must be at the top level",
            member=name,
        )


def check_entries(archive: zipfile.ZipFile, stem: str, budget: Budget) -> None:
    """Exactly the three expected members, stored (not compressed), not encrypted."""
    expected = {"metadata.json", f"info-{stem}.tar.zst", f"pkg-{stem}.tar.zst"}
    seen: set[str] = set()
    for entry in archive.infolist():
        budget.count_member()
        name = entry.orig_filename  # zipfile cuts .filename at a NUL
        _check_name(name)
        if name in seen or name not in expected:
            raise PackageValidationError(
                "format",
                f"unexpected or repeated zip member (a .conda holds {', '.join(sorted(expected))})",
                member=name,
            )
        if entry.compress_type != zipfile.ZIP_STORED or entry.flag_bits & 0x1:
            raise PackageValidationError(
                "format",
                "zip member is compressed or encrypted (.conda members are stored)",
                member=name,
            )
        seen.add(name)
    for name in sorted(expected - seen):
        raise PackageValidationError("format", f"the .conda archive has no {name}", member=name)


_LOCAL = struct.Struct("<4s5H3L2H")  # local file header
_DESCRIPTOR_SIGNATURE: Final = b"PK\x07\x08"


def check_layout(archive: zipfile.ZipFile) -> None:
    """The members follow each other from the first byte to the central directory, with nothing
    between them. :mod:`zipfile` reads the central directory and skips anything else, but
    streaming readers (rattler, mamba) read the local entries in order and extract every
    ``.tar.zst`` they meet: a hidden entry before or between the listed ones would be installed
    without having been validated or scanned."""
    stream = archive.fp
    if stream is None:
        raise _format("the .conda zip is closed")
    expected = 0
    for entry in sorted(archive.infolist(), key=lambda e: e.header_offset):
        if entry.header_offset != expected:
            raise _format("the .conda zip has data before or between its members")
        stream.seek(entry.header_offset)
        header = stream.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
            raise _format("a .conda zip member has no local header")
        fields = _LOCAL.unpack(header)
        if _disagrees(fields, entry):
            raise _format("a .conda zip member's local header disagrees with the central directory")
        name_size, extra_size = fields[9:11]
        expected = entry.header_offset + _LOCAL.size + name_size + extra_size
        expected += entry.compress_size
        if entry.flag_bits & 0x08:  # a data descriptor follows the data
            stream.seek(expected)
            signed = stream.read(4) == _DESCRIPTOR_SIGNATURE
            zip64 = max(entry.compress_size, entry.file_size) >= 0xFFFFFFFF
            expected += (4 if signed else 0) + (20 if zip64 else 12)
    if expected != getattr(archive, "start_dir", expected):
        raise _format("the .conda zip has data between its members and its central directory")


def _disagrees(fields: tuple[int | bytes, ...], entry: zipfile.ZipInfo) -> bool:
    """Whether a local header says something else than the central directory about how its
    data is stored or how long it is (a streaming reader trusts the local header)."""
    flags, method, crc, compressed, size = fields[2], fields[3], fields[6], fields[7], fields[8]
    if method != entry.compress_type or (int(flags) ^ entry.flag_bits) & 0x08:
        return True
    if entry.flag_bits & 0x08 or compressed == 0xFFFFFFFF:  # sizes in a descriptor or zip64
        return False
    return (crc, compressed, size) != (entry.CRC, entry.compress_size, entry.file_size)


def check_metadata(archive: zipfile.ZipFile) -> None:
    """``metadata.json`` declares the format version 2."""
    if archive.getinfo("metadata.json").file_size > MAX_METADATA_SIZE:
        raise PackageValidationError("format", "metadata.json is too large", member="metadata.json")
    try:
        metadata = orjson.loads(archive.read("metadata.json"))
    except orjson.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("conda_pkg_format_version") != 2:
        raise PackageValidationError(
            "format",
            "metadata.json does not declare conda_pkg_format_version 2",
            member="metadata.json",
        )
