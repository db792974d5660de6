"""A streaming zip64 writer for stored members that resumes an interrupted write (ADR 0014).

The archive is written to ``<final>.partial``; each complete member is recorded in the journal
``<final>.partial.journal`` (one JSON line per member, appended only after the member's bytes are
fsync'd). :meth:`BundleWriter.open` on a path whose partial and journal exist resumes: the partial
is cut back to the end of the last member the journal records (and whose local header is found
intact), and those members are kept. Only :meth:`BundleWriter.finish` produces the final path,
atomically, with the central directory and the zip64 end records.

Layout, deterministic for the same members in the same order: every member stored (method 0),
UTF-8 name (flag bit 11), a fixed DOS time (1980-01-01 00:00), no data descriptor; every local
header carries a zip64 extra with both sizes (so a member's size need not be known before its
bytes), patched in place once the member is written. The central directory uses zip64 extras only
for values that do not fit in 32 bits (or always, with ``zip64_always``); the zip64 end record and
its locator are always written. Memory is constant per member (the member list stays in memory).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from stockade.core.errors import InvalidInputError
from stockade.core.safezip import path_problem, shown

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory header, 46 bytes
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")  # zip64 end of central directory record, 56 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_END = struct.Struct("<IHHHHIIH")  # end of central directory record, 22 bytes
_LOCAL_EXTRA = struct.Struct("<HHQQ")  # zip64 extra of a local header: both sizes
_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF
_VERSION = 45  # 4.5: zip64
_MADE_BY = (3 << 8) | _VERSION  # unix
_FLAGS = 0x0800  # names are UTF-8
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1  # 1980-01-01 00:00:00
_EXTERNAL_ATTR = 0o100644 << 16  # regular file, rw-r--r--
_JOURNAL_HEADER = {"journal": "stockade-zipwriter", "version": 1}
_COPY_BLOCK = 1 << 20


class ZipWriteError(InvalidInputError):
    """A member cannot be written as asked (unsafe or repeated name, bytes that differ from the
    announced size or sha256), or the writer cannot go on (closed, busy, unknown journal)."""

    code = "airgap:zip-write"
    title = "Bundle cannot be written"

    def __init__(self, detail: str, *, member: str | None = None) -> None:
        super().__init__(f"{member}: {detail}" if member else detail)
        if member is not None:
            self.extra["member"] = member


@dataclass(frozen=True)
class WrittenEntry:
    name: str
    size: int
    sha256: str
    crc32: int
    offset: int  # of its local header

    @property
    def end(self) -> int:
        """Offset just past the member's bytes: where the next member begins."""
        return self.offset + _header_length(self.name) + self.size


def check_member_name(name: str) -> bytes:
    """The UTF-8 bytes of a safe relative member name, or ZipWriteError: never a zip-slip, and
    never a name the reader refuses (the one rule, ``core.safezip.path_problem``)."""
    problem = path_problem(name) if isinstance(name, str) else None
    if not isinstance(name, str) or problem is not None or ":" in name:
        why = problem.detail if problem is not None else "has a colon"
        raise ZipWriteError(f"unsafe member name: it {why}", member=shown(str(name)))
    return name.encode("utf-8")


def _header_length(name: str) -> int:
    return _LOCAL.size + len(name.encode("utf-8")) + _LOCAL_EXTRA.size


def _local_header(name: str, crc: int, size: int) -> bytes:
    encoded = name.encode("utf-8")
    head = _LOCAL.pack(
        0x04034B50, _VERSION, _FLAGS, 0, _DOS_TIME, _DOS_DATE,
        crc, _MAX32, _MAX32, len(encoded), _LOCAL_EXTRA.size,
    )  # fmt: skip
    return head + encoded + _LOCAL_EXTRA.pack(0x0001, 16, size, size)


def _central_header(entry: WrittenEntry, zip64_always: bool) -> bytes:
    encoded = entry.name.encode("utf-8")
    extra_values = []
    size = entry.size
    if zip64_always or entry.size >= _MAX32:
        size = _MAX32
        extra_values += [entry.size, entry.size]
    offset = entry.offset
    if zip64_always or entry.offset >= _MAX32:
        offset = _MAX32
        extra_values.append(entry.offset)
    extra = b""
    if extra_values:
        extra = struct.pack(
            f"<HH{len(extra_values)}Q", 0x0001, 8 * len(extra_values), *extra_values
        )
    head = _CENTRAL.pack(
        0x02014B50, _MADE_BY, _VERSION, _FLAGS, 0, _DOS_TIME, _DOS_DATE, entry.crc32,
        size, size, len(encoded), len(extra), 0, 0, 0, _EXTERNAL_ATTR, offset,
    )  # fmt: skip
    return head + encoded + extra


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    zip64_end = _ZIP64_END.pack(
        0x06064B50, _ZIP64_END.size - 12, _MADE_BY, _VERSION, 0, 0, count, count, cd_size, cd_offset
    )
    locator = _ZIP64_LOCATOR.pack(0x07064B50, 0, cd_offset + cd_size, 1)
    count16 = min(count, _MAX16)
    end = _END.pack(
        0x06054B50, 0, 0, count16, count16, min(cd_size, _MAX32), min(cd_offset, _MAX32), 0
    )
    return zip64_end + locator + end


def _journal_record(entry: WrittenEntry) -> bytes:
    return json.dumps(asdict(entry), sort_keys=True).encode() + b"\n"


def _journal_lines(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """(offset just past the line, parsed line) of each whole line; stops at a torn one."""
    position = 0
    while (newline := data.find(b"\n", position)) >= 0:
        try:
            parsed = json.loads(data[position:newline])
        except ValueError:
            return
        if not isinstance(parsed, dict):
            return
        position = newline + 1
        yield position, parsed


def _entry_from_record(record: dict[str, Any]) -> WrittenEntry | None:
    """The entry a journal line records, or None if the line is not one this writer wrote."""
    name, sha256 = record.get("name"), record.get("sha256")
    size, crc, offset = (record.get(key) for key in ("size", "crc32", "offset"))
    if not isinstance(name, str) or not isinstance(sha256, str) or len(record) != 5:
        return None
    if not (isinstance(size, int) and isinstance(crc, int) and isinstance(offset, int)):
        return None
    if min(size, crc, offset) < 0 or max(size, offset) >= 1 << 63 or crc > _MAX32:
        return None
    try:
        check_member_name(name)
    except ZipWriteError:
        return None
    return WrittenEntry(name=name, size=size, sha256=sha256, crc32=crc, offset=offset)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class BundleWriter:
    """Writes one zip64 archive of stored members, resumable; see the module docstring."""

    def __init__(
        self, final_path: Path, partial: IO[bytes], journal: IO[bytes], *, zip64_always: bool,
        sync_bytes: int, sync_members: int,
    ) -> None:  # fmt: skip
        self.final_path = final_path
        self._partial = partial
        self._journal = journal
        self._zip64_always = zip64_always
        self._sync_bytes = sync_bytes
        self._sync_members = sync_members
        self._entries: dict[str, WrittenEntry] = {}
        self._pending: list[WrittenEntry] = []  # complete, not yet fsync'd and journaled
        self._pending_bytes = 0
        self._end = 0
        self._closed = False

    @classmethod
    def open(
        cls, final_path: Path, *, zip64_always: bool = False, sync_bytes: int = 64 << 20,
        sync_members: int = 1000,
    ) -> BundleWriter:  # fmt: skip
        """Start writing ``final_path`` (its folder must exist; a file there is replaced at
        :meth:`finish`), or resume an interrupted write of it.

        The partial and the journal are fsync'd (and the journal appended) once at least
        ``sync_bytes`` bytes or ``sync_members`` members are complete since the last time, and at
        :meth:`abort` / :meth:`finish`: a crash loses at most that much finished work, which a
        resume writes again. ``sync_members=1`` syncs after every member.
        """
        partial_path, journal_path = _partial_paths(final_path)
        journal = open(journal_path, "a+b", buffering=0)  # noqa: SIM115 (owned by the writer)
        try:
            fcntl.flock(journal.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fd = os.open(partial_path, os.O_RDWR | os.O_CREAT, 0o644)
        except BlockingIOError:
            journal.close()
            raise ZipWriteError(f"{final_path.name} is being written by another process") from None
        except BaseException:
            journal.close()
            raise
        partial = open(fd, "r+b", buffering=0)  # noqa: SIM115 (owned by the writer)
        writer = cls(
            final_path, partial, journal, zip64_always=zip64_always,
            sync_bytes=sync_bytes, sync_members=sync_members,
        )  # fmt: skip
        try:
            writer._resume()
        except BaseException:
            writer._close()
            raise
        return writer

    def _resume(self) -> None:
        """Keep the journaled members found intact in the partial; cut both files after them."""
        self._journal.seek(0)
        lines = _journal_lines(self._journal.read())
        first = next(lines, None)
        if first is not None and first[1] != _JOURNAL_HEADER:
            raise ZipWriteError(f"{self._journal.name} is not a journal this writer can resume")
        journal_end = 0 if first is None else first[0]
        for position, record in lines:
            entry = _entry_from_record(record)
            if entry is None or not self._keep(entry):
                break
            journal_end = position
        self._journal.truncate(journal_end)
        if journal_end == 0:
            _write_all(self._journal.fileno(), json.dumps(_JOURNAL_HEADER).encode() + b"\n")
        self._partial.truncate(self._end)
        self._partial.seek(self._end)
        os.fsync(self._journal.fileno())
        os.fsync(self._partial.fileno())

    def _keep(self, entry: WrittenEntry) -> bool:
        """Take a journaled member back if it follows the previous one and its header is intact."""
        if entry.offset != self._end or entry.name in self._entries:
            return False
        header = _local_header(entry.name, entry.crc32, entry.size)
        self._partial.seek(entry.offset)
        if self._partial.read(len(header)) != header:
            return False
        if os.fstat(self._partial.fileno()).st_size < entry.end:
            return False
        self._entries[entry.name] = entry
        self._end = entry.end
        return True

    def written(self) -> dict[str, WrittenEntry]:
        """The members complete so far, in archive order (after a resume, the earlier ones first)."""
        return dict(self._entries)

    def add_bytes(self, name: str, data: bytes) -> WrittenEntry:
        return self.add_stream(name, [data])

    def add_stream(
        self, name: str, chunks: Iterable[bytes], *, size: int | None = None,
        sha256: str | None = None,
    ) -> WrittenEntry:  # fmt: skip
        """Write one stored member from ``chunks`` in constant memory.

        If ``size`` or ``sha256`` is given and the bytes differ, or ``chunks`` raises, the member
        is taken back (the partial is cut where it began) and the writer stays usable.
        """
        self._check_open()
        check_member_name(name)
        if name in self._entries:
            raise ZipWriteError("member written twice", member=name)
        offset = self._end
        fd = self._partial.fileno()
        try:
            _write_all(fd, _local_header(name, 0, 0))
            written, crc, digest = self._copy(name, chunks, size)
            if sha256 is not None and digest != sha256.lower():
                raise ZipWriteError(f"sha256 is {digest}, expected {sha256}", member=name)
            if size is not None and written != size:
                raise ZipWriteError(f"{written} bytes, expected {size}", member=name)
            os.pwrite(fd, _local_header(name, crc, written), offset)
        except BaseException:
            self._partial.truncate(offset)
            self._partial.seek(offset)
            raise
        entry = WrittenEntry(name=name, size=written, sha256=digest, crc32=crc, offset=offset)
        self._entries[name] = entry
        self._end = entry.end
        self._pending.append(entry)
        self._pending_bytes += written
        if self._pending_bytes >= self._sync_bytes or len(self._pending) >= self._sync_members:
            self._sync()
        return entry

    def _copy(self, name: str, chunks: Iterable[bytes], size: int | None) -> tuple[int, int, str]:
        fd = self._partial.fileno()
        written, crc, digest = 0, 0, hashlib.sha256()
        for chunk in chunks:
            written += len(chunk)
            if size is not None and written > size:
                raise ZipWriteError(f"more than the expected {size} bytes", member=name)
            crc = zlib.crc32(chunk, crc)
            digest.update(chunk)
            _write_all(fd, chunk)
        return written, crc, digest.hexdigest()

    def _sync(self) -> None:
        """Make the pending members durable, then (only then) journal them."""
        if not self._pending:
            return
        os.fsync(self._partial.fileno())
        _write_all(self._journal.fileno(), b"".join(map(_journal_record, self._pending)))
        os.fsync(self._journal.fileno())
        self._pending.clear()
        self._pending_bytes = 0

    def finish(self) -> Path:
        """Write the central directory and end records, fsync, and rename the partial to the final
        path (atomic); the journal is removed. Returns the final path."""
        self._check_open()
        self._sync()
        fd = self._partial.fileno()
        block = bytearray()
        for entry in self._entries.values():
            block += _central_header(entry, self._zip64_always)
            if len(block) >= _COPY_BLOCK:
                _write_all(fd, block)
                block.clear()
        cd_size = self._partial.tell() + len(block) - self._end
        block += _end_records(len(self._entries), self._end, cd_size)
        _write_all(fd, block)
        os.fsync(fd)
        partial_path, journal_path = _partial_paths(self.final_path)
        os.replace(partial_path, self.final_path)
        _fsync_dir(self.final_path.parent)
        journal_path.unlink()
        self._close()
        return self.final_path

    def abort(self) -> None:
        """Stop without finishing: the complete members are journaled; the partial stays for a
        resume. Safe to call more than once."""
        if self._closed:
            return
        try:
            self._sync()
        finally:
            self._close()

    def _close(self) -> None:
        self._closed = True
        self._partial.close()
        self._journal.close()  # releases the lock

    def _check_open(self) -> None:
        if self._closed:
            raise ZipWriteError(f"the writer of {self.final_path.name} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving the block aborts unless :meth:`finish` was called: the partial stays."""
        self.abort()


def _partial_paths(final_path: Path) -> tuple[Path, Path]:
    partial = final_path.with_name(final_path.name + ".partial")
    return partial, partial.with_name(partial.name + ".journal")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
