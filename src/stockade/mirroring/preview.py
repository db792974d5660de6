"""Dry runs and explanations: what the policies would make of a channel's mirrors, and why one
record is or is not in the channel (SPEC §6). Nothing is changed, and nothing is fetched.

- The upstream records are the ones the last run fetched (kept in the blob store). A mirror that
  has not completed a run has no snapshot: it is named as such, never fetched now (a read request
  must not make the server download a whole upstream index).
- A dry run evaluates with the run's own evaluation (:mod:`.evaluation`) and plan
  (:func:`build_plan`): same lookups, same conflicts, same would-add and would-remove. What only a
  download tells (link scripts of a file never read) is counted as *undecided*.
- Explain reports the reasons the last run stored, so it says what the channel holds and why.
- A dry run of a draft policy (a body not saved) needs write access to the channel; every preview
  takes one of a few slots per process (else 429), as solves do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.errors import AccessDeniedError
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel
from stockade.channels.service import ChannelService, channel_ref
from stockade.core.clock import utcnow
from stockade.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from stockade.core.secrets import SecretBox
from stockade.mirroring.contents import known_link_scripts
from stockade.mirroring.errors import NoSnapshotError, PreviewBusyError
from stockade.mirroring.evaluation import (
    UNDECIDED_LINK_SCRIPTS,
    evaluate_job,
    needs_link_scripts,
    undecided,
)
from stockade.mirroring.inputs import UpstreamSubdir, unpack_exclusions
from stockade.mirroring.job import MirrorJob, job_for_mirror, mirror_policies
from stockade.mirroring.matching import SpecMatcher
from stockade.mirroring.models import Mirror, MirrorMode
from stockade.mirroring.plan import build_plan
from stockade.mirroring.snapshots import StoredSnapshot, last_snapshot
from stockade.mirroring.upstream import Verdict
from stockade.policies.engine import Reason, VulnerabilityLookup
from stockade.policies.model import Policy
from stockade.signing.upstream import check_record
from stockade.storage.interfaces import BlobStore

SAMPLES = 10
#: Previews evaluating at once in this process; more wait up to PREVIEW_WAIT_S, then get a 429.
#: (Explain and dry runs of stored policies are open to readers of public channels.)
MAX_PREVIEWS = 2
PREVIEW_WAIT_S = 10.0
_PREVIEWS = threading.BoundedSemaphore(MAX_PREVIEWS)

NO_SNAPSHOT = (
    "no snapshot yet: this mirror has not completed a run; dry runs and explain read the "
    "upstream records of the last run and never fetch the upstream"
)


@contextmanager
def preview_slot() -> Iterator[None]:
    if not _PREVIEWS.acquire(timeout=PREVIEW_WAIT_S):
        raise PreviewBusyError(
            f"{MAX_PREVIEWS} dry runs or explanations are being evaluated already; "
            "try again shortly",
            retry_after=5,
        )
    try:
        yield
    finally:
        _PREVIEWS.release()


@dataclass
class SubdirPreview:
    subdir: str
    upstream: int
    kept: int
    excluded: int
    by_reason: dict[str, int]
    samples: dict[str, list[str]]
    would_add: int
    would_remove: int
    add_samples: list[str]
    remove_samples: list[str]
    undecided: int = 0
    undecided_samples: list[str] = field(default_factory=list)


@dataclass
class MirrorPreview:
    mirror: str
    policies: list[str]
    subdirs: list[SubdirPreview] = field(default_factory=list)
    snapshot: bool = False
    snapshot_at: datetime | None = None
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        by_reason: dict[str, int] = {}
        for sd in self.subdirs:
            for key, n in sd.by_reason.items():
                by_reason[key] = by_reason.get(key, 0) + n
        return {
            "upstream": sum(s.upstream for s in self.subdirs),
            "kept": sum(s.kept for s in self.subdirs),
            "excluded": sum(s.excluded for s in self.subdirs),
            "would_add": sum(s.would_add for s in self.subdirs),
            "would_remove": sum(s.would_remove for s in self.subdirs),
            "undecided": sum(s.undecided for s in self.subdirs),
            "by_reason": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])),
        }


@dataclass
class Explanation:
    mirror: str
    subdir: str
    filename: str
    kept: bool
    in_channel: bool
    reasons: list[Reason]
    exceptions: list[str] = field(default_factory=list)  # "policy: spec" exceptions it matches
    evaluated_at: datetime | None = None  # when the run whose reasons these are fetched upstream
    notes: list[str] = field(default_factory=list)


class PreviewService:
    def __init__(
        self,
        session: Session,
        blobs: BlobStore,
        secrets: SecretBox,
        vulnerabilities: VulnerabilityLookup,
        *,
        now: datetime | None = None,
        throttle: Callable[[Principal], None] | None = None,
    ) -> None:
        """``throttle``: counts one preview for the caller (429 over its allowance)."""
        self.throttle = throttle
        self.session = session
        self.blobs = blobs
        self.secrets = secrets
        self.vulnerabilities = vulnerabilities
        self.now = now or utcnow()
        self.channels = ChannelService(session)
        self.access = AccessService(session)

    def mirrors_of(
        self, principal: Principal, channel: str, mirror: str | None = None
    ) -> tuple[Channel, list[Mirror]]:
        row = self.channels.get(principal, channel, Permission.POLICY_READ)
        query = select(Mirror).where(Mirror.channel_id == row.id).order_by(Mirror.name)
        if mirror:
            query = query.where(Mirror.name == mirror)
        mirrors = list(self.session.scalars(query).all())
        if mirror and not mirrors:
            raise NotFoundError(
                f"mirror {mirror!r} does not feed channel {channel!r}", code="mirror:not-found"
            )
        if not mirrors:
            raise InvalidInputError(
                f"channel {channel!r} has no mirror: policies apply to mirrored records",
                code="policy:no-mirror",
                field="channel",
            )
        return row, mirrors

    def dry_run(
        self,
        principal: Principal,
        channel: str,
        candidate: Policy | None,
        *,
        mirror: str | None = None,
        draft: bool = False,
    ) -> list[MirrorPreview]:
        """The next run's result with ``candidate`` assigned (replacing a policy of its name).
        ``draft``: the candidate is not a saved policy (needs write access to the channel)."""
        row, mirrors = self.mirrors_of(principal, channel, mirror)
        if draft:
            self._require_draft(principal, row)
        if self.throttle is not None:
            self.throttle(principal)
        with preview_slot():
            previews = [self._preview(m, candidate) for m in mirrors]
        if not any(p.snapshot for p in previews):
            raise NoSnapshotError(_no_snapshot(channel, mirrors))
        return previews

    def _require_draft(self, principal: Principal, channel: Channel) -> None:
        ref = channel_ref(channel)
        if self.access.allowed(principal, Permission.POLICY_WRITE) or any(
            self.access.can(principal, p, ref)
            for p in (Permission.ARTIFACT_WRITE, Permission.POLICY_WRITE)
        ):
            return  # a policy author could save it and dry-run it anyway
        if principal.is_anonymous:
            raise AuthenticationError("sign in: a dry run of a draft policy needs write access")
        raise AccessDeniedError(
            f"a dry run of a draft policy needs write access to channel {channel.name!r} "
            "(readers can dry-run saved policies)",
            code="policy:draft-needs-write",
        )

    def _preview(self, mirror: Mirror, candidate: Policy | None) -> MirrorPreview:
        policies = mirror_policies(self.session, mirror)
        if candidate is not None:
            policies = [p for p in policies if p.name != candidate.name] + [candidate]
        job = job_for_mirror(self.session, mirror, self.secrets, policies=policies)
        preview = MirrorPreview(mirror.name, [p.name for p in policies])
        stored = self._stored(job)
        if stored is None:
            preview.notes.append(NO_SNAPSHOT)
            return preview
        preview.snapshot, preview.snapshot_at = True, stored.fetched_at
        if stored.missing:
            preview.notes.append(
                f"not fetched by a run yet, so not previewed: {', '.join(stored.missing)}"
            )
        verdict, links = evaluate_job(
            self.session, job, stored.parsed, self.vulnerabilities, self.now
        )
        open_ = undecided(verdict, links)
        plan = build_plan(self.session, job, verdict)  # the run's own comparison (conflicts too)
        for subdir in stored.parsed:
            excluded = verdict.excluded.get(subdir, {})
            kept = verdict.kept_records.get(subdir, {})
            adds = sorted(fn for sd, fn in plan.add if sd == subdir)
            removes = sorted(fn for sd, fn in plan.remove if sd == subdir)
            counts, samples = _by_reason(excluded)
            preview.subdirs.append(
                SubdirPreview(
                    subdir=subdir,
                    upstream=len(kept) + len(excluded),
                    kept=len(kept),
                    excluded=len(excluded),
                    by_reason=counts,
                    samples=samples,
                    would_add=len(adds),
                    would_remove=len(removes),
                    add_samples=adds[:SAMPLES],
                    remove_samples=removes[:SAMPLES],
                    undecided=len(open_.get(subdir, [])),
                    undecided_samples=open_.get(subdir, [])[:SAMPLES],
                )
            )
        if any(open_.values()):
            preview.notes.append(_undecided_note(job))
        preview.notes += _signature_summary(job, verdict)
        return preview

    def explain(
        self, principal: Principal, channel: str, spec: str, *, subdir: str | None = None
    ) -> list[Explanation]:
        """Every upstream record of the channel's mirrors matching ``spec``, kept or not, and why:
        the reasons the last run stored (what the channel holds), from that run's records."""
        matcher = SpecMatcher(spec)
        _row, mirrors = self.mirrors_of(principal, channel)
        if self.throttle is not None:
            self.throttle(principal)
        found: list[Explanation] = []
        any_snapshot = False
        with preview_slot():
            for mirror in mirrors:
                job = job_for_mirror(self.session, mirror, self.secrets)
                stored = self._stored(job)
                if stored is None:
                    continue
                any_snapshot = True
                found.extend(self._explain_mirror(mirror, job, stored, matcher, subdir))
        if not any_snapshot:
            raise NoSnapshotError(_no_snapshot(channel, mirrors))
        return sorted(found, key=lambda e: (e.mirror, e.subdir, e.filename))

    def _explain_mirror(
        self,
        mirror: Mirror,
        job: MirrorJob,
        stored: StoredSnapshot,
        matcher: SpecMatcher,
        subdir: str | None,
    ) -> list[Explanation]:
        matched = [
            (sd, fn, rec)
            for sd, up in stored.parsed.items()
            if not subdir or sd == subdir
            for fn, rec in up.records.items()
            if matcher.matches(rec, sd)
        ]
        if not matched:
            return []
        reasons = self._last_reasons(job, stored)
        excepting = [
            (f"{p.name}: {text}", SpecMatcher(text)) for p in job.policies for text in p.exceptions
        ]
        unknown = self._unknown_links(job, matched)
        current = self._current(mirror)
        found: list[Explanation] = []
        for sd, fn, rec in matched:
            why = reasons.get(sd, {}).get(fn, [])
            notes = [_undecided_note(job)] if not why and fn in unknown else []
            notes += _signature_notes(job, stored.parsed[sd], fn)
            found.append(
                Explanation(
                    mirror.name,
                    sd,
                    fn,
                    not why,
                    fn in current.get(sd, set()),
                    why,
                    [label for label, m in excepting if m.matches(rec, sd)],
                    stored.fetched_at,
                    notes,
                )
            )
        return found

    def _last_reasons(
        self, job: MirrorJob, stored: StoredSnapshot
    ) -> dict[str, dict[str, list[Reason]]]:
        """The exclusions the last run stored, per subdir (evaluated again only where a run
        stored none: data from before exclusions were kept)."""
        out: dict[str, dict[str, list[Reason]]] = {}
        missing = False
        for sd in stored.parsed:
            state = job.states.get(sd)
            sha = state.exclusions_sha256 if state else None
            if sha and self.blobs.exists(sha):
                out[sd] = unpack_exclusions(self.blobs.read_bytes(sha))
            else:
                missing = True
        if missing:
            verdict, _links = evaluate_job(
                self.session, job, stored.parsed, self.vulnerabilities, self.now
            )
            for sd, excluded in verdict.excluded.items():
                out.setdefault(sd, excluded)
        return out

    def _unknown_links(self, job: MirrorJob, matched: list[tuple[str, str, Any]]) -> set[str]:
        if not needs_link_scripts(job):
            return set()
        files = {fn: rec["sha256"] for _, fn, rec in matched if isinstance(rec.get("sha256"), str)}
        known = known_link_scripts(self.session, files)
        return {fn for _, fn, _ in matched if known.has_link_scripts(fn) is None}

    def _stored(self, job: MirrorJob) -> StoredSnapshot | None:
        return last_snapshot(job, self.blobs)

    def _current(self, mirror: Mirror) -> dict[str, set[str]]:
        current: dict[str, set[str]] = {}
        for sd, fn in self.session.execute(
            select(Artifact.subdir, Artifact.filename).where(
                Artifact.channel_id == mirror.channel_id, Artifact.mirror_id == mirror.id
            )
        ).all():
            current.setdefault(sd, set()).add(fn)
        return current


def _by_reason(
    excluded: dict[str, list[Reason]],
) -> tuple[dict[str, int], dict[str, list[str]]]:
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}
    for fn in sorted(excluded):
        for key in {r.key for r in excluded[fn]}:
            counts[key] = counts.get(key, 0) + 1
            bucket = samples.setdefault(key, [])
            if len(bucket) < SAMPLES:
                bucket.append(fn)
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])), samples


def _signature_notes(job: MirrorJob, up: UpstreamSubdir, filename: str) -> list[str]:
    """What the record's upstream signature proves (which key verified it, or why not)."""
    check = check_record(
        up.records[filename], up.signatures.get(filename), up.changed.get(filename), job.trust
    )
    if check is None:
        signed_only = any(p.signed_only for p in job.policies)
        return ["no upstream signature"] if signed_only else []
    return [f"upstream signature {check.status}: {check.detail}"]


def _signature_summary(job: MirrorJob, verdict: Verdict) -> list[str]:
    """Counts of upstream signature states, and what they were checked with."""
    counts: dict[str, int] = {}
    for per in verdict.signatures.values():
        for check in per.values():
            counts[check.status] = counts.get(check.status, 0) + 1
    if not counts and not any(p.signed_only for p in job.policies):
        return []
    found = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    return [f"upstream signatures: {found} ({job.trust.describe()})"]


def _undecided_note(job: MirrorJob) -> str:
    if job.mode == MirrorMode.ACTIVE:
        return (
            f"{UNDECIDED_LINK_SCRIPTS}: a run downloads it, reads it, and excludes it if it has "
            "link scripts"
        )
    return f"{UNDECIDED_LINK_SCRIPTS}: a passive mirror keeps it until then"


def _no_snapshot(channel: str, mirrors: list[Mirror]) -> str:
    names = ", ".join(m.name for m in mirrors)
    return (
        f"channel {channel!r}: no snapshot yet (mirror {names} has not completed a run). "
        "Dry runs and explain read the last run's upstream records and never fetch the "
        "upstream: run the mirror first."
    )
