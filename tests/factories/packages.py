"""Build conda packages (``.conda`` and ``.tar.bz2``) for tests, valid or deliberately broken.

Everything is written with plain ``tarfile``, ``zipfile``, ``bz2`` and ``zstandard`` so that any
part can be made wrong: member names and types, link targets, ``info/`` files, the zip layout.

    spec = PackageSpec(name="demo", version="1.0", build="0", depends=("python >=3.11",))
    good = build_conda(tmp_path, spec)
    evil = build_conda(tmp_path, replace(spec, payload=(file("../escape", b"x"),)))

Decompression bombs are built from one compressed frame of zeros repeated (zstd frames and bzip2
streams may be concatenated), so a "1 GiB" package is a few kilobytes and takes milliseconds.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zstandard

DEFAULT_TIMESTAMP = 1_700_000_000_000  # ms, 2023-11-14
METADATA_JSON = b'{"conda_pkg_format_version": 2}'
EntryKind = Literal["file", "dir", "symlink", "hardlink", "fifo", "chardev", "blockdev"]
Compress = Callable[[bytes], bytes]

_TAR_TYPES: dict[str, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}


@dataclass(frozen=True)
class Entry:
    """One tar member. ``pax`` adds pax header fields (``{"path": ...}`` carries any name)."""

    name: str
    data: bytes = b""
    kind: EntryKind = "file"
    target: str = ""
    mode: int | None = None
    pax: Mapping[str, str] | None = None


def file(name: str, data: bytes = b"", *, mode: int | None = None) -> Entry:
    return Entry(name, data, mode=mode)


def directory(name: str) -> Entry:
    return Entry(name, kind="dir")


def symlink(name: str, target: str) -> Entry:
    return Entry(name, kind="symlink", target=target)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, kind="hardlink", target=target)


def special(name: str, kind: Literal["fifo", "chardev", "blockdev"]) -> Entry:
    return Entry(name, kind=kind)


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.name)
    info.type = _TAR_TYPES[entry.kind]
    info.linkname = entry.target
    info.size = len(entry.data) if entry.kind == "file" else 0
    info.mode = entry.mode if entry.mode is not None else (0o755 if entry.kind == "dir" else 0o644)
    info.mtime = DEFAULT_TIMESTAMP // 1000
    if entry.kind in ("chardev", "blockdev"):
        info.devmajor, info.devminor = 1, 3
    if entry.pax:
        info.pax_headers = dict(entry.pax)
    return info


def tar_bytes(entries: Iterable[Entry], *, end: bool = True) -> bytes:
    """An uncompressed pax tar of ``entries``; without ``end``, no end-of-archive marker."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            tar.addfile(_tarinfo(entry), io.BytesIO(entry.data) if entry.kind == "file" else None)
        offset = tar.offset  # the end of the last member, before the end-of-archive marker
    return buffer.getvalue() if end else buffer.getvalue()[:offset]


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


def bzip2(data: bytes) -> bytes:
    return bz2.compress(data, 9)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def paths_json(payload: Iterable[Entry]) -> dict[str, Any]:
    """The ``info/paths.json`` conda-build would write for ``payload``."""
    contents = {entry.name: entry.data for entry in payload if entry.kind == "file"}
    paths: list[dict[str, Any]] = []
    for entry in payload:
        if entry.kind == "symlink":
            paths.append({"_path": entry.name, "path_type": "softlink"})
        elif entry.kind in ("file", "hardlink"):
            data = contents.get(entry.target, b"") if entry.kind == "hardlink" else entry.data
            paths.append(
                {
                    "_path": entry.name,
                    "path_type": "hardlink",
                    "sha256": sha256(data),
                    "size_in_bytes": len(data),
                }
            )
    return {"paths": paths, "paths_version": 1}


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()


@dataclass(frozen=True)
class PackageSpec:
    """What to put in a package. The defaults make a small valid ``noarch`` package."""

    name: str = "example"
    version: str = "1.0"
    build: str = "0"
    build_number: int = 0
    subdir: str = "noarch"
    depends: tuple[str, ...] = ()
    timestamp: int | None = DEFAULT_TIMESTAMP
    payload: tuple[Entry, ...] = (file("lib/example.txt", b"hello\n"),)
    index_extra: Mapping[str, Any] = field(default_factory=dict)
    index_raw: bytes | None = None  # replaces info/index.json as bytes (bad JSON, bad UTF-8)
    with_index: bool = True
    paths: Literal["auto", "none"] | bytes = "auto"  # bytes replace info/paths.json
    about: Mapping[str, Any] | None = None
    run_exports: Mapping[str, Any] | None = None
    extra_info: tuple[Entry, ...] = ()

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    def index(self) -> dict[str, Any]:
        index: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "subdir": self.subdir,
            "depends": list(self.depends),
        }
        if self.timestamp is not None:
            index["timestamp"] = self.timestamp
        return index | dict(self.index_extra)

    def info_entries(self) -> list[Entry]:
        entries: list[Entry] = []
        if self.with_index:
            raw = self.index_raw if self.index_raw is not None else _json(self.index())
            entries.append(file("info/index.json", raw))
        if self.paths == "auto":
            entries.append(file("info/paths.json", _json(paths_json(self.payload))))
        elif isinstance(self.paths, bytes):
            entries.append(file("info/paths.json", self.paths))
        if self.about is not None:
            entries.append(file("info/about.json", _json(self.about)))
        if self.run_exports is not None:
            entries.append(file("info/run_exports.json", _json(self.run_exports)))
        return entries + list(self.extra_info)


def conda_members(
    spec: PackageSpec,
    *,
    stem: str | None = None,
    info_zst: bytes | None = None,
    pkg_zst: bytes | None = None,
) -> list[tuple[str, bytes]]:
    """The zip members of the ``.conda`` of ``spec``, in order; edit the list to break it."""
    stem = stem or spec.stem
    return [
        ("metadata.json", METADATA_JSON),
        (f"info-{stem}.tar.zst", info_zst or zstd(tar_bytes(spec.info_entries()))),
        (f"pkg-{stem}.tar.zst", pkg_zst or zstd(tar_bytes(spec.payload))),
    ]


def write_zip(
    path: Path,
    members: Sequence[tuple[str, bytes]],
    *,
    compression: int = zipfile.ZIP_STORED,
    force_zip64: bool = False,
) -> Path:
    """Write ``members`` in order, repeated names included."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a repeated name: we want one
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 0, 0, 0))
            info.compress_type = compression
            with archive.open(info, "w", force_zip64=force_zip64) as member:
                member.write(data)
    return path


def build_conda(
    directory: Path, spec: PackageSpec | None = None, *, filename: str | None = None, **parts: Any
) -> Path:
    """Write the ``.conda`` of ``spec``; ``parts`` go to :func:`conda_members`."""
    spec = spec or PackageSpec()
    path = directory / (filename or f"{spec.stem}.conda")
    return write_zip(path, conda_members(spec, **parts))


def build_tar_bz2(
    directory: Path,
    spec: PackageSpec | None = None,
    *,
    filename: str | None = None,
    entries: Sequence[Entry] | None = None,
) -> Path:
    """Write the ``.tar.bz2`` of ``spec`` (info/ first, as conda-package-handling does)."""
    spec = spec or PackageSpec()
    path = directory / (filename or f"{spec.stem}.tar.bz2")
    members = entries if entries is not None else [*spec.info_entries(), *spec.payload]
    path.write_bytes(bzip2(tar_bytes(members)))
    return path


def build(
    directory: Path, spec: PackageSpec | None = None, *, fmt: Literal["conda", "tar.bz2"] = "conda"
) -> Path:
    """Write ``spec`` in the format ``fmt``."""
    if fmt == "conda":
        return build_conda(directory, spec)
    return build_tar_bz2(directory, spec)


def zero_bomb(
    compress: Compress, size: int, *, prefix: bytes = b"", chunk: int = 8 * 1024 * 1024
) -> bytes:
    """A compressed tar stream: ``prefix`` (tar members, no end marker), then one member of
    ``size`` zero bytes, then the end marker."""
    header = _tarinfo(Entry("lib/zeros.bin"))
    header.size = size
    zero_frame = compress(bytes(chunk))
    frames = [compress(prefix + header.tobuf(tarfile.PAX_FORMAT))]
    frames += [zero_frame] * (size // chunk)
    frames.append(
        compress(bytes(size % chunk + (-size) % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE))
    )
    return b"".join(frames)


def conda_bomb(directory: Path, size: int, spec: PackageSpec | None = None) -> Path:
    """A ``.conda`` whose pkg tar unpacks to ``size`` zero bytes."""
    spec = spec or PackageSpec(payload=(), paths="none")
    return build_conda(directory, spec, pkg_zst=zero_bomb(zstd, size))


def tar_bz2_bomb(directory: Path, size: int, spec: PackageSpec | None = None) -> Path:
    """A ``.tar.bz2`` whose last member unpacks to ``size`` zero bytes."""
    spec = spec or PackageSpec(payload=(), paths="none")
    path = directory / f"{spec.stem}.tar.bz2"
    path.write_bytes(zero_bomb(bzip2, size, prefix=tar_bytes(spec.info_entries(), end=False)))
    return path
