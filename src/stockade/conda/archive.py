"""Reading and validating an untrusted package archive (``.conda`` or ``.tar.bz2``).

:func:`inspect_package` reads the archive once, sequentially, in bounded memory, without extracting
anything to disk, and raises :class:`~stockade.conda.errors.PackageValidationError` (or
:class:`~stockade.conda.errors.PackageTooLargeError` for a cap) on the first rule broken. The rules
and their names (``package:<rule>``):

- ``filename``: the upload name is not ``name-version-build.conda|.tar.bz2``;
- ``format``: not a real ``.conda`` (an uncompressed zip of ``metadata.json``,
  ``info-<stem>.tar.zst`` and ``pkg-<stem>.tar.zst``) or ``.tar.bz2``; empty, truncated, corrupt;
- ``missing-index``, ``index-json``, ``info-json``, ``encoding``: ``info/`` metadata (every
  ``index.json`` field, :mod:`stockade.conda.records`; keys the server owns, such as ``url``,
  ``fn``, ``channel``, ``md5``, ``sha256`` and ``size``, are dropped from it);
- ``name``, ``version``, ``build``, ``subdir``: CEP 26; ``filename-mismatch``, ``subdir-mismatch``,
  ``future-timestamp``: the index against the upload;
- ``path-traversal``, ``unsafe-path``, ``link-escape``, ``special-file``, ``duplicate-member``:
  the members;
- ``paths-mismatch``: ``info/paths.json`` against the members;
- ``archive-size``, ``unpacked-size``, ``decompression-ratio``, ``info-size``, ``member-count``:
  the caps of :class:`ValidationLimits`.
"""

from __future__ import annotations

import bz2
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import zstandard

from stockade.conda.condazip import (
    check_central_directory,
    check_entries,
    check_layout,
    check_metadata,
)
from stockade.conda.errors import PackageTooLargeError, PackageValidationError
from stockade.conda.members import (
    MemberKind,
    MemberRecord,
    check_hardlink_target,
    check_links,
    check_symlink_target,
    member_kind,
    normalize_path,
)
from stockade.conda.metadata import (
    ABOUT,
    FILES,
    INDEX,
    KEPT,
    PATHS,
    RUN_EXPORTS,
    SECURITY,
    check_identity,
    check_index_fields,
    check_paths,
    check_run_exports,
    check_timestamp,
    decode_text,
    entry_for,
    is_checked_text,
    is_payload,
    link_scripts,
    load_object,
    mitigated_ids,
    parse_files,
    parse_paths,
)
from stockade.conda.names import parse_filename
from stockade.conda.package import PackageInfo, PathEntry, ValidationLimits
from stockade.conda.records import without_server_keys
from stockade.conda.tarstream import (
    CHUNK,
    Budget,
    CountingReader,
    iter_members,
    open_tar,
    read_member,
)

__all__ = ["PackageInfo", "PathEntry", "ValidationLimits", "inspect_package"]

_FORMAT_ERRORS: Final = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zstandard.ZstdError,
    EOFError,
    OSError,
    ValueError,
    OverflowError,
    IndexError,
    RecursionError,
)


@contextmanager
def _format_errors(what: str) -> Iterator[None]:
    """Turn the errors of the decoders (zip, zstd, bz2, tar) into ``package:format``."""
    try:
        yield
    except _FORMAT_ERRORS as exc:
        reason = str(exc) or type(exc).__name__
        raise PackageValidationError(
            "format", f"{what} is corrupt or truncated ({reason})"
        ) from None


def _placement(path: str, component: str) -> None:
    in_info = path == "info" or path.startswith("info/")
    if component == "info" and not in_info:
        raise PackageValidationError(
            "format", "the info tar holds a member outside info/", member=path
        )
    if component == "pkg" and in_info and path != "info":
        raise PackageValidationError("format", "the pkg tar holds an info/ member", member=path)


class _Scan:
    """What is learned from the members, one at a time, and the checks run on the way."""

    def __init__(
        self,
        expected: tuple[str, str, str],
        *,
        budget: Budget,
        now_ms: int,
        expected_subdir: str | None,
    ) -> None:
        self.expected = expected
        self.budget = budget
        self.now_ms = now_ms
        self.expected_subdir = expected_subdir
        self.records: dict[str, MemberRecord] = {}
        self.info_data: dict[str, bytes] = {}
        self.index: dict[str, Any] | None = None
        self.unpacked = 0

    def read_tar(self, tar: tarfile.TarFile, component: str) -> None:
        for info in iter_members(tar):
            self.budget.count_member()
            path = normalize_path(info.name)
            kind = member_kind(info, path or info.name)
            if path == "" and kind == "dir":
                continue  # "./", the root itself
            if path == "":
                raise PackageValidationError(
                    "unsafe-path", "member names the root", member=info.name
                )
            _placement(path, component)
            previous = self.records.get(path)
            if previous is not None and not (previous.kind == kind == "dir"):
                raise PackageValidationError(
                    "duplicate-member", "the archive holds this path twice", member=path
                )
            self.records[path] = self._record(tar, info, path, kind, component)

    def _record(
        self,
        tar: tarfile.TarFile,
        info: tarfile.TarInfo,
        path: str,
        kind: MemberKind,
        component: str,
    ) -> MemberRecord:
        if kind == "file":
            return self._file(tar, info, path, component)
        if path in KEPT:
            raise PackageValidationError(
                "format", "metadata file is not a regular file", member=path
            )
        if kind == "symlink":
            target = check_symlink_target(info.linkname, path)
            return MemberRecord(path, kind, component, target=target)
        if kind == "hardlink":
            linked = check_hardlink_target(info.linkname, path, component, self.records)
            return MemberRecord(
                path, kind, component, size=linked.size, sha256=linked.sha256, target=linked.path
            )
        return MemberRecord(path, kind, component)

    def _file(
        self, tar: tarfile.TarFile, info: tarfile.TarInfo, path: str, component: str
    ) -> MemberRecord:
        in_info = path.startswith("info/")
        if in_info:
            self.budget.add_info(info.size, path)
        keep = in_info and (path in KEPT or is_checked_text(path))
        size, sha256, data = read_member(tar, info, keep=keep)
        self.unpacked += size
        if data is not None:
            self._info_file(path, data)
        return MemberRecord(path, "file", component, size=size, sha256=sha256)

    def _info_file(self, path: str, data: bytes) -> None:
        if path == INDEX:
            index = load_object(data, INDEX, rule="index-json")
            check_index_fields(index)
            check_identity(index, self.expected, self.expected_subdir)
            check_timestamp(index, self.now_ms, self.budget.limits.future_tolerance_s)
            self.index = without_server_keys(index)
            return
        decode_text(data, path)
        if path in KEPT or path == SECURITY:
            self.info_data[path] = data

    def require_index(self) -> dict[str, Any]:
        if self.index is None:
            raise PackageValidationError(
                "missing-index", f"the package has no {INDEX}", member=INDEX
            )
        return self.index

    def _optional_object(self, member: str) -> dict[str, Any]:
        data = self.info_data.get(member)
        return {} if data is None else load_object(data, member, rule="info-json")

    def _paths(self) -> list[PathEntry]:
        listed = self.info_data.get(PATHS)
        if listed is not None:
            entries = parse_paths(listed)
            check_paths(entries, self.records)
            return entries
        files = self.info_data.get(FILES)
        if files is not None:
            return [entry_for(path, self.records.get(path)) for path in parse_files(files)]
        return [entry_for(r.path, r) for r in self.records.values() if is_payload(r)]

    def finish(self, filename: str, kind: Literal["conda", "tar.bz2"]) -> PackageInfo:
        index = self.require_index()
        about = self._optional_object(ABOUT)
        run_exports = self._optional_object(RUN_EXPORTS)
        check_run_exports(run_exports)
        check_links(self.records)
        paths = self._paths()
        return PackageInfo(
            filename=filename,
            format=kind,
            name=index["name"],
            version=index["version"],
            build=index["build"],
            build_number=index["build_number"],
            subdir=index["subdir"],
            index=index,
            about=about,
            run_exports=run_exports,
            paths=paths,
            link_scripts=link_scripts(self.records, index["name"]),
            unpacked_size=self.unpacked,
            vulns_mitigated=mitigated_ids(self.info_data.get(SECURITY)),
        )


def _read_component(archive: zipfile.ZipFile, member: str, component: str, scan: _Scan) -> None:
    with archive.open(member) as raw:
        decompressor = zstandard.ZstdDecompressor()
        reader = decompressor.stream_reader(raw, read_across_frames=True, closefd=False)
        with reader, _format_errors(member):
            scan.read_tar(open_tar(CountingReader(reader, scan.budget)), component)
        while raw.read(CHUNK):  # to the end of the zip member, so that zipfile checks its CRC
            pass


def _read_conda(path: Path, stem: str, scan: _Scan) -> None:
    check_central_directory(path)
    with _format_errors("the .conda archive"), zipfile.ZipFile(path) as archive:
        check_entries(archive, stem, scan.budget)
        check_layout(archive)
        check_metadata(archive)
        _read_component(archive, f"info-{stem}.tar.zst", "info", scan)
        scan.require_index()
        _read_component(archive, f"pkg-{stem}.tar.zst", "pkg", scan)


def _read_tar_bz2(path: Path, scan: _Scan) -> None:
    with _format_errors("the .tar.bz2 archive"), path.open("rb") as raw:
        if raw.read(3) != b"BZh":
            raise PackageValidationError("format", "the file is not a bzip2 stream")
        raw.seek(0)
        with bz2.BZ2File(raw) as decompressed:
            scan.read_tar(open_tar(CountingReader(decompressed, scan.budget)), "")


def _archive_size(path: Path, limits: ValidationLimits) -> int:
    size = path.stat().st_size
    if size == 0:
        raise PackageValidationError("format", "the file is empty")
    if size > limits.max_archive_size:
        raise PackageTooLargeError(
            "archive-size", f"the file is larger than {limits.max_archive_size} bytes"
        )
    return size


def inspect_package(
    path: Path,
    filename: str,
    *,
    limits: ValidationLimits,
    now_ms: int,
    expected_subdir: str | None = None,
) -> PackageInfo:
    """Read the archive at ``path`` (uploaded under ``filename``) as untrusted input and validate it
    completely.

    Raise :class:`PackageValidationError` (or :class:`PackageTooLargeError`) on the first rule
    broken. ``now_ms`` is the current time in milliseconds since the epoch; ``expected_subdir`` the
    subdir the package is uploaded to, if any.
    """
    name, version, build, ext = parse_filename(filename)
    budget = Budget(limits, _archive_size(path, limits))
    scan = _Scan(
        (name, version, build), budget=budget, now_ms=now_ms, expected_subdir=expected_subdir
    )
    if ext == ".conda":
        _read_conda(path, filename.removesuffix(ext), scan)
        return scan.finish(filename, "conda")
    _read_tar_bz2(path, scan)
    return scan.finish(filename, "tar.bz2")
