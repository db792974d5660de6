"""The CVE bundles (``cve.zip``) dropped into the air-gap folder, applied by a ``bundle`` feed of
the folder (URL ``airgap:``) at each of its runs (SPEC §9, ``vulns.feed_folder``).

Which zips: those whose manifest says ``stockade-cve-bundle`` (package bundles are left for the
mirrors), and a zip nobody can read whose name starts with ``cve`` (a truncated ``cve.zip``:
refused here, with the reason). Taken in name order, after the folder's settle time.

Each bundle is imported whole in its own transaction (``vulns.bundle.import_bundle``: every
member checked before the database is touched), with its :class:`AirgapImport` row (kind ``cve``,
the file's sha256, the import's counts and the manifest's ``created``/``producer``) in the same
transaction; then it is moved to ``applied/`` with its result file. A bundle that cannot be
imported changes nothing: its refusal is recorded and it goes to ``refused/`` with the reason and
code. A file whose sha256 was applied before is not imported again: it is set aside as already
applied. A crash between the commit and the move leaves the file in the folder, and the next run
finds it already applied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.airgap.folder import CVE_FORMAT, Dropped, Outcome, dropped, set_aside
from stockade.airgap.imports import record, result_document
from stockade.airgap.models import AirgapImport, BundleKind, ImportState
from stockade.core.errors import ErrorKind, StockadeError
from stockade.db.engine import transaction
from stockade.vulns.bundle import ImportCounts, import_bundle
from stockade.vulns.bundlefile import BundleLimits, members, open_zip, read_manifest
from stockade.vulns.feed_folder import FolderRun
from stockade.vulns.security import SecurityReader

__all__ = ["CveFolder", "waiting"]

#: Errors that say the bundle is bad (it is refused), not that the run cannot go on now.
_BUNDLE_FAULTS = (ErrorKind.INVALID, ErrorKind.NOT_FOUND, ErrorKind.TOO_LARGE)


def waiting(folder: Path, settle_s: float) -> list[Dropped]:
    """The CVE bundles in ``folder``, and unreadable zips named ``cve…``, in name order."""
    return [
        d
        for d in dropped(folder, settle_s)
        if d.format == CVE_FORMAT or (d.format is None and d.name.lower().startswith("cve"))
    ]


@dataclass
class CveFolder:
    """Implements ``vulns.feed_folder.BundleFolder`` for the feed sync (built by the container)."""

    factory: sessionmaker[Session]
    folder: Path
    settle_s: float
    security: SecurityReader | None = None
    limits: BundleLimits = field(default_factory=BundleLimits)

    def apply(self, feed_id: int) -> FolderRun:
        run = FolderRun()
        for bundle in waiting(self.folder, self.settle_s):
            try:
                sha = _file_sha256(bundle.path)
            except FileNotFoundError:  # taken by another run meanwhile
                continue
            if self._applied_before(sha):
                _set_aside_repeat(bundle, sha)
                run.repeated.append(bundle.name)
                continue
            try:
                counts = self._import(bundle, sha, feed_id)
            except StockadeError as exc:
                if exc.kind not in _BUNDLE_FAULTS:
                    raise
                self._refuse(bundle, sha, exc)
                run.refused.append(f"{bundle.name}: {exc.detail} [{exc.code}]")
                continue
            run.applied.append(bundle.name)
            _add(run, counts)
        return run

    def _applied_before(self, sha: str) -> bool:
        query = select(AirgapImport.id).where(
            AirgapImport.kind == BundleKind.CVE,
            AirgapImport.state == ImportState.APPLIED,
            AirgapImport.file_sha256 == sha,
        )
        with self.factory() as session:
            return session.scalar(query.limit(1)) is not None

    def _import(self, bundle: Dropped, sha: str, feed_id: int) -> ImportCounts:
        about = _about(bundle.path, self.limits)
        with transaction(self.factory) as session:
            counts = import_bundle(
                session, bundle.path, feed_id=feed_id, security=self.security, limits=self.limits
            )
            row = _record(session, bundle, sha, ImportState.APPLIED, {**counts.public(), **about})
            document = {**result_document(row, None), "sha256": sha}
        set_aside(bundle.path, Outcome.APPLIED, document)
        return counts

    def _refuse(self, bundle: Dropped, sha: str, exc: StockadeError) -> None:
        with transaction(self.factory) as session:
            row = _record(session, bundle, sha, ImportState.REFUSED, {}, exc)
            document = {**result_document(row, None), "sha256": sha}
        set_aside(bundle.path, Outcome.REFUSED, document)


def _about(path: Path, limits: BundleLimits) -> dict[str, Any]:
    """The manifest's ``created`` and ``producer`` (a bad manifest is refused here already)."""
    with open_zip(path, limits) as archive:
        manifest = read_manifest(archive, members(archive, limits))
    return {"created": manifest.created, "producer": manifest.producer}


def _record(
    session: Session,
    bundle: Dropped,
    sha: str,
    state: ImportState,
    counts: dict[str, Any],
    error: StockadeError | None = None,
) -> AirgapImport:
    row = record(
        session,
        dropped=bundle,
        manifest=None,  # a package bundle's manifest; a cve.zip's is in the counts
        state=state,
        mirror_id=None,
        kind=BundleKind.CVE,
        reason=error.detail if error else None,
        code=error.code if error else None,
        counts=counts,
    )
    row.file_sha256 = sha
    created = counts.get("created")
    row.created = created[:40] if isinstance(created, str) and created else None
    session.flush()
    return row


def _set_aside_repeat(bundle: Dropped, sha: str) -> None:
    document = {
        "file": bundle.name,
        "state": ImportState.APPLIED.value,
        "sha256": sha,
        "reason": "this file was applied before: not imported again, nothing changed",
    }
    set_aside(bundle.path, Outcome.APPLIED, document)


def _add(run: FolderRun, counts: ImportCounts) -> None:
    total = run.counts
    total.new += counts.added
    total.changed += counts.updated
    total.unchanged += counts.unchanged
    total.withdrawn += counts.withdrawn
    total.enriched += counts.enrichment
    total.matches_added += counts.matches_added
    total.matches_removed += counts.matches_removed
    total.matches_restatused += counts.matches_restatused


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
