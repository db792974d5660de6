"""What this process knows of the servable files of each channel subdir, kept current by publication.

A package download must not cost a database query. What is served from a subdir changes only in a
transaction that also asks for its publication: every write of ``Artifact.servable`` (an upload,
a verdict, a removal, a move, a channel's scan settings, a mirror run; ``channels/scanstate.py``)
goes with ``request_publication``, which bumps the subdir's ``requested_rev``, and a publication
bumps its ``published_rev``. So ``(row id, requested_rev, published_rev)`` of a subdir is a version
of everything it serves: a file looked up once is remembered with the version it was read under
(:class:`ServableFiles`) and answered from memory for as long as that version holds; index
pointers are remembered the same way.

Each process learns the versions from the database (:class:`ServingState`): one small query of two
aggregates, at most every ``CHECK_SECONDS``, made by the first request that finds its copy older
(the rows themselves are read only when an aggregate moved). A change committed in any process (a
publication, a file removed, quarantined or held, a channel made private or deleted) is seen by
every process within that bound, without a query per request; the process that made the change
sees it at once (``force``, called after its commit).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.models import AuthRevision
from stockade.auth.revision import ROW_ID as REVISION_ROW
from stockade.channels.models import Channel, SubdirIndex
from stockade.channels.naming import MAX_DEPTH, RESERVED, SEGMENT_RE

#: How stale this process's view of publications and servability may be (seconds).
CHECK_SECONDS = 0.1

SubdirKey = tuple[int, str]  # (channel id, subdir)
Version = tuple[int, int, int]  # (subdir row id, requested_rev, published_rev)


@dataclass(frozen=True, slots=True)  # up to 100,000 of them per process
class ArtifactPointer:
    sha256: str
    size: int
    created_at: float
    mirror_id: int | None = None  # a mirrored record: its file may have to be fetched first
    subdir: str = ""
    filename: str = ""
    id: int = 0
    unfetched: bool = False  # a mirrored record with no verdict: scanned before it is served
    pending: bool = False  # served before its verdict (serve-first): no cache may keep it


@dataclass(frozen=True)
class Moved:
    """What one read of the shared state found changed since the previous one."""

    subdirs: frozenset[SubdirKey]
    channels: bool  # a channel created, changed or deleted
    channel_set: bool  # a channel created or deleted (SQLite may give its id to the next one)


class ServingState:
    """This process's copy of every subdir's version, read again at most every ``CHECK_SECONDS``."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.versions: dict[SubdirKey, Version] = {}
        self._checked_at = float("-inf")  # when the last completed read started (monotonic)
        self._forced_at = float("-inf")
        self._summary: tuple[Any, ...] | None = None
        self._channels: tuple[Any, ...] | None = None
        self._lock = threading.Lock()

    def fresh(self, now: float) -> bool:
        """Whether what this process knows was read less than ``CHECK_SECONDS`` ago (and after
        the last local change): no I/O, for the event loop."""
        started = self._checked_at
        return now - started < CHECK_SECONDS and started > self._forced_at

    def force(self) -> None:
        """A change was committed here: the next request reads the shared state first."""
        self._forced_at = time.monotonic()

    def refresh(self) -> Moved:
        """Read the shared state (in a worker thread) unless another thread just did."""
        with self._lock:
            started = time.monotonic()
            if self.fresh(started):
                return Moved(frozenset(), False, False)
            with self.factory() as session:
                summary, channels = _summaries(session)
                before = self._channels
                # A channel deleted (the auth revision moves with it) and another created in its
                # place may take its id, and its subdir rows the old rows' ids and revisions.
                channel_set = before is not None and _identity(channels) != _identity(before)
                changed = summary != self._summary or channel_set
                rows = _versions(session) if changed else None
            moved: frozenset[SubdirKey] = frozenset()
            if rows is not None:
                old = self.versions
                moved = frozenset(k for k in old.keys() | rows.keys() if old.get(k) != rows.get(k))
                self.versions = rows
                self._summary = summary
            self._channels = channels
            self._checked_at = started
            return Moved(moved, channels != before, channel_set)


def _identity(channels: tuple[Any, ...]) -> tuple[Any, ...]:
    """(count, highest id, auth revision): what a channel created or deleted moves."""
    return channels[0], channels[2], channels[3]


def _summaries(session: Session) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Aggregates that move whenever a subdir row or a channel row is added, changed or deleted
    (revisions only grow, so their sums move with any bump), and the auth revision (bumped with
    every channel deletion, ``channels/service.py``)."""
    subdirs = select(
        func.count(SubdirIndex.id),
        func.coalesce(func.sum(SubdirIndex.requested_rev), 0),
        func.coalesce(func.sum(SubdirIndex.published_rev), 0),
        func.coalesce(func.max(SubdirIndex.id), 0),
    ).subquery()
    channels = select(
        func.count(Channel.id).label("n"),
        func.max(Channel.updated_at).label("updated"),
        func.coalesce(func.max(Channel.id), 0).label("top"),
    ).subquery()
    both = subdirs.join(channels, true())  # one row each: no cartesian product to speak of
    auth = select(AuthRevision.value).where(AuthRevision.id == REVISION_ROW).scalar_subquery()
    row = session.execute(select(subdirs, channels, auth).select_from(both)).one()
    values = tuple(row)
    return tuple(int(v) for v in values[:4]), values[4:]


def _versions(session: Session) -> dict[SubdirKey, Version]:
    rows = session.execute(
        select(
            SubdirIndex.channel_id,
            SubdirIndex.subdir,
            SubdirIndex.id,
            SubdirIndex.requested_rev,
            SubdirIndex.published_rev,
        )
    ).all()
    return {(r[0], r[1]): (r[2], int(r[3]), int(r[4])) for r in rows}


K = TypeVar("K")
V = TypeVar("V")

#: What one remembered entry costs besides its names (dict slot, key and value tuples), and what
#: a found file's pointer adds: measured with ``tracemalloc`` (tests/unit/channels/test_servable.py).
ENTRY_BYTES = 224
POINTER_BYTES = 320

# What can be stored (``channels/models.py``, the validation of every way in): names longer than
# the columns, or of another shape, exist nowhere; they are answered 404 without a query and are
# never remembered (an anonymous client could otherwise fill every process's memory with them).
MAX_SUBDIR_CHARS = 64  # SubdirIndex.subdir, Artifact.subdir
MAX_FILENAME_CHARS = 512  # Artifact.filename
MAX_CHANNEL_CHARS = 512  # Channel.name
#: CEP 26's ``noarch`` or ``os-arch`` (uploads, ``conda/names.py``), with the ``_`` mirrored
#: subdirs may have in their arch (``mirroring/validation.py``)
SUBDIR_SHAPE = re.compile(r"noarch|[a-z0-9]+-[a-z0-9_]+")


def possible_channel(name: str) -> bool:
    """Whether a channel may have this name (``channels/naming.py``): else none has."""
    if len(name) > MAX_CHANNEL_CHARS:
        return False
    segments = name.split("/")
    return len(segments) <= MAX_DEPTH and all(
        SEGMENT_RE.fullmatch(s) is not None and s not in RESERVED for s in segments
    )


def possible_subdir(subdir: str) -> bool:
    """Whether a subdir of this name may exist in a channel."""
    return len(subdir) <= MAX_SUBDIR_CHARS and SUBDIR_SHAPE.fullmatch(subdir) is not None


def possible_filename(filename: str) -> bool:
    """Whether a package file may have this name (fits the column; no control character,
    which PostgreSQL refuses in a query for NUL)."""
    return (
        0 < len(filename) <= MAX_FILENAME_CHARS
        and "/" not in filename
        and not any(ord(c) < 32 or ord(c) == 127 for c in filename)
    )


class VersionedCache(Generic[K, V]):
    """Values each remembered with the version of its subdir it was read under (``get`` answers
    only under that version). Bounded in entries and in bytes (``cost`` of an entry: its names
    and value, ``ENTRY_BYTES`` included): past either bound the oldest entries go, so a flood of
    unknown names cannot grow it. Iterating gives the keys (a copy)."""

    def __init__(self, max_entries: int, max_bytes: int, cost: Callable[[K, V], int]) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.cost = cost
        self.nbytes = 0
        self._entries: dict[K, tuple[Version | None, V, int]] = {}
        self._lock = threading.Lock()  # writers only: ``get`` is a plain dict read

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def get(self, key: K, version: Version | None) -> tuple[bool, V | None]:
        hit = self._entries.get(key)
        if hit is None or hit[0] != version:
            return False, None
        return True, hit[1]

    def put(self, key: K, version: Version | None, value: V) -> None:
        cost = self.cost(key, value)
        if cost > self.max_bytes:  # read again each time rather than hold it
            self.drop(key)
            return
        with self._lock:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[2]
            while entries and (
                len(entries) >= self.max_entries or self.nbytes + cost > self.max_bytes
            ):
                self.nbytes -= entries.pop(next(iter(entries)))[2]
            entries[key] = (version, value, cost)
            self.nbytes += cost

    def drop(self, key: K) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[2]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


FileKey = tuple[int, str, str]  # (channel id, subdir, filename)


def _file_cost(key: FileKey, value: ArtifactPointer | None) -> int:
    names = sys.getsizeof(key[1]) + sys.getsizeof(key[2])
    return ENTRY_BYTES + names + (POINTER_BYTES if value is not None else 0)


class ServableFiles(VersionedCache[FileKey, ArtifactPointer | None]):
    """Package files looked up once, each with the version of its subdir it was read under.

    A file that is not servable is remembered too (as None). Callers put only names that may
    exist (``possible_subdir``, ``possible_filename``): at most 64 + 512 characters."""

    def __init__(self, max_entries: int = 100_000, max_bytes: int = 64 * 1024**2) -> None:
        super().__init__(max_entries, max_bytes, _file_cost)
