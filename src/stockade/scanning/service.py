"""Scanning artifacts: claim scan requests, scan outside any transaction, record the verdict.

``ScanRunner.run_pending`` is what the background scanner calls: it takes a lease on a batch of
:class:`~stockade.channels.models.ScanRequest` rows (a conditional update, safe across replicas),
scans them in a bounded thread pool, and records each verdict in its own transaction, which also
deletes the request, sets the artifact's status and servability (one rule,
:mod:`stockade.channels.scanstate`) and asks for a publication when that changed. A process killed
mid-scan leaves the request, whose lease runs out: the artifact is scanned again, and was never
servable in between (unless its channel serves uploads first).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.lockorder import lock_subdirs_of
from stockade.channels.models import Artifact, Channel, PackageContent, ScanRequest
from stockade.channels.scanstate import ArtifactSource
from stockade.conda.package import ValidationLimits
from stockade.core.clock import utcnow
from stockade.core.faults import crash_point
from stockade.db.engine import transaction
from stockade.scanning.engine import ScanReport, scan_archive
from stockade.scanning.interfaces import ScanSubject
from stockade.scanning.models import ArtifactScan
from stockade.scanning.recording import (
    HeldNotifier,
    ScannerSet,
    record_missing,
    record_report,
    reuse_result,
)
from stockade.scanning.rescans import queue_outdated
from stockade.storage.errors import BlobNotFoundError
from stockade.storage.interfaces import BlobStore
from stockade.storage.local_copy import local_file, suffix_of

log = logging.getLogger("stockade.scanning")

DEFAULT_LEASE_S = 60.0
MAX_ATTEMPTS = 5
NAMES_TTL_S = 60.0
SWEEP_S = 30.0


@dataclass(frozen=True)
class _Job:
    artifact_id: int
    sha256: str
    filename: str
    subject: ScanSubject


@dataclass(frozen=True)
class _Scanned:
    """A report made outside any transaction, waiting to be recorded with its batch."""

    artifact_id: int
    sha256: str
    report: ScanReport
    duration_ms: int


class ScanRunner:
    def __init__(
        self,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        scanners: Callable[[], ScannerSet],
        *,
        limits: ValidationLimits,
        workers: int = 2,
        lease_s: float = DEFAULT_LEASE_S,
        on_change: Callable[[], None] = lambda: None,
        notify_held: HeldNotifier | None = None,
        read_factory: sessionmaker[Session] | None = None,
    ) -> None:
        self.factory = factory
        # Reads take no write lock (SQLite: a write session begins IMMEDIATE).
        self.read_factory = read_factory or factory
        self.blobs = blobs
        self.scanners = scanners
        self.limits = limits
        self.workers = max(1, workers)
        self.on_change = on_change
        self.notify_held: HeldNotifier = notify_held or (lambda *_args: None)
        # A scan holds its request's lease, renewed while it runs (a long scan is not taken over);
        # a process that dies stops renewing, and another takes the request once it runs out.
        self.lease = timedelta(seconds=lease_s)
        self._scanning: set[int] = set()
        self._scanning_lock = threading.Lock()
        self._renewer = threading.Thread(
            target=self._renew, name="stockade-scan-lease", daemon=True
        )
        self._closed = threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"[:64]
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="stockade-scan")
        self._names: frozenset[str] = frozenset()
        self._names_at = -NAMES_TTL_S
        self._swept_at = -SWEEP_S

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _renew(self) -> None:
        while not self._closed.wait(self.lease.total_seconds() / 3):
            with self._scanning_lock:
                ids = sorted(self._scanning)
            if not ids:
                continue
            try:
                with transaction(self.factory) as session:
                    session.execute(
                        update(ScanRequest)
                        .where(
                            ScanRequest.artifact_id.in_(ids),
                            ScanRequest.lease_owner == self.owner,
                        )
                        .values(leased_until=utcnow() + self.lease)
                    )
            except Exception:
                log.exception("renewing scan leases failed; will retry")

    def run_pending(self, batch: int = 32) -> int:
        """Scan up to ``batch`` requested artifacts; returns how many verdicts were recorded.

        Every ``SWEEP_S`` it first queues artifacts whose verdict is out of date (rules changed)
        or missing, a batch at a time."""
        if time.monotonic() - self._swept_at > SWEEP_S:
            self._swept_at = time.monotonic()
            # The scanners first: building them reads the database, which must not wait on this
            # process's own write transaction (SQLite takes the write lock at BEGIN).
            fingerprint = self.scanners().fingerprint
            with transaction(self.factory) as session:
                reclaim_dead_local(session, self.owner)
                queue_outdated(session, fingerprint)
        claimed = self._claim(batch)
        if not claimed:
            return 0
        current = self.scanners()
        done = list(self._pool.map(lambda aid: self._guarded(aid, current), claimed))
        scanned = [d for d in done if isinstance(d, _Scanned)]
        recorded = sum(d is True for d in done) + self._record(scanned, current)
        if recorded:
            self.on_change()
        return recorded

    def scan_now(self, artifact_id: int) -> None:
        """Scan one artifact in this thread (a passive mirror's first fetch waits for it)."""
        if self._claim_one(artifact_id) and self._one(artifact_id, self.scanners()):
            self.on_change()

    def _claim(self, batch: int) -> list[int]:
        """Lease up to ``batch`` free requests in one write (those another runner took since
        they were read are left to it)."""
        now = utcnow()
        with self.read_factory() as session:
            candidates = session.scalars(
                select(ScanRequest.artifact_id)
                .where(or_(ScanRequest.leased_until.is_(None), ScanRequest.leased_until < now))
                .order_by(ScanRequest.requested_at, ScanRequest.artifact_id)
                .limit(batch)
            ).all()
        if not candidates:
            return []
        until = now + self.lease
        with transaction(self.factory) as session:
            session.execute(
                update(ScanRequest)
                .where(
                    ScanRequest.artifact_id.in_(candidates),
                    or_(ScanRequest.leased_until.is_(None), ScanRequest.leased_until < now),
                )
                .values(
                    leased_until=until, lease_owner=self.owner, attempts=ScanRequest.attempts + 1
                )
            )
            taken = set(
                session.scalars(
                    select(ScanRequest.artifact_id).where(
                        ScanRequest.artifact_id.in_(candidates),
                        ScanRequest.lease_owner == self.owner,
                        ScanRequest.leased_until == until,
                    )
                )
            )
        return [aid for aid in candidates if aid in taken]

    def _claim_one(self, artifact_id: int) -> bool:
        now = utcnow()
        with transaction(self.factory) as session:
            taken = session.execute(
                update(ScanRequest)
                .where(
                    ScanRequest.artifact_id == artifact_id,
                    or_(ScanRequest.leased_until.is_(None), ScanRequest.leased_until < now),
                )
                .values(
                    leased_until=now + self.lease,
                    lease_owner=self.owner,
                    attempts=ScanRequest.attempts + 1,
                )
            ).rowcount  # type: ignore[attr-defined]
        return bool(taken)

    def _one(self, artifact_id: int, current: ScannerSet) -> bool:
        done = self._guarded(artifact_id, current)
        return self._record([done], current) > 0 if isinstance(done, _Scanned) else done

    def _guarded(self, artifact_id: int, current: ScannerSet) -> _Scanned | bool:
        with self._scanning_lock:
            if not self._renewer.is_alive() and not self._closed.is_set():
                self._renewer.start()  # on first use: no thread for containers that never scan
            self._scanning.add(artifact_id)
        try:
            return self._scan(artifact_id, current)
        except Exception:
            log.exception("scanning artifact %s failed; it stays held and is retried", artifact_id)
            return False
        finally:
            with self._scanning_lock:
                self._scanning.discard(artifact_id)

    def _scan(self, artifact_id: int, current: ScannerSet) -> _Scanned | bool:
        """The report to record, or whether a verdict was recorded already (reused, missing)."""
        job = self._job(artifact_id)
        if job is None:
            return False
        if self._may_reuse(job.sha256, current):
            with transaction(self.factory) as session:
                if reuse_result(session, artifact_id, job.sha256, current, self.notify_held):
                    return True
        started = time.monotonic()
        try:  # read through the store: a blob kept elsewhere (S3) is copied to staging first
            with local_file(self.blobs, job.sha256, suffix_of(job.filename)) as path:
                report = self._report(path, job, current)
        except BlobNotFoundError:
            with transaction(self.factory) as session:
                return record_missing(session, artifact_id, job.sha256)
        return _Scanned(artifact_id, job.sha256, report, int((time.monotonic() - started) * 1000))

    def _record(self, scanned: list[_Scanned], current: ScannerSet) -> int:
        """Record the verdicts of a batch in one transaction (one write, not one per file);
        if that fails, each in its own, so one bad row does not hold back the others."""
        if not scanned:
            return 0
        crash_point("scan:before-record")
        try:
            with transaction(self.factory) as session:
                # every subdir of the batch first, in one order (channels/lockorder.py)
                lock_subdirs_of(session, [s.artifact_id for s in scanned])
                return sum(self._record_one(session, s, current) for s in scanned)
        except Exception:
            if len(scanned) == 1:
                log.exception("recording the verdict of %s failed", scanned[0].artifact_id)
                return 0
        return sum(self._record([s], current) for s in scanned)

    def _record_one(self, session: Session, scanned: _Scanned, current: ScannerSet) -> bool:
        return record_report(
            session,
            scanned.artifact_id,
            scanned.sha256,
            scanned.report,
            current,
            duration_ms=scanned.duration_ms,
            notify=self.notify_held,
        )

    def _may_reuse(self, sha256: str, current: ScannerSet) -> bool:
        """Whether a verdict for these bytes under these rules exists (read only; the write
        transaction of :func:`reuse_result` decides whether it fits this artifact)."""
        with self.read_factory() as session:
            found = session.scalar(
                select(ArtifactScan.artifact_id)
                .where(
                    ArtifactScan.sha256 == sha256,
                    ArtifactScan.fingerprint == current.fingerprint,
                    ArtifactScan.verdict != "error",
                )
                .limit(1)
            )
        return found is not None

    def _report(self, path: Path, job: _Job, current: ScannerSet) -> ScanReport:
        return scan_archive(path, job.subject, current.scanners, limits=self.limits)

    def _internal_names(self, session: Session) -> frozenset[str]:
        """Names published in local (not mirrored) channels, cached for a minute."""
        if time.monotonic() - self._names_at > NAMES_TTL_S:
            self._names = frozenset(
                session.scalars(
                    select(Artifact.name)
                    .join(Channel, Channel.id == Artifact.channel_id)
                    .where(Channel.kind == "local")
                    .distinct()
                    .limit(50_000)
                ).all()
            )
            self._names_at = time.monotonic()
        return self._names

    def _job(self, artifact_id: int) -> _Job | None:
        with self.read_factory() as session:
            artifact = session.get(Artifact, artifact_id)
            if artifact is None:
                return None
            request = session.get(ScanRequest, artifact_id)
            if request is not None and request.attempts > MAX_ATTEMPTS:
                log.warning("artifact %s failed to scan %s times", artifact_id, request.attempts)
            content = session.get(PackageContent, artifact.sha256)
            index = content.index_json if content is not None else {}
            subject = ScanSubject(
                filename=artifact.filename,
                sha256=artifact.sha256,
                size=artifact.size,
                name=artifact.name,
                subdir=artifact.subdir,
                index=index,
                # Dependency confusion: a mirrored name one edit away from an internal one.
                known_names=self._internal_names(session)
                if artifact.source == ArtifactSource.MIRROR
                else frozenset(),
            )
            return _Job(artifact_id, artifact.sha256, artifact.filename, subject)


def reclaim_dead_local(session: Session, me: str) -> int:
    """Free the leases of scanner processes of this host that are gone (a crash, a kill): their
    work is taken at once instead of when the lease runs out. Other hosts' leases run out."""
    host = f"{socket.gethostname()}:"
    owners = session.scalars(
        select(ScanRequest.lease_owner)
        .where(ScanRequest.leased_until > utcnow(), ScanRequest.lease_owner.startswith(host))
        .distinct()
    ).all()
    dead = [o for o in owners if o is not None and o != me and not _alive(o)]
    if not dead:
        return 0
    freed = session.execute(
        update(ScanRequest)
        .where(ScanRequest.lease_owner.in_(dead))
        .values(leased_until=None, lease_owner=None)
    ).rowcount  # type: ignore[attr-defined]
    log.info("took over %s scans of stopped processes %s", freed, ", ".join(sorted(dead)))
    return int(freed)


def _alive(owner: str) -> bool:
    try:
        os.kill(int(owner.rsplit(":", 1)[1]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OSError):
        return True  # not ours to judge: its lease runs out
    return True
