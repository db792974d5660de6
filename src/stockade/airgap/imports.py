"""Which dropped bundle a mirror applies next, and the record of what was applied or refused.

A mirror whose source is ``airgap:NAME`` takes the package bundles of channel ``NAME`` from the
folder, oldest first: a full bundle always applies; an incremental one when its parent was applied
by this mirror (a parent still waiting in the folder goes first). A bundle already applied is set
aside as such (nothing happens twice); an incremental bundle whose parent was never imported, and
any zip that is not a readable package bundle, is refused with the reason. Bundles of other
channels are left for their mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.airgap.bundle import BundleTrust, OpenBundle, open_bundle, verify
from stockade.airgap.errors import BundleRefusedError
from stockade.airgap.folder import Dropped, Outcome, package_bundles, set_aside
from stockade.airgap.manifest import Manifest
from stockade.airgap.models import AirgapImport, BundleKind, ImportState
from stockade.core.clock import utcnow
from stockade.core.safezip import ZipLimits


@dataclass
class Refusal:
    dropped: Dropped
    manifest: Manifest | None
    error: BundleRefusedError


@dataclass
class Selection:
    chosen: OpenBundle | None = None
    chosen_file: Dropped | None = None
    refused: list[Refusal] = field(default_factory=list)
    repeated: list[tuple[Dropped, Manifest]] = field(default_factory=list)
    waiting: int = 0  # more bundles of this channel to apply after this one


def applied_ids(session: Session, mirror_id: int) -> set[str]:
    rows = session.scalars(
        select(AirgapImport.bundle_id).where(
            AirgapImport.mirror_id == mirror_id, AirgapImport.state == ImportState.APPLIED
        )
    )
    return {r for r in rows if r}


def select_bundle(
    folder: Path,
    settle_s: float,
    channel: str,
    applied: set[str],
    trust: BundleTrust,
    limits: ZipLimits,
    now: datetime,
) -> Selection:
    selection = Selection()
    mine: list[tuple[Dropped, OpenBundle]] = []
    for dropped in package_bundles(folder, settle_s):
        try:
            bundle = open_bundle(dropped.path, limits)
        except BundleRefusedError as exc:
            selection.refused.append(Refusal(dropped, None, exc))
            continue
        if bundle.manifest.channel != channel:
            bundle.close()
        elif bundle.manifest.bundle_id in applied:
            _repeated(selection, dropped, bundle, trust, now)
        else:
            mine.append((dropped, bundle))
    mine.sort(key=lambda pair: pair[1].manifest.bundle_id)
    present = {b.manifest.bundle_id for _, b in mine}
    for dropped, bundle in mine:
        parent = bundle.manifest.parent_id
        if selection.chosen is not None or (parent is not None and parent in present):
            selection.waiting += 1
            bundle.close()
            continue
        why = _not_applicable(bundle.manifest, applied)
        if why is None:
            try:
                verify(bundle, trust, now)
            except BundleRefusedError as exc:
                why = exc
        if why is not None:
            bundle.close()
            selection.refused.append(Refusal(dropped, bundle.manifest, why))
            continue
        selection.chosen, selection.chosen_file = bundle, dropped
    return selection


def _repeated(
    selection: Selection, dropped: Dropped, bundle: OpenBundle, trust: BundleTrust, now: datetime
) -> None:
    """A bundle whose id was applied: set aside as applied only if it is signed as one (else a
    zip of any content naming that id would land in ``applied/``)."""
    try:
        verify(bundle, trust, now)
    except BundleRefusedError as exc:
        selection.refused.append(Refusal(dropped, bundle.manifest, exc))
    else:
        selection.repeated.append((dropped, bundle.manifest))
    finally:
        bundle.close()


def _not_applicable(manifest: Manifest, applied: set[str]) -> BundleRefusedError | None:
    """Why this bundle cannot follow the ones applied: its parent is not among them, or it was
    made before the newest of them (an older bundle, signed and never applied here, dropped
    later would take the channel back: a rollback)."""
    parent = manifest.parent_id
    if parent is not None and parent not in applied:
        return BundleRefusedError(
            f"its parent bundle {parent} was never imported here: import it (or a full "
            "bundle) first",
            code="airgap:missing-parent",
        )
    newest = max(applied, key=_made_at, default=None)
    if newest is not None and _made_at(manifest.bundle_id) < _made_at(newest):
        return BundleRefusedError(
            f"it was made before bundle {newest}, applied here already: applying it would take "
            "the channel back to an older state; export a new bundle",
            code="airgap:older",
        )
    return None


def _made_at(bundle_id: str) -> str:
    return bundle_id[:16]  # 20261207T020000Z: when the exporting server made it (sortable)


def record(
    session: Session,
    *,
    dropped: Dropped,
    manifest: Manifest | None,
    state: ImportState,
    mirror_id: int | None,
    kind: BundleKind = BundleKind.PACKAGES,
    reason: str | None = None,
    code: str | None = None,
    counts: dict[str, Any] | None = None,
    run_id: int | None = None,
) -> AirgapImport:
    row = AirgapImport(
        kind=kind,
        bundle_id=manifest.bundle_id if manifest else None,
        parent_id=manifest.parent_id if manifest else None,
        mirror_id=mirror_id,
        file_name=dropped.name[:300],
        state=state,
        reason=reason,
        code=code,
        channel=manifest.channel if manifest else None,
        created=manifest.created if manifest else None,
        counts=counts or {},
        run_id=run_id,
        finished_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def result_document(row: AirgapImport, manifest: Manifest | None) -> dict[str, Any]:
    """What ``<name>.result.json`` says."""
    return {
        "file": row.file_name,
        "state": row.state,
        "reason": row.reason,
        "code": row.code,
        "bundle": manifest.summary() if manifest else None,
        "counts": row.counts,
        "mirror_run": row.run_id,
        "finished_at": row.finished_at.isoformat(),
    }


def set_aside_row(row: AirgapImport, dropped: Dropped, manifest: Manifest | None) -> None:
    """After the row committed: the file leaves the folder with its result."""
    outcome = Outcome.APPLIED if row.state == ImportState.APPLIED else Outcome.REFUSED
    set_aside(dropped.path, outcome, result_document(row, manifest))
