"""One mirror run, start to end: fetch, evaluate, compare, download, publish (SPEC §5).

Nothing the channel serves changes until the last step, which is one transaction: the mirror's
artifact rows, the upstream state and the publication requests switch together, so a crash or a
kill at any moment leaves the channel as it was before the run or as the run left it. Downloads
before that step go to the content-addressed blob store; a later attempt finds them there and does
not fetch them again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from stockade.conda.archive import ValidationLimits
from stockade.core.clock import utcnow
from stockade.core.errors import StockadeError
from stockade.core.metrics import metrics
from stockade.core.outbound import OutboundPolicy
from stockade.core.secrets import SecretBox
from stockade.db.engine import make_session_factory, transaction
from stockade.mirroring import runs
from stockade.mirroring.airgap_run import run_airgap
from stockade.mirroring.airgap_source import is_airgap
from stockade.mirroring.contents import KnownLinkScripts, read_downloaded
from stockade.mirroring.errors import (
    IncompleteRunError,
    LeaseLostError,
    RunStoppedError,
    ShuttingDownError,
)
from stockade.mirroring.evaluation import evaluate_job
from stockade.mirroring.inputs import vulnerability_version
from stockade.mirroring.job import MirrorJob, load_job
from stockade.mirroring.memory import after_run
from stockade.mirroring.models import MirrorMode, RunState
from stockade.mirroring.plan import Plan, apply_plan, build_plan, store_exclusions
from stockade.mirroring.reporter import RunReporter
from stockade.mirroring.staging import discard, stage
from stockade.mirroring.summaries import record_abouts
from stockade.mirroring.upstream import (
    UpstreamSnapshot,
    Verdict,
    evaluate_records,
    fetch_upstream,
)
from stockade.policies.engine import VulnerabilityLookup
from stockade.settings import AirgapSettings, MirrorSettings
from stockade.storage.interfaces import BlobStore

log = logging.getLogger("stockade.mirroring")


def _all_or_nothing(job: MirrorJob, plan: Plan) -> None:
    """An air-gap bundle is applied whole: one file that could not be taken refuses it."""
    if job.all_or_nothing and plan.failed:
        (subdir, filename), why = next(iter(plan.failed.items()))
        raise IncompleteRunError(
            f"{len(plan.failed)} files could not be taken; the first: {subdir}/{filename}: {why}"
        )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class RunOutcome:
    state: RunState
    summary: str
    counts: dict[str, Any] = field(default_factory=dict)


class MirrorSync:
    def __init__(
        self,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        secrets: SecretBox,
        settings: MirrorSettings,
        *,
        vulnerabilities: VulnerabilityLookup | Callable[[], VulnerabilityLookup],
        limits: ValidationLimits | None = None,
        on_change: Callable[[], None] = lambda: None,
        outbound: OutboundPolicy | None = None,
        airgap: AirgapSettings | None = None,
        airgap_folder: Path | None = None,
    ) -> None:
        self.limits = limits or ValidationLimits()
        self.airgap = airgap or AirgapSettings()
        self.airgap_folder = airgap_folder  # None: air-gap mirrors fail, naming the setting
        self.factory = factory
        # Long reads (evaluate, plan) use read-only sessions: on SQLite a write session takes the
        # write lock when it begins (``db.engine``), and a plan of 600,000 records held it for a
        # minute while it compared them.
        self.reader = make_session_factory(factory.kw["bind"], readonly=True)
        self.blobs = blobs
        self.secrets = secrets
        self.settings = settings
        self._vulnerabilities = vulnerabilities
        self.on_change = on_change
        self.outbound = outbound  # the [outbound] policy (None: the strict default)
        self.owner = worker_id()
        self.shutdown = threading.Event()
        #: Called with (run id, step) just before each step's stop check (a hook for tests).
        self.before_step: Callable[[int, str], None] = lambda run_id, step: None
        #: A run's own process (``jobs/apart.py``) sets a list: a completed run's parse, verdict
        #: and plan are kept in it rather than freed, since that process exits right after the
        #: run (freeing a 600,000-record parse takes ~1 s); nor does the run give memory back.
        self.keep_for_exit: list[object] | None = None
        #: Called with (run id, rows staged so far) after each staged batch is committed, with no
        #: transaction of the run open (a hook for tests).
        self.between_batches: Callable[[int, int], None] = lambda run_id, written: None

    @property
    def vulnerabilities(self) -> VulnerabilityLookup:
        """The vulnerability data now (a provider is asked each time: the data may be replaced)."""
        source = self._vulnerabilities
        return source() if callable(source) else source

    def close(self) -> None:
        """Ask running runs to let go at their next safe point (the process is stopping)."""
        self.shutdown.set()

    def execute(self, run_id: int) -> RunOutcome | None:
        """Run it if it is ours to run (pending, or abandoned by a dead worker); None otherwise."""
        stale = timedelta(seconds=self.settings.stale_after_s)
        with transaction(self.factory) as session:
            if not runs.claim(session, run_id, self.owner, stale_after=stale):
                return None
            job = load_job(session, run_id, self.secrets, self.settings.timeout_s, self.outbound)
        if any(p.cve_score or p.uncurated_cves for p in job.policies):
            job.vulnerability_version = vulnerability_version(self.vulnerabilities)
        steps = ["fetch", "evaluate", "plan", "publish"]
        if job.mode == MirrorMode.ACTIVE:
            steps.insert(3, "download")
        reporter = RunReporter(
            self.factory,
            run_id,
            self.owner,
            steps=steps,
            heartbeat_s=self.settings.heartbeat_s,
            abort=self.shutdown,
        )
        reporter.start()
        reporter.log(f"attempt {job.attempt} on {self.owner}: {job.describe()}")
        try:
            if is_airgap(job.source.url):
                outcome = run_airgap(self, job, reporter)
            else:
                outcome = self._run(job, reporter)
        except LeaseLostError:
            reporter.close()
            log.warning("mirror run %s: taken over by another worker, leaving it", run_id)
            return None
        except ShuttingDownError:
            reporter.log("this worker is shutting down: the run will resume elsewhere", "warning")
            reporter.close()
            with transaction(self.factory) as session:
                runs.release(session, run_id, self.owner)
            return None
        except RunStoppedError:
            outcome = RunOutcome(RunState.STOPPED, "stopped on request; the index is unchanged")
            reporter.skip_rest()
            reporter.fail_current("stopped")
            reporter.log(outcome.summary, "warning")
        except StockadeError as exc:
            outcome = RunOutcome(RunState.FAILED, exc.detail)
            reporter.fail_current()
            reporter.log(f"failed: {exc.detail} [{exc.code}]", "error")
        except Exception as exc:
            log.exception("mirror run %s failed", run_id)
            outcome = RunOutcome(RunState.FAILED, f"internal error: {exc.__class__.__name__}")
            reporter.fail_current()
            reporter.log(f"failed: internal error {exc.__class__.__name__}: {exc}", "error")
        reporter.close()
        if outcome.state != RunState.COMPLETED:  # what it staged is never switched in
            discard(self.factory, job, self.settings.stage_batch)
        steps_now, counts = reporter.snapshot()
        with transaction(self.factory) as session:
            runs.finish(
                session,
                run_id,
                self.owner,
                state=outcome.state,
                summary=outcome.summary,
                error=outcome.summary if outcome.state == RunState.FAILED else None,
                steps=steps_now,
                counts=counts,
            )
        metrics().mirror_runs.labels(str(outcome.state)).inc()
        del job
        self._give_back(int(counts.get("upstream") or 0))  # its records are garbage now
        return outcome

    def _give_back(self, upstream_records: int) -> None:
        if self.keep_for_exit is None:  # a run's own process exits instead
            after_run(upstream_records)

    def _checkpoint(self, job: MirrorJob, reporter: RunReporter, step: str) -> None:
        """Before a step that changes anything: end here if a stop was asked. Read from the
        database now, not from the last heartbeat (a short run would finish before that)."""
        self.before_step(job.run_id, step)
        reporter.check()
        with self.reader() as session:
            asked = runs.stop_asked(session, job.run_id, self.owner)
        if asked is None:
            raise LeaseLostError(f"run {job.run_id} was taken over by another worker")
        if asked:
            raise RunStoppedError("stopped on request")

    def _run(self, job: MirrorJob, reporter: RunReporter) -> RunOutcome:
        self._checkpoint(job, reporter, "fetch")
        reporter.begin("fetch", len(job.subdirs))
        snapshot = fetch_upstream(job, self.blobs, reporter)
        reporter.end("fetch")
        self._checkpoint(job, reporter, "evaluate")
        now = utcnow()
        if snapshot.unchanged(job, now):
            return self._unchanged(job, snapshot, reporter)
        reporter.begin("evaluate")
        with reporter.quiet():
            parsed = snapshot.load()
        with self.reader() as session:  # the evaluation dry runs and explain share
            verdict, links = evaluate_job(session, job, parsed, self.vulnerabilities, now)
        reporter.end("evaluate")
        reporter.count("upstream", verdict.upstream)
        reporter.count("kept", verdict.kept)
        reporter.count("excluded", verdict.excluded_count)
        reporter.count("excluded_by_reason", verdict.by_reason)
        self._checkpoint(job, reporter, "plan")
        reporter.begin("plan")
        with self.reader() as session:
            plan = build_plan(session, job, verdict)
        reporter.end("plan")
        for key, value in plan.counts().items():
            reporter.count(key, value)
        reporter.log(
            f"{verdict.upstream} upstream records, {verdict.kept} kept: "
            f"{len(plan.add)} to add, {len(plan.remove)} to remove, {len(plan.change)} changed"
        )
        if job.mode == MirrorMode.ACTIVE:
            self._checkpoint(job, reporter, "download")
            self._download(job, plan, reporter)
            _all_or_nothing(job, plan)
            if links is not None:
                self._checkpoint(job, reporter, "recheck")
                verdict, plan = self._recheck_links(
                    job, snapshot, verdict, plan, links, now, reporter
                )
            record_abouts(self.factory, self.blobs, self.limits, job, plan, snapshot)
        self._checkpoint(job, reporter, "publish")
        reporter.begin("publish", len(plan.add))
        self._stage(job, plan, snapshot, reporter)
        exclusions = store_exclusions(verdict, self.blobs)
        with transaction(self.factory) as session:
            self._hold(session, job)
            apply_plan(session, job, plan, verdict, snapshot, exclusions)
            for hook in job.publish_hooks:
                hook(session)
        reporter.end("publish")
        self.on_change()
        summary = (
            f"{len(plan.add)} added, {len(plan.remove)} removed, {len(plan.change)} changed; "
            f"{verdict.kept} of {verdict.upstream} upstream records kept"
        )
        if plan.failed:
            summary += f"; {len(plan.failed)} files failed"
        reporter.log(summary)
        if self.keep_for_exit is not None:
            self.keep_for_exit += [snapshot, parsed, verdict, plan]
        return RunOutcome(RunState.COMPLETED, summary, reporter.snapshot()[1])

    def _stage(
        self, job: MirrorJob, plan: Plan, snapshot: UpstreamSnapshot, reporter: RunReporter
    ) -> None:
        """Write the new rows in short transactions, invisible until the switch (``staging``)."""

        def between(written: int) -> None:
            reporter.count("staged", written)
            reporter.advance("publish", min(self.settings.stage_batch, written))
            self.between_batches(job.run_id, written)
            reporter.check()

        stage(self.factory, job, plan, snapshot, batch=self.settings.stage_batch, between=between)

    def _unchanged(
        self, job: MirrorJob, snapshot: UpstreamSnapshot, reporter: RunReporter
    ) -> RunOutcome:
        if job.publish_hooks:  # an air-gap bundle that changes nothing is applied all the same
            with transaction(self.factory) as session:
                self._hold(session, job)
                for hook in job.publish_hooks:
                    hook(session)
        reporter.skip_rest()
        counts = snapshot.previous_counts()
        for key, value in counts.items():
            reporter.count(key, value)
        reporter.log("upstream, policies and guard unchanged since the last run: nothing to do")
        return RunOutcome(RunState.COMPLETED, "unchanged", counts)

    def _hold(self, session: Session, job: MirrorJob) -> None:
        """In the switching transaction: the last stop check, on the locked run row."""
        held = runs.hold_for_apply(session, job.run_id, self.owner)
        if held is None:
            raise LeaseLostError(f"run {job.run_id} was taken over by another worker")
        if not held:
            raise RunStoppedError("stopped on request")

    def _recheck_links(
        self,
        job: MirrorJob,
        snapshot: UpstreamSnapshot,
        verdict: Verdict,
        plan: Plan,
        links: KnownLinkScripts,
        now: datetime,
        reporter: RunReporter,
    ) -> tuple[Verdict, Plan]:
        """Read the files just downloaded, then apply the policies again knowing their link
        scripts (the files stay stored; the records that now fail are not published)."""
        # Every kept file whose scripts are unknown: the ones just downloaded, and the ones a
        # run before downloaded when no policy asked about link scripts yet.
        fetched = [
            (fn, str(rec["sha256"]))
            for kept in verdict.kept_records.values()
            for fn, rec in kept.items()
            if links.has_link_scripts(fn) is None and isinstance(rec.get("sha256"), str)
        ]
        with transaction(self.factory) as session:
            unreadable = read_downloaded(session, self.blobs, self.limits, fetched, links)
        for filename in unreadable:
            reporter.log(f"{filename}: cannot be read to check for link scripts", "warning")
        verdict = evaluate_records(
            job, snapshot.load(), self.vulnerabilities, now, link_scripts=links
        )
        failed = dict(plan.failed)
        with self.reader() as session:
            plan = build_plan(session, job, verdict)
        for (subdir, filename), why in failed.items():
            plan.fail(subdir, filename, why)
        for key, value in plan.counts().items():
            reporter.count(key, value)
        reporter.count("kept", verdict.kept)
        reporter.count("excluded", verdict.excluded_count)
        reporter.count("excluded_by_reason", verdict.by_reason)
        return verdict, plan

    def _download(self, job: MirrorJob, plan: Plan, reporter: RunReporter) -> None:
        from stockade.mirroring.downloader import Downloader, DownloadResult

        items = plan.downloads(job)
        reporter.begin("download", len(items))
        reporter.count("files_to_download", len(items))

        def done(result: DownloadResult) -> None:
            reporter.advance("download")
            if result.skipped:
                reporter.add("files_present")
            elif result.ok:
                reporter.add("files_downloaded")
                reporter.add("bytes_downloaded", result.bytes)
            else:
                reporter.add("failed_files")
                plan.fail(result.item.subdir, result.item.filename, result.error or "failed")
                reporter.log(
                    f"{result.item.subdir}/{result.item.filename}: {result.error} [{result.code}]",
                    "error",
                )

        downloader = Downloader(job.source, self.blobs, concurrency=job.concurrency)
        summary = downloader.download_all(
            items, on_result=done, should_stop=lambda: reporter.stopping
        )
        if summary.stopped:
            reporter.check()
            raise RunStoppedError("stopped on request")
        reporter.end("download")
