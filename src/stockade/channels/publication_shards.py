"""CEP 16 shards of a publication: rebuilt only for names whose records changed (by fingerprint)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from stockade.channels.models import SubdirShard
from stockade.channels.publication_signing import ServedSignatures
from stockade.conda.names import parse_filename
from stockade.conda.shards import build_shard, build_shard_index
from stockade.core.clock import utcnow
from stockade.storage.interfaces import BlobStore

SHARD_GRACE = timedelta(days=7)


@dataclass
class _NameGroup:
    """The records of one package name in a subdir: the input of its shard."""

    tar_bz2: list[tuple[str, bytes]] = field(default_factory=list)
    conda: list[tuple[str, bytes]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def fingerprint(self, signing: ServedSignatures) -> str:
        """Of the records and their signatures: this server's follow from its keys (the tag) and
        the record bytes; kept upstream entries count one by one."""
        digest = hashlib.blake2b(digest_size=20)
        if signing.tag:
            digest.update(b"signed-by:" + signing.tag.encode() + b"\n")
        for fn, rec in sorted(self.tar_bz2) + sorted(self.conda):
            digest.update(fn.encode() + b"\0" + rec + b"\n")
            if fn in signing.upstream:
                digest.update(signing.entries[fn] + b"\n")
        for fn in sorted(self.removed):
            digest.update(b"-" + fn.encode() + b"\n")
        return digest.hexdigest()


def build_shards(
    blobs: BlobStore,
    subdir: str,
    names: dict[str, str],
    records: tuple[dict[str, bytes], dict[str, bytes], ServedSignatures],
    removed: list[str],
    known: dict[str, tuple[str, str]],
) -> tuple[dict[str, tuple[str, str]], set[str], str]:
    """Shards of the names whose records changed (by fingerprint); the others are reused.

    Returns (name -> (fingerprint, shard sha256), names gone, shard index sha256).
    """
    tar_bz2, conda, signing = records
    groups: dict[str, _NameGroup] = defaultdict(_NameGroup)
    for fn, rec in tar_bz2.items():
        groups[names[fn]].tar_bz2.append((fn, rec))
    for fn, rec in conda.items():
        groups[names[fn]].conda.append((fn, rec))
    for fn in removed:
        groups[names.get(fn) or parse_filename(fn)[0]].removed.append(fn)
    index: dict[str, bytes] = {}
    shards: dict[str, tuple[str, str]] = {}
    for name, group in groups.items():
        fingerprint = group.fingerprint(signing)
        previous = known.get(name)
        if previous is not None and previous[0] == fingerprint:
            sha = previous[1]
        else:
            entries = signing.entries
            signatures = {
                fn: orjson.loads(entries[fn])
                for fn, _ in group.tar_bz2 + group.conda
                if fn in entries
            }
            _digest, data = build_shard(group.tar_bz2, group.conda, group.removed, signatures)
            sha = blobs.put_bytes(data)
        shards[name] = (fingerprint, sha)
        index[name] = bytes.fromhex(sha)
    return shards, set(known) - set(groups), blobs.put_bytes(build_shard_index(subdir, index))


def store_shards(
    session: Session, index_id: int, shards: dict[str, tuple[str, str]], gone: set[str]
) -> set[str]:
    """Point the subdir at its current shards; superseded ones stay servable for a grace period.

    Returns the names whose records changed (new, changed or gone shards)."""
    now = utcnow()
    changed: set[str] = set()
    current = {
        s.name: s
        for s in session.scalars(
            select(SubdirShard).where(
                SubdirShard.subdir_index_id == index_id, SubdirShard.retired_at.is_(None)
            )
        ).all()
    }
    for name in gone:
        if name in current:
            current[name].retired_at = now
            changed.add(name)
    for name, (fingerprint, sha) in shards.items():
        shard = current.get(name)
        if shard is not None and shard.fingerprint == fingerprint:
            continue
        changed.add(name)
        if shard is not None:
            shard.retired_at = now
        session.add(
            SubdirShard(
                subdir_index_id=index_id, name=name, fingerprint=fingerprint, shard_sha256=sha
            )
        )
    session.execute(
        delete(SubdirShard).where(
            SubdirShard.subdir_index_id == index_id, SubdirShard.retired_at < now - SHARD_GRACE
        )
    )
    return changed
