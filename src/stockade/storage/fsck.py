"""``stockade fsck``: every blob the database names is stored, with the right size (and, with
``verify``, the right sha256); blobs nothing names (orphans) are listed and, with ``repair``,
collected once older than a grace period.

Only the :class:`~stockade.storage.interfaces.BlobStore` protocol is used (``iter_all``, ``size``,
``open``, ``modified_at``, ``delete``), so any backend can be checked.

Memory stays small on huge stores: references come sorted by sha256 from the database and are
checked one blob at a time; what is referenced is kept as a sorted array of 64-bit prefixes
(8 bytes per blob) that the store's listing is looked up in. A prefix shared by an orphan and a
referenced blob only keeps that orphan (the safe side).

Collecting is safe against uploads and publications running at the same time:

- a blob younger than the grace period is never collected: an upload stores its blob before it
  commits the row naming it, a publication its index files before it switches to them;
- each batch is decided in one write transaction that reads the references again right before
  deleting, holding off writers meanwhile (SQLite: the write lock of ``BEGIN IMMEDIATE``;
  PostgreSQL: ``SHARE`` locks on the referencing tables, waited for at most a moment): a reference
  committed since the listing keeps its blob. Two fsck runs at once only delete the same orphans.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.storage.errors import BlobNotFoundError
from stockade.storage.interfaces import BlobStore
from stockade.storage.references import Reference, count_references, pages, referrers

DEFAULT_GRACE = timedelta(hours=24)
LISTED_MAX = 10_000  # orphans and problems listed one by one; counts are always complete
REFERRERS_MAX = 20  # referrers named per problem (how many in all is counted)
BATCH = 200  # orphans decided per transaction
# How long a serving process may still answer from a pointer read before a publication switched
# away from it (channels/servable.py re-reads subdir versions every 0.1 s, channels/locator.py
# keeps channel files 2 s), with room for a request in flight: an orphan is collected only once
# this long has passed since it was seen unreferenced.
SETTLE = timedelta(seconds=10)
_READ = 1 << 20
# the tables whose rows name blobs, locked while a batch of orphans is decided (PostgreSQL)
_LOCKED = (
    "artifacts",
    "channels",
    "subdir_indexes",
    "subdir_shards",
    "mirror_subdir_states",
    "airgap_exports",
)


class Phase(StrEnum):
    REFERENCES = "checking referenced blobs"
    ORPHANS = "listing the blob store"
    COLLECT = "collecting orphans"


class ProblemKind(StrEnum):
    MISSING = "missing"
    SIZE = "size"  # stored with another size than the database records
    CORRUPT = "corrupt"  # its bytes do not hash to its name (``verify``)


@dataclass
class Problem:
    sha256: str
    kind: ProblemKind
    detail: str
    referrers: list[Reference]
    referrer_count: int


@dataclass
class Orphan:
    sha256: str
    modified_at: datetime | None
    collected: bool = False


@dataclass
class FsckReport:
    referenced: int = 0  # distinct blobs the database names
    references: int = 0  # rows naming them
    verified: int = 0  # blobs hashed (``verify``)
    absent_ok: int = 0  # passive mirrors' records not fetched yet (no bytes expected)
    stored: int = 0  # blobs in the store
    orphan_count: int = 0
    young: int = 0  # orphans within the grace period (left alone)
    collected: int = 0
    collected_bytes: int = 0
    kept_referenced: int = 0  # orphans found referenced when re-checked (a new reference)
    deferred: int = 0  # orphans of batches whose lock was not had in time: the next run's
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.problem_count == 0


Progress = Callable[[Phase, int, int | None], None]  # phase, advance, total (None: unknown)


def _no_progress(_phase: Phase, _advance: int, _total: int | None) -> None:
    return None


@dataclass
class Fsck:
    """``factory`` writes (a batch of orphans is decided in a write transaction),
    ``read_factory`` reads the references page by page."""

    factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]
    blobs: BlobStore
    verify: bool = False
    repair: bool = False
    grace: timedelta = DEFAULT_GRACE
    progress: Progress = _no_progress
    now: Callable[[], datetime] = utcnow
    settle: timedelta = SETTLE
    sleep: Callable[[float], None] = time.sleep
    _seen_at: float = field(default=0.0, init=False)  # monotonic: the references were read

    def run(self) -> FsckReport:
        report = FsckReport()
        prefixes = self._check_references(report)
        self._seen_at = time.monotonic()
        orphans = self._orphans(prefixes, report)
        if self.repair:
            self._collect(orphans, report)
        else:
            for _ in orphans:
                pass
        return report

    # ------------------------------------------------------------------ referenced blobs

    def _check_references(self, report: FsckReport) -> array[int]:
        """Each referenced blob checked; what is referenced, as sorted 64-bit prefixes."""
        prefixes: array[int] = array("Q")
        with self.read_factory() as session:
            total = count_references(session)
        self.progress(Phase.REFERENCES, 0, total)
        for page in pages(self.read_factory):
            for sha, refs in page:
                report.referenced += 1
                report.references += len(refs)
                prefix = _prefix(sha)
                if prefix is not None and (not prefixes or prefixes[-1] != prefix):
                    prefixes.append(prefix)  # ascending: pages come in byte order
                self._check_blob(sha, refs, report)
                self.progress(Phase.REFERENCES, len(refs), total)
        return prefixes

    def _check_blob(self, sha: str, refs: list[Reference], report: FsckReport) -> None:
        try:
            size = self.blobs.size(sha)
        except BlobNotFoundError:
            if all(r.optional for r in refs):
                report.absent_ok += 1
            else:
                _problem(report, sha, ProblemKind.MISSING, "not in the blob store", refs)
            return
        expected = {r.size for r in refs if r.size}  # 0: a mirrored record without a size
        if expected and expected != {size}:
            want = ", ".join(str(s) for s in sorted(expected))
            detail = f"stored with {size} bytes, the database says {want}"
            _problem(report, sha, ProblemKind.SIZE, detail, refs)
            return
        if self.verify:
            self._verify(sha, refs, report)

    def _verify(self, sha: str, refs: list[Reference], report: FsckReport) -> None:
        digest = hashlib.sha256()
        try:
            with self.blobs.open(sha) as fh:
                while block := fh.read(_READ):
                    digest.update(block)
        except BlobNotFoundError:  # deleted since ``size``: only an unreferenced blob may be
            _problem(report, sha, ProblemKind.MISSING, "not in the blob store", refs)
            return
        report.verified += 1
        if digest.hexdigest() != sha:
            detail = f"its bytes hash to {digest.hexdigest()}"
            _problem(report, sha, ProblemKind.CORRUPT, detail, refs)

    # ------------------------------------------------------------------ orphans

    def _orphans(self, prefixes: array[int], report: FsckReport) -> Iterator[Orphan]:
        """The store's blobs no reference names (lazily: collection follows the listing)."""
        cutoff = self.now() - self.grace
        self.progress(Phase.ORPHANS, 0, None)
        for sha in self.blobs.iter_all():
            report.stored += 1
            self.progress(Phase.ORPHANS, 1, None)
            if _referenced(prefixes, sha):
                continue
            try:
                modified: datetime | None = self.blobs.modified_at(sha)
            except BlobNotFoundError:
                continue  # deleted meanwhile
            orphan = Orphan(sha, modified)
            report.orphan_count += 1
            if len(report.orphans) < LISTED_MAX:
                report.orphans.append(orphan)
            if modified is not None and modified > cutoff:
                report.young += 1
                continue
            yield orphan

    def _collect(self, orphans: Iterable[Orphan], report: FsckReport) -> None:
        self.progress(Phase.COLLECT, 0, None)
        it = iter(orphans)
        while batch := list(itertools.islice(it, BATCH)):
            self._collect_batch(batch, report)

    def _collect_batch(self, batch: list[Orphan], report: FsckReport) -> None:
        wait = self._seen_at + self.settle.total_seconds() - time.monotonic()
        if wait > 0:  # once per run: listing the store usually takes longer
            self.sleep(wait)
        cutoff = self.now() - self.grace
        try:
            with transaction(self.factory) as session:
                _hold_off_writers(session)
                named = referrers(session, [o.sha256 for o in batch])
                for orphan in batch:
                    if orphan.sha256 in named:
                        report.kept_referenced += 1
                        continue
                    self._delete(session, orphan, cutoff, report)
        except OperationalError:
            # the lock was not had within a moment (a long transaction): the next run
            # collects these; nothing was deleted that a reference names
            report.deferred += len(batch)
            return
        self.progress(Phase.COLLECT, len(batch), None)

    def _delete(
        self, session: Session, orphan: Orphan, cutoff: datetime, report: FsckReport
    ) -> None:
        try:
            if self.blobs.modified_at(orphan.sha256) > cutoff:  # stored again meanwhile
                report.young += 1
                return
            size = self.blobs.size(orphan.sha256)
        except BlobNotFoundError:
            return
        self.blobs.delete(orphan.sha256)
        session.execute(text("DELETE FROM blobs WHERE sha256 = :sha"), {"sha": orphan.sha256})
        orphan.collected = True
        report.collected += 1
        report.collected_bytes += size


def _hold_off_writers(session: Session) -> None:
    """PostgreSQL: no row naming a blob is written until this transaction ends (SQLite's
    ``BEGIN IMMEDIATE`` already holds the database's write lock). Waited for briefly, so that
    fsck gives way rather than stalling uploads behind a long transaction."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("SET LOCAL lock_timeout = '2s'"))
    session.execute(text(f"LOCK TABLE {', '.join(_LOCKED)} IN SHARE MODE"))


def _problem(
    report: FsckReport, sha: str, kind: ProblemKind, detail: str, refs: list[Reference]
) -> None:
    report.problem_count += 1
    if len(report.problems) < LISTED_MAX:
        named = [r for r in refs if not r.optional] or refs
        report.problems.append(Problem(sha, kind, detail, named[:REFERRERS_MAX], len(named)))


def _prefix(sha: str) -> int | None:
    try:
        return int(sha[:16], 16)
    except ValueError:
        return None  # not a sha256: never matches a stored blob's name


def _referenced(prefixes: array[int], sha: str) -> bool:
    prefix = _prefix(sha)
    if prefix is None:
        return False
    at = bisect_left(prefixes, prefix)
    return at < len(prefixes) and prefixes[at] == prefix
