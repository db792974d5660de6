"""Reading one tar stream from an untrusted compressed source, in bounded memory and time.

Every decompressed byte goes through a :class:`CountingReader` that charges it to a :class:`Budget`,
so a decompression bomb is stopped as soon as a cap is passed, whatever the tar headers claim.
The standard :mod:`tarfile` parser is used with a stricter header class: it refuses a corrupt or
truncated header instead of ending the archive early, oversized GNU long-name and pax headers
(which tarfile reads into memory), sparse members, and pax headers that CPython before
3.11.10/3.12.6 parses in quadratic time (CVE-2024-6232). After the end-of-archive marker only zero
padding may follow.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tarfile
from collections.abc import Iterable, Iterator
from typing import Final, Protocol, Self

from stockade.conda.errors import PackageTooLargeError, PackageValidationError
from stockade.conda.package import RATIO_FLOOR, ValidationLimits

CHUNK: Final = 1024 * 1024
MAX_EXTENDED_HEADER: Final = 16 * 1024  # a pax header holds a few paths of at most 4 KiB
MAX_PAX_TOTAL: Final = 64 * 1024**2  # over 300 bytes for each of 200,000 members

_EXTENDED_TYPES: Final = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)
# CPython before 3.11.10 and 3.12.6 searches pax headers with a regex that backtracks over every run
# of digits (CVE-2024-6232): there, runs are kept short enough for that to cost no more per byte
# than bzip2 does. Real runs are sizes, mtimes and ids (at most 12 digits before a dot).
QUADRATIC_PAX: Final = sys.version_info < (3, 11, 10) or (3, 12) <= sys.version_info < (3, 12, 6)
_DIGIT_RUN_RE: Final = re.compile(rb"[0-9]{17}")


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def tell(self) -> int: ...


class Budget:
    """Counts what a package costs to read, and raises once a cap of the limits is passed."""

    def __init__(self, limits: ValidationLimits, archive_size: int) -> None:
        self.limits = limits
        self.archive_size = archive_size
        self.unpacked = 0  # decompressed bytes of the tar streams
        self.members = 0
        self.info = 0  # bytes of info/ files

    def consume(self, count: int) -> None:
        self.unpacked += count
        if self.unpacked > self.limits.max_unpacked_size:
            raise PackageTooLargeError(
                "unpacked-size",
                f"the package unpacks to more than {self.limits.max_unpacked_size} bytes",
            )
        if (
            self.unpacked > RATIO_FLOOR
            and self.unpacked > self.limits.max_ratio * self.archive_size
        ):
            raise PackageTooLargeError(
                "decompression-ratio",
                f"the package unpacks to more than {self.limits.max_ratio:g} times its size "
                "(a decompression bomb?)",
            )

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise PackageTooLargeError(
                "member-count", f"the package has more than {self.limits.max_members} members"
            )

    def add_info(self, size: int, member: str) -> None:
        self.info += size
        if self.info > self.limits.max_info_size:
            raise PackageTooLargeError(
                "info-size",
                f"the info/ files are larger than {self.limits.max_info_size} bytes in total",
                member=member,
            )


class CountingReader:
    """A read-only stream that charges every byte it returns to a budget."""

    def __init__(self, source: Readable, budget: Budget) -> None:
        self._source = source
        self._budget = budget
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size if 0 <= size <= CHUNK else CHUNK)
        self._position += len(data)
        self._budget.consume(len(data))
        return data

    def write(self, data: bytes, /) -> object:
        raise OSError("read-only stream")

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, /) -> object:
        raise OSError("unseekable stream")

    def close(self) -> object:
        return None


class _Replay:
    """Serves bytes already read, then reads on from the stream they came from."""

    def __init__(self, head: bytes, stream: _Stream) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int, /) -> bytes:
        if not self._head:
            return self._stream.read(size)
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:
            data += self._stream.read(size - len(data))
        return data

    def write(self, data: bytes, /) -> object:
        raise OSError("read-only stream")

    def tell(self) -> int:
        return self._stream.tell() - len(self._head)

    def seek(self, position: int, /) -> object:
        raise OSError("unseekable stream")

    def close(self) -> object:
        return None


def check_pax_records(records: bytes) -> set[bytes]:
    """Check the records of a pax header strictly, in linear time, before tarfile parses them;
    returns its keys. A key given twice is refused: tar readers disagree on which one counts
    (Python's tarfile takes the last ``path``, rattler's Rust reader the first), so the file
    validated and scanned under one name would be installed under another."""
    keys: set[bytes] = set()
    position = 0
    while position < len(records):
        if records[position] == 0 and not records[position:].strip(b"\x00"):
            break
        space = records.find(b" ", position, position + 24)
        digits = records[position:space] if space > position else b""
        end = position + int(digits) if digits.isdigit() else -1
        if not space < end <= len(records) or records[end - 1] != ord("\n"):
            raise PackageValidationError("format", "malformed pax header record")
        equals = records.find(b"=", space + 1, end)
        if equals < 0:
            raise PackageValidationError("format", "malformed pax header record")
        key = records[space + 1 : equals]
        if key.startswith(b"GNU.sparse"):
            raise PackageValidationError("special-file", "sparse files are not allowed")
        if key in keys:
            raise PackageValidationError("format", "a pax header gives the same key twice")
        keys.add(key)
        position = end
    if QUADRATIC_PAX and _DIGIT_RUN_RE.search(records) is not None:
        raise PackageValidationError("format", "implausible pax header (a very long number)")
    return keys


_PAX_NAMES: Final = {b"path": "name", b"linkpath": "link"}
_GNU_NAMES: Final = {tarfile.GNUTYPE_LONGNAME: "name", tarfile.GNUTYPE_LONGLINK: "link"}


def _named_once(member: tarfile.TarInfo, fields: Iterable[str]) -> None:
    """Refuse a member whose name (or link target) two extended headers give: tar readers
    disagree on which counts (tarfile: the outer one; Rust's tar: a GNU long name first)."""
    given: list[str] = vars(member).setdefault("_stockade_named", [])  # a GuardedTarInfo
    for field in fields:
        if field in given:
            raise PackageValidationError(
                "format", f"two extended tar headers give this member's {field}"
            )
        given.append(field)


class GuardedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses what the stock parser would accept silently or at too high a cost."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        if len(buf) != tarfile.BLOCKSIZE:
            raise PackageValidationError(
                "format", "the tar stream is truncated (no end-of-archive marker)"
            )
        if not buf.strip(b"\x00"):
            return super().frombuf(buf, encoding, errors)  # raises EOFHeaderError: the normal end
        try:
            info = super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as exc:
            raise PackageValidationError("format", f"invalid tar header ({exc})") from None
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise PackageValidationError("special-file", "sparse files are not allowed")
        if info.type in _EXTENDED_TYPES and info.size > MAX_EXTENDED_HEADER:
            raise PackageValidationError(
                "format", f"extended tar header larger than {MAX_EXTENDED_HEADER} bytes"
            )
        return info

    def _proc_pax(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if isinstance(tar, GuardedTarFile):
            tar.charge_pax(self.size)
        stream = tar.fileobj
        head = stream.read(-(-self.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
        keys = check_pax_records(head[: self.size])
        tar.fileobj = _Replay(head, stream)
        try:
            # tarfile's own pax parser, now fed the records checked above.
            parse = super()._proc_pax  # type: ignore[misc]  # private in typeshed
            result: tarfile.TarInfo = parse(tar)
        finally:
            tar.fileobj = stream
        if self.type != tarfile.XGLTYPE:
            _named_once(result, [_PAX_NAMES[k] for k in sorted(keys) if k in _PAX_NAMES])
        return result

    def _proc_gnulong(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        parse = super()._proc_gnulong  # type: ignore[misc]  # private in typeshed
        result: tarfile.TarInfo = parse(tar)
        _named_once(result, [_GNU_NAMES[self.type]])
        return result


class GuardedTarFile(tarfile.TarFile):
    """A TarFile that bounds the pax header bytes it parses (each costs tarfile regex work)."""

    pax_bytes = 0

    def charge_pax(self, size: int) -> None:
        self.pax_bytes += size
        if self.pax_bytes > MAX_PAX_TOTAL:
            raise PackageValidationError(
                "format", f"the pax headers of a tar stream exceed {MAX_PAX_TOTAL} bytes in total"
            )


def open_tar(source: CountingReader) -> tarfile.TarFile:
    """Open ``source`` as a tar stream, read sequentially."""
    return GuardedTarFile.open(
        fileobj=source,
        mode="r|",
        tarinfo=GuardedTarInfo,
        encoding="utf-8",
        errors="surrogateescape",
    )


def iter_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Yield the members of ``tar`` in order, then check what follows the end-of-archive marker."""
    while (info := tar.next()) is not None:
        yield info
        # Keep memory constant: tarfile keeps every TarInfo (``members`` is not in typeshed).
        tar.members.clear()  # type: ignore[attr-defined]
    while chunk := tar.fileobj.read(CHUNK):
        if chunk.strip(b"\x00"):
            raise PackageValidationError("format", "data after the end of the tar archive")


def read_member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, *, keep: bool
) -> tuple[int, str, bytes | None]:
    """Read a regular member once: its size, its sha256 and, when ``keep``, its content."""
    fileobj = tar.extractfile(info)
    if fileobj is None:
        raise PackageValidationError("format", "cannot read member", member=info.name)
    digest = hashlib.sha256()
    kept = bytearray()
    size = 0
    while chunk := fileobj.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if keep:
            kept += chunk
    if size != info.size:
        raise PackageValidationError("format", "member is truncated", member=info.name)
    return size, digest.hexdigest(), bytes(kept) if keep else None
