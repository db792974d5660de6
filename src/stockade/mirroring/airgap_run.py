"""A mirror run whose source is ``airgap:NAME``: the bundles waiting in the air-gap folder.

Each bundle is applied by an ordinary run (the same fetch, policies, download, scan and publish
as an online mirror), reading from the bundle instead of the network, with two more rules: every
file of the plan must come out of the bundle verified (else the whole bundle is refused: all or
nothing), and the row saying the bundle is applied is written in the transaction that switches
the channel. A kill before that leaves the channel as it was and the bundle in the folder (the
next attempt finds the files already stored and does not read them again); after it, the bundle
is known applied and is only set aside. Bundles waiting in order are applied one after the other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from stockade.airgap.bundle import BundleTrust
from stockade.airgap.folder import Outcome, check_layout, set_aside
from stockade.airgap.imports import (
    Selection,
    applied_ids,
    record,
    result_document,
    select_bundle,
    set_aside_row,
)
from stockade.airgap.models import ImportState
from stockade.core.clock import utcnow
from stockade.core.errors import ErrorKind, StockadeError
from stockade.core.faults import crash_point
from stockade.core.safezip import ZipLimits
from stockade.db.engine import transaction
from stockade.mirroring.airgap_source import channel_of
from stockade.mirroring.errors import LeaseLostError, RunStoppedError, ShuttingDownError
from stockade.mirroring.job import MirrorJob, state_views
from stockade.mirroring.models import RunState

if TYPE_CHECKING:
    from stockade.mirroring.reporter import RunReporter
    from stockade.mirroring.sync import MirrorSync, RunOutcome

#: Errors that say the bundle is bad, not that the run could not go on now.
_BUNDLE_FAULTS = (ErrorKind.INVALID, ErrorKind.NOT_FOUND, ErrorKind.TOO_LARGE)
_NOT_THE_BUNDLE = (RunStoppedError, LeaseLostError, ShuttingDownError)


def run_airgap(sync: MirrorSync, job: MirrorJob, reporter: RunReporter) -> RunOutcome:
    from stockade.mirroring.sync import RunOutcome

    if sync.airgap_folder is None:
        raise AirgapNotConfiguredError("the server has no air-gap folder configured")
    check_layout(sync.airgap_folder)
    applied: list[str] = []
    refused = 0
    while True:
        selection = _select(sync, job)
        refused += _set_aside_refusals(sync, job, selection, reporter)
        if selection.chosen is None:
            break
        if _apply_one(sync, job, selection, reporter):
            applied.append(selection.chosen.manifest.bundle_id)
        else:
            refused += 1
        if not selection.waiting:
            break
        with sync.factory() as session:
            job.states = state_views(session, job.mirror_id)
    if not applied and not refused:
        reporter.skip_rest()
        reporter.log("no new bundle for this channel in the air-gap folder")
        return RunOutcome(RunState.COMPLETED, "no new bundle in the air-gap folder")
    summary = f"{len(applied)} bundles applied ({', '.join(applied) or 'none'}), {refused} refused"
    reporter.log(summary)
    state = RunState.COMPLETED if applied or not refused else RunState.FAILED
    return RunOutcome(state, summary, reporter.snapshot()[1])


class AirgapNotConfiguredError(StockadeError):
    kind = ErrorKind.UNAVAILABLE
    code = "airgap:not-configured"


def _select(sync: MirrorSync, job: MirrorJob) -> Selection:
    assert sync.airgap_folder is not None
    with sync.factory() as session:
        applied = applied_ids(session, job.mirror_id)
    settings = sync.airgap
    return select_bundle(
        sync.airgap_folder,
        settings.settle_s,
        channel_of(job.source.url),
        applied,
        BundleTrust(tuple(settings.trusted_keys), job.trusted_root),
        ZipLimits(settings.max_members, settings.max_bytes, settings.max_bytes),
        utcnow(),
    )


def _set_aside_refusals(
    sync: MirrorSync, job: MirrorJob, selection: Selection, reporter: RunReporter
) -> int:
    for dropped, manifest in selection.repeated:
        reporter.log(f"{dropped.label}: bundle {manifest.bundle_id} was applied before; set aside")
        document = {"file": dropped.name, "state": "applied", "bundle": manifest.summary()}
        document["reason"] = "already applied by this mirror: nothing changed"
        set_aside(dropped.path, Outcome.APPLIED, document)
    for refusal in selection.refused:
        error = refusal.error
        reporter.log(f"{refusal.dropped.label}: refused: {error.detail} [{error.code}]", "error")
        with transaction(sync.factory) as session:
            row = record(
                session,
                dropped=refusal.dropped,
                manifest=refusal.manifest,
                state=ImportState.REFUSED,
                mirror_id=job.mirror_id,
                reason=error.detail,
                code=error.code,
                run_id=job.run_id,
            )
            document = result_document(row, refusal.manifest)
        set_aside(refusal.dropped.path, Outcome.REFUSED, document)
    return len(selection.refused)


def _apply_one(
    sync: MirrorSync, job: MirrorJob, selection: Selection, reporter: RunReporter
) -> bool:
    bundle, dropped = selection.chosen, selection.chosen_file
    assert bundle is not None
    assert dropped is not None
    manifest = bundle.manifest
    reporter.log(
        f"applying bundle {manifest.bundle_id} ({dropped.label}, "
        f"{'full' if manifest.parent_id is None else 'incremental after ' + manifest.parent_id}, "
        f"{len(manifest.files)} files, signed by {', '.join(k[:16] for k in bundle.signed_by)})"
    )
    base = job.source
    done: dict[str, Any] = {}

    def mark_applied(session: Session) -> None:
        row = record(
            session,
            dropped=dropped,
            manifest=manifest,
            state=ImportState.APPLIED,
            mirror_id=job.mirror_id,
            counts={s: e.__dict__ for s, e in manifest.subdirs.items()},
            run_id=job.run_id,
        )
        done["document"] = result_document(row, manifest)

    job.source, job.all_or_nothing, job.publish_hooks = (
        replace(base, bundle=bundle),
        True,
        [mark_applied],
    )
    try:
        sync._run(job, reporter)
    except _NOT_THE_BUNDLE:
        raise
    except StockadeError as exc:
        if exc.kind not in _BUNDLE_FAULTS:
            raise
        _refuse(sync, job, selection, exc, reporter)
        return False
    finally:
        bundle.close()
        job.source, job.all_or_nothing, job.publish_hooks = base, False, []
    crash_point("airgap:after-apply")  # a crash test: applied and committed, not set aside
    document = done["document"]
    document["run_counts"] = reporter.snapshot()[1]
    set_aside(dropped.path, Outcome.APPLIED, document)
    return True


def _refuse(
    sync: MirrorSync,
    job: MirrorJob,
    selection: Selection,
    error: StockadeError,
    reporter: RunReporter,
) -> None:
    assert selection.chosen is not None
    assert selection.chosen_file is not None
    reporter.log(
        f"{selection.chosen_file.label}: refused, nothing changed: {error.detail} [{error.code}]",
        "error",
    )
    with transaction(sync.factory) as session:
        row = record(
            session,
            dropped=selection.chosen_file,
            manifest=selection.chosen.manifest,
            state=ImportState.REFUSED,
            mirror_id=job.mirror_id,
            reason=error.detail,
            code=error.code,
            run_id=job.run_id,
        )
        set_aside_row(row, selection.chosen_file, selection.chosen.manifest)
