"""CEP 16 sharded repodata: one content-addressed shard per package name, plus an index.

Formats, as rattler (the reference client, ``rattler_conda_types::Shard`` / ``ShardedRepodata``)
and rattler-index (the reference writer) use them:

- A shard is a zstd-compressed msgpack map ``{"packages": {fn: record}, "packages.conda": {fn:
  record}, "removed": [fn, ...]}``. Inside records, ``sha256``, ``md5`` and ``legacy_bz2_md5`` are
  msgpack *binary* (32 or 16 raw bytes), not hex strings; every other field is as in
  ``repodata.json``.
- A shard's address is the SHA-256 of its *compressed* bytes (what is served and stored), so the
  file is ``<shards_base_url><hex digest>.msgpack.zst`` and anyone can verify it by hashing the
  download. Shards are built deterministically (sorted keys, single-threaded zstd at a fixed level)
  so an unchanged package name keeps its address across publications.
- The index ``repodata_shards.msgpack.zst`` is a zstd-compressed msgpack map ``{"version": 1,
  "info": {"subdir", "base_url", "shards_base_url", "created_at"?}, "shards": {name: digest}}``
  with 32-byte binary digests. URLs are relative to the index; ``created_at`` is RFC 3339 UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
import zstandard

from stockade.conda.repodata import decode_record
from stockade.core.errors import InvalidInputError

SHARD_INDEX_VERSION = 1
SHARD_SUFFIX = ".msgpack.zst"
SHARD_ZSTD_LEVEL = 3
#: Record fields stored as raw bytes in shards (hex strings in repodata.json).
BINARY_HASH_FIELDS = ("sha256", "md5", "legacy_bz2_md5")
_MAX_DECOMPRESSED = 1 << 30


@dataclass
class ShardRecords:
    """The records of one package name, ready for :func:`build_shard`."""

    tar_bz2: list[tuple[str, bytes]] = field(default_factory=list)
    conda: list[tuple[str, bytes]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def package_name_from_filename(filename: str) -> str:
    """``name-version-build.ext`` -> ``name`` (CEP 26: version and build hold no ``-``)."""
    for suffix in (".tar.bz2", ".conda"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            break
    else:
        raise InvalidInputError(f"{filename!r} is not a package filename", code="shard:filename")
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise InvalidInputError(f"{filename!r} is not name-version-build", code="shard:filename")
    return parts[0].lower()


def _record_name(filename: str, record_json: bytes) -> str:
    name = decode_record(record_json).get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"record of {filename!r} has no name", code="shard:record")
    return name.lower()


def shard_names(
    tar_bz2: Iterable[tuple[str, bytes]],
    conda: Iterable[tuple[str, bytes]],
    removed: Iterable[str] = (),
) -> dict[str, ShardRecords]:
    """Group records by package name (their ``name`` field, lower-cased, as rattler normalizes).

    Removed filenames carry no record, so they are grouped by the name in the filename.
    """
    groups: dict[str, ShardRecords] = {}
    for filename, record_json in tar_bz2:
        name = _record_name(filename, record_json)
        groups.setdefault(name, ShardRecords()).tar_bz2.append((filename, record_json))
    for filename, record_json in conda:
        name = _record_name(filename, record_json)
        groups.setdefault(name, ShardRecords()).conda.append((filename, record_json))
    for filename in removed:
        name = package_name_from_filename(filename)
        groups.setdefault(name, ShardRecords()).removed.append(filename)
    return dict(sorted(groups.items()))


def _shard_record(filename: str, record_json: bytes) -> dict[str, Any]:
    record = decode_record(record_json)
    for key in BINARY_HASH_FIELDS:
        value = record.get(key)
        if isinstance(value, str):
            try:
                record[key] = bytes.fromhex(value)
            except ValueError as exc:
                raise InvalidInputError(
                    f"record of {filename!r}: {key} is not hex", code="shard:record"
                ) from exc
    return record


def _packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _compress(data: bytes) -> bytes:
    # Single-threaded on purpose: the output, hence the shard address, must be reproducible.
    return zstandard.ZstdCompressor(level=SHARD_ZSTD_LEVEL, write_content_size=True).compress(data)


def _decompress(data: bytes) -> bytes:
    chunks: list[bytes] = []
    total = 0
    with zstandard.ZstdDecompressor().stream_reader(data) as reader:
        while chunk := reader.read(1 << 20):
            total += len(chunk)
            if total > _MAX_DECOMPRESSED:
                raise InvalidInputError("decompressed shard is too large", code="shard:too-large")
            chunks.append(chunk)
    return b"".join(chunks)


def build_shard(
    tar_bz2: Iterable[tuple[str, bytes]],
    conda: Iterable[tuple[str, bytes]],
    removed: Iterable[str] = (),
    signatures: Mapping[str, Any] | None = None,
) -> tuple[bytes, bytes]:
    """Build one shard from (filename, record_json) pairs.

    ``signatures`` (filename -> conda-content-trust entry) adds a ``signatures`` map, as
    ``repodata.json`` carries it; each covers the record in its ``repodata.json`` (JSON) form.

    Returns ``(digest, data)``: ``data`` is the file to serve (zstd msgpack) and ``digest`` the
    32-byte SHA-256 of ``data``, which names it (see :func:`shard_filename`).
    """
    shard = {
        "packages": {fn: _shard_record(fn, raw) for fn, raw in sorted(tar_bz2)},
        "packages.conda": {fn: _shard_record(fn, raw) for fn, raw in sorted(conda)},
        "removed": sorted(set(removed)),
    }
    if signatures:
        shard["signatures"] = dict(sorted(signatures.items()))
    data = _compress(_packb(shard))
    return hashlib.sha256(data).digest(), data


def shard_filename(digest: bytes) -> str:
    """The file name of a shard: lower-case hex of its digest plus ``.msgpack.zst``."""
    if len(digest) != hashlib.sha256().digest_size:
        raise ValueError("a shard digest is 32 bytes")
    return digest.hex() + SHARD_SUFFIX


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_shard_index(
    subdir: str,
    shards: Mapping[str, bytes],
    *,
    base_url: str = "./",
    shards_base_url: str = "./shards/",
    created_at: datetime | None = None,
) -> bytes:
    """Build ``repodata_shards.msgpack.zst`` from package name -> shard digest.

    ``created_at`` is written when given (pass the publication time); without it the index is a
    pure function of its inputs.
    """
    info: dict[str, Any] = {
        "subdir": subdir,
        "base_url": base_url,
        "shards_base_url": shards_base_url,
    }
    if created_at is not None:
        info["created_at"] = _rfc3339(created_at)
    for name, digest in shards.items():
        shard_filename(digest)  # validates the length
        if not name:
            raise ValueError("empty package name in shard index")
    index = {
        "version": SHARD_INDEX_VERSION,
        "info": info,
        "shards": {name: bytes(shards[name]) for name in sorted(shards)},
    }
    return _compress(_packb(index))


def _unpack_map(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(_decompress(data), raw=False, strict_map_key=True)
    except (zstandard.ZstdError, ValueError) as exc:
        raise InvalidInputError(f"{what} cannot be decoded: {exc}", code="shard:decode") from exc
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} is not a map", code="shard:decode")
    return value


def read_shard(data: bytes) -> dict[str, Any]:
    """Decode a shard file (hash fields stay bytes)."""
    return _unpack_map(data, "shard")


def read_shard_index(data: bytes) -> dict[str, Any]:
    """Decode a ``repodata_shards.msgpack.zst`` file (digests stay bytes)."""
    return _unpack_map(data, "shard index")
