"""Read model for serving: where the current index files and package bytes of a channel are.

Serving must be cheap, so lookups are kept in memory: index pointers and package files with the
version of their subdir they were read under (``channels/servable.py``), channels for a short
time. Every process reads the subdirs' versions at most every ``CHECK_SECONDS`` (the first request
that finds them older does, through ``refresh``); the in-process publisher and every commit that
declared a change (``Container.notify_changes``) make the next request read them at once.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.access import ChannelRef
from stockade.channels.models import Artifact, Channel, SubdirIndex, SubdirShard
from stockade.channels.privacy import channel_ref
from stockade.channels.scanstate import ScanStatus
from stockade.channels.servable import (
    ENTRY_BYTES,
    ArtifactPointer,
    Moved,
    ServableFiles,
    ServingState,
    SubdirKey,
    VersionedCache,
    possible_channel,
    possible_filename,
    possible_subdir,
)
from stockade.conda.repodata import compress_bz2
from stockade.db.engine import transaction
from stockade.storage.interfaces import BlobStore

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Values for ``ttl`` seconds; at ``max_entries`` it starts again empty (callers keep only
    short keys: channel names that may exist, at most 512 characters)."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: K, value: V) -> None:
        if len(self._data) >= self.max_entries:
            self._data.clear()
        self._data[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


@dataclass(frozen=True)
class IndexPointer:
    rev: int
    repodata: str
    repodata_zst: str
    repodata_bz2: str | None
    shard_index: str | None
    run_exports: str | None
    published_at: float  # epoch seconds


@dataclass(frozen=True)
class ChannelFiles:
    ref: ChannelRef
    channeldata: str | None
    notices: str | None


__all__ = ["ArtifactPointer", "ChannelFiles", "IndexLocator", "IndexPointer"]

#: What an index pointer adds to its entry (five sha256 strings and the object), and what each
#: shard of a subdir's remembered set costs (its sha256 string and set slot): measured.
INDEX_BYTES = 1024
SHARD_BYTES = 136


def _index_cost(key: SubdirKey, value: IndexPointer | None) -> int:
    return ENTRY_BYTES + sys.getsizeof(key[1]) + (INDEX_BYTES if value is not None else 0)


def _shards_cost(key: SubdirKey, value: frozenset[str]) -> int:
    return ENTRY_BYTES + sys.getsizeof(key[1]) + sys.getsizeof(value) + SHARD_BYTES * len(value)


class IndexLocator:
    """Lookups for the conda endpoints. The ``cached_*`` methods answer from memory (for the
    event loop) and are current only while ``fresh()``: callers ``refresh()`` first otherwise."""

    def __init__(self, factory: sessionmaker[Session], blobs: BlobStore, ttl: float = 2.0) -> None:
        self.factory = factory
        self.blobs = blobs
        self.state = ServingState(factory)
        self.files = ServableFiles()
        self._channels: TTLCache[str, ChannelFiles | None] = TTLCache(ttl)
        # Bounded in bytes as well as entries (``VersionedCache``); subdirs that may exist only.
        self._indexes: VersionedCache[SubdirKey, IndexPointer | None]
        self._indexes = VersionedCache(100_000, 16 * 1024**2, _index_cost)
        # A conda-forge-sized subdir's shard set is ~5 MB: room for the busy ones.
        self._shards: VersionedCache[SubdirKey, frozenset[str]]
        self._shards = VersionedCache(10_000, 256 * 1024**2, _shards_cost)
        self._bz2_lock = threading.Lock()

    def fresh(self) -> bool:
        return self.state.fresh(time.monotonic())

    def refresh(self) -> None:
        """Read the subdirs' versions (a worker thread); forget what they say moved."""
        self._apply(self.state.refresh())

    def _apply(self, moved: Moved) -> None:
        for key in moved.subdirs:
            self._indexes.drop(key)
            self._shards.drop(key)
        if moved.channels:
            self._channels.clear()
        if moved.channel_set:  # a channel id may now name another channel
            self._indexes.clear()
            self._shards.clear()
            self.files.clear()

    def invalidate(self, channel_id: int, subdir: str) -> None:
        """This process published ``subdir`` (or changed its pointers)."""
        self._indexes.drop((channel_id, subdir))
        self.state.force()

    def invalidate_channels(self) -> None:
        """A change was committed in this process: channels are read again, and the subdirs'
        versions before the next request is answered."""
        self._channels.clear()
        self.state.force()

    # The ``cached_*`` methods also answer, without remembering it, that a name no channel,
    # subdir or file can have (``channels/servable.py``) has nothing: 404, no query.

    def cached_channel(self, name: str) -> tuple[bool, ChannelFiles | None]:
        """(hit, value) from memory only: never touches the database (for async hot paths)."""
        found = self._channels.get(name)
        return found if found[0] or possible_channel(name) else (True, None)

    def cached_index(self, channel_id: int, subdir: str) -> tuple[bool, IndexPointer | None]:
        """(hit, value) from memory only: never touches the database (for async hot paths)."""
        key = (channel_id, subdir)
        found = self._indexes.get(key, self.state.versions.get(key))
        return found if found[0] or possible_subdir(subdir) else (True, None)

    def cached_artifact(
        self, channel_id: int, subdir: str, filename: str
    ) -> tuple[bool, ArtifactPointer | None]:
        """(hit, value) from memory only: the servable file, None if it is not (or unknown)."""
        found = self.files.get(
            (channel_id, subdir, filename), self.state.versions.get((channel_id, subdir))
        )
        if found[0] or (possible_subdir(subdir) and possible_filename(filename)):
            return found
        return True, None

    def forget_artifact(self, channel_id: int, subdir: str, filename: str) -> None:
        """Read this file again next time (its verdict arrived: no version shows that)."""
        self.files.drop((channel_id, subdir, filename))

    def channel(self, name: str) -> ChannelFiles | None:
        hit, value = self.cached_channel(name)
        if hit:
            return value
        with self.factory() as session:
            row = session.scalar(select(Channel).where(Channel.name == name))
            value = None
            if row is not None:  # effective privacy: the strictest along the path
                ref = channel_ref(row, session)
                value = ChannelFiles(ref, row.channeldata_sha256, row.notices_sha256)
        self._channels.put(name, value)
        return value

    def index(self, channel_id: int, subdir: str) -> IndexPointer | None:
        key = (channel_id, subdir)
        hit, value = self.cached_index(channel_id, subdir)
        if hit:
            return value
        version = self.state.versions.get(key)  # before the read: a later change moves it
        with self.factory() as session:
            row = session.scalar(
                select(SubdirIndex).where(
                    SubdirIndex.channel_id == channel_id, SubdirIndex.subdir == subdir
                )
            )
            value = _pointer(row) if row is not None else None
        self._indexes.put(key, version, value)
        return value

    def artifact(self, channel_id: int, subdir: str, filename: str) -> ArtifactPointer | None:
        """The servable file (remembered with its subdir's version), None if there is none."""
        hit, value = self.cached_artifact(channel_id, subdir, filename)
        if hit:
            return value
        key = (channel_id, subdir, filename)
        version = self.state.versions.get((channel_id, subdir))  # before the read
        value = self._read_artifact(channel_id, subdir, filename)
        self.files.put(key, version, value)
        return value

    def _read_artifact(self, channel_id: int, subdir: str, filename: str) -> ArtifactPointer | None:
        with self.factory() as session:
            row = session.execute(
                select(
                    Artifact.sha256,
                    Artifact.size,
                    Artifact.created_at,
                    Artifact.mirror_id,
                    Artifact.id,
                    Artifact.scan_status,
                ).where(
                    Artifact.channel_id == channel_id,
                    Artifact.subdir == subdir,
                    Artifact.filename == filename,
                    Artifact.servable.is_(True),  # the one rule (channels/scanstate.py)
                )
            ).first()
        if row is None:
            return None
        return ArtifactPointer(
            row.sha256,
            row.size,
            row.created_at.timestamp(),
            row.mirror_id,
            subdir,
            filename,
            row.id,
            # A mirrored file without its verdict yet: fetched if need be, then scanned, before
            # it is served (an upload without one is not servable, unless serve-first).
            row.mirror_id is not None
            and row.scan_status in (ScanStatus.UNFETCHED, ScanStatus.PENDING),
            row.scan_status in (ScanStatus.UNFETCHED, ScanStatus.PENDING),
        )

    def cached_shard(self, channel_id: int, subdir: str, sha256: str) -> bool | None:
        """Whether ``sha256`` is a shard of this subdir, from memory; None: not known here."""
        key = (channel_id, subdir)
        hit, known = self._shards.get(key, self.state.versions.get(key))
        if not hit:
            return None if possible_subdir(subdir) else False
        return known is not None and sha256 in known

    def has_shard(self, channel_id: int, subdir: str, sha256: str) -> bool:
        """Whether ``sha256`` is (or recently was) a shard of this channel subdir: the subdir's
        shards are read once (one query, not one per shard a client fetches) and remembered
        with the subdir's version."""
        cached = self.cached_shard(channel_id, subdir, sha256)
        if cached is not None:
            return cached
        key = (channel_id, subdir)
        version = self.state.versions.get(key)  # before the read
        with self.factory() as session:
            known = frozenset(
                session.scalars(
                    select(SubdirShard.shard_sha256)
                    .join(SubdirIndex, SubdirIndex.id == SubdirShard.subdir_index_id)
                    .where(SubdirIndex.channel_id == channel_id, SubdirIndex.subdir == subdir)
                )
            )
        self._shards.put(key, version, known)
        return sha256 in known

    def bz2(self, channel_id: int, subdir: str, pointer: IndexPointer) -> str:
        """The ``.bz2`` of this revision's ``repodata.json``, derived on first request."""
        if pointer.repodata_bz2:
            return pointer.repodata_bz2
        with self._bz2_lock:
            sha = self.blobs.put_bytes(compress_bz2(self.blobs.read_bytes(pointer.repodata)))
            with transaction(self.factory) as session:
                session.execute(
                    update(SubdirIndex)
                    .where(
                        SubdirIndex.channel_id == channel_id,
                        SubdirIndex.subdir == subdir,
                        SubdirIndex.repodata_sha256 == pointer.repodata,
                    )
                    .values(repodata_bz2_sha256=sha)
                )
            self.invalidate(channel_id, subdir)
            return sha


def _pointer(row: SubdirIndex) -> IndexPointer | None:
    if row.repodata_sha256 is None or row.repodata_zst_sha256 is None:
        return None
    return IndexPointer(
        rev=row.published_rev,
        repodata=row.repodata_sha256,
        repodata_zst=row.repodata_zst_sha256,
        repodata_bz2=row.repodata_bz2_sha256,
        shard_index=row.shard_index_sha256,
        run_exports=row.run_exports_sha256,
        published_at=row.published_at.timestamp() if row.published_at else 0.0,
    )
