"""One safe reader for untrusted zips: ``.conda`` files, ``cve.zip`` and air-gap bundles.

The rules, in the order they are applied:

- **Names** (:func:`path_problem`, the one rule for every archive member name, zip or tar):
  not empty, at most 1024 characters, no NUL, no control character (C0, C1, Unicode format
  characters such as bidi overrides, line and paragraph separators), no backslash, encodable as
  UTF-8, not absolute (``/x``, a drive letter ``C:``), no ``..``, ``.`` or empty part. A zip's
  names are checked as written (``ZipInfo.orig_filename``: :mod:`zipfile` cuts ``filename`` at a
  NUL), a directory entry's single trailing ``/`` aside.
- **Members** (:func:`safe_members`, before one byte is unpacked): no symbolic link, no encrypted
  member, only stored or deflate, a stored member's sizes agree, no name twice, no name that is a
  file and a directory; at most ``max_members`` entries, no member above ``max_member`` and no
  total above ``max_total`` bytes unpacked, as declared (zip bombs). :func:`open_zip` given the
  limits counts the entries from the end records, before :mod:`zipfile` reads the directory.
- **Reading** (:func:`iter_member`, in constant memory): never more bytes than a member declares
  (data past the declared size is never read), and exactly as many; any failure to unpack (CRC,
  truncation, corrupt deflate stream) is an :class:`UnsafeZipError` naming the member.
  :func:`copy_verified_member` also checks the size and sha256 expected by the caller.

Every refusal is an :class:`UnsafeZipError` whose ``reason`` says which rule failed; a caller
with its own error vocabulary catches it and re-raises (``vulns.bundlefile``), or maps a
:class:`PathProblem` (``conda.members``). Refusals of a limit have the ``too-large`` kind.
"""

from __future__ import annotations

import hashlib
import re
import stat
import struct
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Final, Protocol

from stockade.core.errors import ErrorKind, InvalidInputError

__all__ = [
    "MAX_NAME_LENGTH",
    "DirectoryExtent",
    "PathProblem",
    "ProblemKind",
    "SupportsWrite",
    "UnsafeZipError",
    "ZipLimits",
    "ZipRefusal",
    "copy_verified_member",
    "directory_extent",
    "is_absolute",
    "iter_member",
    "open_zip",
    "path_problem",
    "read_member",
    "safe_members",
    "shown",
    "text_problem",
]

MAX_NAME_LENGTH: Final = 1024
CHUNK: Final = 1 << 20

_DRIVE: Final = re.compile(r"[A-Za-z]:")
_CONTROL_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})
_ASCII_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_METHODS: Final = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_OTHER_METHODS: Final = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64"}
_ENCRYPTED: Final = 0x1 | 0x40  # traditional and strong encryption
_SHOWN: Final = 300
_END: Final = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR_SIZE: Final = 20
_END64: Final = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
_TAIL: Final = _END.size + 0xFFFF  # the record plus the longest comment


class ProblemKind(StrEnum):
    TRAVERSAL = "traversal"  # leaves the folder: absolute, a drive letter, a '..' part
    UNSAFE = "unsafe"  # empty, too long, control character, backslash, empty or '.' part
    ENCODING = "encoding"  # not encodable as UTF-8 (a surrogate)


@dataclass(frozen=True)
class PathProblem:
    """Why a name is refused; ``detail`` completes a sentence: ``f"{what} {detail}"``."""

    kind: ProblemKind
    detail: str


def shown(name: str) -> str:
    """``name`` safe to put in a message: control characters escaped, length bounded."""
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    if _has_control(text):
        text = repr(text)[1:-1]
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _has_control(text: str) -> bool:
    if text.isascii():
        return _ASCII_CONTROL.search(text) is not None
    return any(unicodedata.category(c) in _CONTROL_CATEGORIES for c in text)


def text_problem(value: str) -> PathProblem | None:
    """The checks on the text of a name or link target: NUL, control characters, backslash,
    UTF-8 (a link target may hold ``..``, so this is apart from :func:`path_problem`)."""
    if "\x00" in value:
        return PathProblem(ProblemKind.UNSAFE, "contains a NUL byte")
    if _has_control(value):
        return PathProblem(ProblemKind.UNSAFE, "contains a control character")
    if "\\" in value:
        return PathProblem(ProblemKind.UNSAFE, "contains a backslash")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return PathProblem(ProblemKind.ENCODING, "is not valid UTF-8")
    return None


def path_problem(name: str) -> PathProblem | None:
    """Why the member name ``name`` could leave the extraction folder or mean two things, or
    None when it is a plain relative path (the rule of the module docstring)."""
    if name == "" or len(name) > MAX_NAME_LENGTH:
        detail = "is empty" if name == "" else f"is longer than {MAX_NAME_LENGTH} characters"
        return PathProblem(ProblemKind.UNSAFE, detail)
    return text_problem(name) or _place_problem(name)


def is_absolute(name: str) -> bool:
    """Whether ``name`` starts at a root: ``/``, or a drive letter (``C:``)."""
    return name.startswith("/") or _DRIVE.match(name) is not None


def _place_problem(name: str) -> PathProblem | None:
    if is_absolute(name):
        return PathProblem(ProblemKind.TRAVERSAL, "is absolute")
    parts = name.split("/")
    if ".." in parts:
        return PathProblem(ProblemKind.TRAVERSAL, "has a '..' component")
    if "" in parts or "." in parts:
        return PathProblem(ProblemKind.UNSAFE, "has an empty or '.' component")
    return None


class ZipRefusal(StrEnum):
    NOT_ZIP = "not-zip"
    NAME = "name"
    LINK = "link"
    ENCRYPTED = "encrypted"
    METHOD = "method"
    DUPLICATE = "duplicate"
    TOO_MANY = "too-many"  # a limit
    TOO_LARGE = "too-large"  # a limit
    CORRUPT = "corrupt"
    MISMATCH = "mismatch"  # size or sha256 other than the caller expects


_LIMITS: Final = frozenset({ZipRefusal.TOO_MANY, ZipRefusal.TOO_LARGE})


class UnsafeZipError(InvalidInputError):
    """A zip refused by a rule of this module; ``member`` names the entry when known."""

    code = "zip:unsafe"
    title = "Unsafe or broken zip"

    def __init__(self, problem: str, *, reason: ZipRefusal, member: str | None = None) -> None:
        extra = {} if member is None else {"member": member}
        shown_detail = problem if member is None else f"{shown(member)}: {problem}"
        super().__init__(shown_detail, code=f"zip:{reason}", **extra)
        self.problem = problem  # the detail without the member's name
        self.reason = reason
        self.member = member
        if reason in _LIMITS:
            self.kind = ErrorKind.TOO_LARGE

    @property
    def too_large(self) -> bool:
        return self.reason in _LIMITS


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 500_000
    max_total: int = 16 * 1024**3  # unpacked bytes of every member together
    max_member: int = 512 * 1024**2  # unpacked bytes of one member


@dataclass(frozen=True)
class DirectoryExtent:
    """What a zip's end records declare of its central directory."""

    entries: int
    size: int  # bytes


def directory_extent(stream: IO[bytes]) -> DirectoryExtent:
    """The central directory's entry count and size, from the end records only (what
    :mod:`zipfile` would then read whole, building an object per entry)."""
    end = stream.seek(0, 2)
    stream.seek(max(0, end - _TAIL))
    tail = stream.read()
    position = tail.rfind(b"PK\x05\x06")
    if position < 0 or position + _END.size > len(tail):
        raise UnsafeZipError("no end of central directory record", reason=ZipRefusal.NOT_ZIP)
    fields = _END.unpack_from(tail, position)
    entries, size = int(fields[4]), int(fields[5])
    locator = position - _END64_LOCATOR_SIZE
    if locator >= 0 and tail.startswith(b"PK\x06\x07", locator):
        start64 = locator - _END64.size
        if start64 < 0 or not tail.startswith(b"PK\x06\x06", start64):
            raise UnsafeZipError(
                "the zip64 end of central directory record is missing",
                reason=ZipRefusal.NOT_ZIP,
            )
        fields64 = _END64.unpack_from(tail, start64)
        entries, size = max(entries, int(fields64[7])), max(size, int(fields64[8]))
    return DirectoryExtent(entries, size)


def open_zip(source: Path | IO[bytes], limits: ZipLimits | None = None) -> zipfile.ZipFile:
    """``source`` (a path or a seekable binary file) opened as a zip for reading, or
    :class:`UnsafeZipError` (``not-zip``) if it is not one (truncated, junk, unreadable). With
    ``limits``, a zip declaring more than ``max_members`` entries is refused before
    :mod:`zipfile` reads its central directory."""
    try:
        if limits is not None:
            _check_extent(source, limits)
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise UnsafeZipError(f"not a zip file: {exc}", reason=ZipRefusal.NOT_ZIP) from None
    except UnsafeZipError as exc:
        if exc.reason != ZipRefusal.NOT_ZIP:
            raise
        raise UnsafeZipError(f"not a zip file: {exc.problem}", reason=exc.reason) from None


def _check_extent(source: Path | IO[bytes], limits: ZipLimits) -> None:
    if isinstance(source, Path):
        with source.open("rb") as stream:
            extent = directory_extent(stream)
    else:
        extent = directory_extent(source)
        source.seek(0)
    if extent.entries > limits.max_members:
        raise UnsafeZipError(
            f"the zip declares {extent.entries} members, over {limits.max_members}",
            reason=ZipRefusal.TOO_MANY,
        )


def safe_members(archive: zipfile.ZipFile, limits: ZipLimits) -> dict[str, zipfile.ZipInfo]:
    """The files of ``archive`` by name (directories left out), after the checks of the module
    docstring, made on the central directory before anything is unpacked."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeZipError(
            f"the zip has {len(infos)} members, over {limits.max_members}",
            reason=ZipRefusal.TOO_MANY,
        )
    found: dict[str, zipfile.ZipInfo] = {}
    folders: set[str] = set()
    total = 0
    for info in infos:
        _check_entry(info)
        if info.is_dir():
            folders.add(info.filename.removesuffix("/"))
            continue
        if info.filename in found:
            raise _refused("the zip holds this name twice", ZipRefusal.DUPLICATE, info)
        if info.file_size > limits.max_member:
            raise _refused(
                f"{info.file_size} bytes unpacked, over {limits.max_member}",
                ZipRefusal.TOO_LARGE,
                info,
            )
        total += info.file_size
        if total > limits.max_total:
            raise _refused(
                f"the zip unpacks to more than {limits.max_total} bytes", ZipRefusal.TOO_LARGE, info
            )
        found[info.filename] = info
        folders.update(_parents(info.filename))
    _check_files_are_not_folders(found, folders)
    return found


def _refused(detail: str, reason: ZipRefusal, info: zipfile.ZipInfo) -> UnsafeZipError:
    return UnsafeZipError(detail, reason=reason, member=info.orig_filename)


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.orig_filename  # zipfile cuts .filename at a NUL
    problem = path_problem(name[:-1] if name.endswith("/") and len(name) > 1 else name)
    if problem is not None:
        raise _refused(f"unsafe member name: it {problem.detail}", ZipRefusal.NAME, info)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _refused("symbolic links are refused", ZipRefusal.LINK, info)
    if info.flag_bits & _ENCRYPTED:
        raise _refused("encrypted members are refused", ZipRefusal.ENCRYPTED, info)
    if info.compress_type not in _METHODS:
        method = _OTHER_METHODS.get(info.compress_type, f"method {info.compress_type}")
        raise _refused(
            f"compressed with {method}: only stored and deflate members are accepted",
            ZipRefusal.METHOD,
            info,
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _refused(
            f"stored, yet {info.compress_size} bytes hold {info.file_size}",
            ZipRefusal.CORRUPT,
            info,
        )


def _parents(name: str) -> Iterator[str]:
    position = name.rfind("/")
    while position > 0:
        yield name[:position]
        position = name.rfind("/", 0, position)


def _check_files_are_not_folders(found: dict[str, zipfile.ZipInfo], folders: set[str]) -> None:
    for name in sorted(folders.intersection(found)):
        raise _refused(
            "the zip holds this name as a file and a folder", ZipRefusal.DUPLICATE, found[name]
        )


# ------------------------------------------------------------------------------------ reading


def iter_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The unpacked bytes of ``info`` in blocks of at most ``chunk``: exactly as many as it
    declares (zip64 members over 4 GiB included), its CRC checked at the end."""
    left = info.file_size
    try:
        stream = archive.open(info)
    except Exception as exc:  # noqa: BLE001 - any failure to open untrusted bytes is the zip's
        raise _unreadable(info, exc) from None
    with stream:
        while True:
            try:
                block = stream.read(min(chunk, left + 1))
            except Exception as exc:  # noqa: BLE001 - same: bad CRC, truncated, bad deflate
                raise _unreadable(info, exc) from None
            if not block:
                break
            if len(block) > left:
                raise _refused("more bytes than the zip declares", ZipRefusal.CORRUPT, info)
            left -= len(block)
            yield block
    if left:
        raise _refused(
            f"{left} bytes fewer than the zip declares ({info.file_size})", ZipRefusal.CORRUPT, info
        )


def _unreadable(info: zipfile.ZipInfo, exc: Exception) -> UnsafeZipError:
    return _refused(f"cannot be read ({exc.__class__.__name__}: {exc})", ZipRefusal.CORRUPT, info)


def read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, max_size: int = ZipLimits.max_member
) -> bytes:
    """A small member's bytes whole; a member declaring more than ``max_size`` is refused."""
    if info.file_size > max_size:
        raise _refused(
            f"{info.file_size} bytes unpacked, over {max_size} read at once",
            ZipRefusal.TOO_LARGE,
            info,
        )
    return b"".join(iter_member(archive, info))


class SupportsWrite(Protocol):
    def write(self, data: bytes, /) -> object: ...


def copy_verified_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    sink: SupportsWrite,
    *,
    sha256: str,
    size: int,
    chunk: int = CHUNK,
) -> None:
    """Stream ``info`` into ``sink`` in constant memory, hashing on the way; refuse (``mismatch``)
    a member whose size or sha256 is not the expected one. The sink has then received the
    member's bytes: the caller discards them on a refusal."""
    if info.file_size != size:
        raise _refused(f"{info.file_size} bytes, {size} expected", ZipRefusal.MISMATCH, info)
    digest = hashlib.sha256()
    for block in iter_member(archive, info, chunk):
        digest.update(block)
        sink.write(block)
    if digest.hexdigest() != sha256.lower():
        raise _refused("sha256 differs from the expected one", ZipRefusal.MISMATCH, info)
