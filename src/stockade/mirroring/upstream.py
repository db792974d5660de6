"""The upstream side of a run: fetch each subdir's repodata (conditionally), keep the bytes, and
apply the policies and the guard to the records (SPEC §5, §6)."""

from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from stockade.core.clock import utcnow
from stockade.mirroring.inputs import (
    FileSet,
    SignatureStates,
    UpstreamSubdir,
    digest,
    guard_reasons,
    integrity_problems,
    parse_repodata,
    signature_checks,
)
from stockade.mirroring.models import MirrorMode
from stockade.mirroring.sources import RepodataFetch, Validators, open_source
from stockade.mirroring.summaries import About, channeldata_abouts
from stockade.mirroring.trust import fetch_trust
from stockade.mirroring.valid_records import VALID_RECORDS
from stockade.policies.engine import (
    EvaluationContext,
    LinkScriptLookup,
    Reason,
    VulnerabilityLookup,
    evaluate_subdirs,
    timestamp_seconds,
)
from stockade.signing.upstream import SignatureCheck
from stockade.storage.interfaces import BlobStore

if TYPE_CHECKING:
    from stockade.mirroring.job import MirrorJob, SubdirStateView
    from stockade.mirroring.reporter import RunReporter

#: Bump when what a run makes of the same inputs changes, so a no-change shortcut is not taken.
FORMAT = 2  # 2: upstream signatures kept, records they cover stored as upstream signed them


@dataclass
class FetchedSubdir:
    subdir: str
    raw_sha256: str
    variant: str
    validators: Validators
    not_modified: bool
    raw: bytes | None = None  # when fetched now; else read from the blob store on demand


@dataclass
class UpstreamSnapshot:
    subdirs: dict[str, FetchedSubdir]
    fingerprint: str
    states: dict[str, SubdirStateView]
    blobs: BlobStore
    parsed: dict[str, UpstreamSubdir] = field(default_factory=dict)
    #: Summaries (``mirroring.summaries``): by package name from the upstream's channeldata.json
    #: (passive), by sha256 from the files' about.json (active, after the downloads).
    abouts_by_name: dict[str, About] = field(default_factory=dict)
    abouts_by_sha: dict[str, About] = field(default_factory=dict)

    def about_for(self, record: dict[str, Any]) -> About | None:
        """What is known of the package of ``record``: its file's about.json first."""
        sha = record.get("sha256")
        found = self.abouts_by_sha.get(sha) if isinstance(sha, str) else None
        return found or self.abouts_by_name.get(str(record.get("name", "")))

    def unchanged(self, job: MirrorJob, now: datetime) -> bool:
        for subdir in job.subdirs:
            state = self.states.get(subdir)
            if state is None or state.fingerprint != self.fingerprint:
                return False
            if state.valid_until is not None and now >= state.valid_until:
                return False
        return True

    def previous_counts(self) -> dict[str, Any]:
        upstream = sum(s.upstream_count for s in self.states.values())
        kept = sum(s.kept_count for s in self.states.values())
        return {
            "upstream": upstream,
            "kept": kept,
            "excluded": upstream - kept,
            "added": 0,
            "removed": 0,
            "changed": 0,
            "unchanged_upstream": True,
        }

    def load(self) -> dict[str, UpstreamSubdir]:
        """Parse every subdir's repodata (once), dropping the raw bytes as soon as parsed."""
        for subdir, fetched in self.subdirs.items():
            if subdir in self.parsed:
                continue
            raw = (
                fetched.raw
                if fetched.raw is not None
                else self.blobs.read_bytes(fetched.raw_sha256)
            )
            fetched.raw = None
            data = RepodataFetch(False, raw, fetched.variant, fetched.validators).json_bytes()
            del raw
            self.parsed[subdir] = parse_repodata(subdir, data)
            del data
        return self.parsed


def upstream_files(parsed: dict[str, UpstreamSubdir]) -> dict[str, str]:
    """filename -> sha256 of every upstream record that has one."""
    return {
        fn: rec["sha256"]
        for up in parsed.values()
        for fn, rec in up.records.items()
        if isinstance(rec.get("sha256"), str)
    }


def fetch_upstream(
    job: MirrorJob, blobs: BlobStore, reporter: RunReporter | None
) -> UpstreamSnapshot:
    source = open_source(job.source)
    fetched: dict[str, FetchedSubdir] = {}
    try:
        for subdir in job.subdirs:
            fetched[subdir] = _fetch_one(source, subdir, job.states.get(subdir), blobs)
            if reporter is not None:
                reporter.advance("fetch")
                how = "not modified" if fetched[subdir].not_modified else "fetched"
                reporter.log(f"{subdir}: {fetched[subdir].variant} {how}")
    finally:
        source.close()
    # The run checks upstream signatures with what it fetches now (dry runs use the stored one).
    job.trust = fetch_trust(
        job.source, job.trusted_root, job.signing_metadata_url, utcnow(), reporter
    )
    fingerprint = digest(
        FORMAT,
        {sd: f.raw_sha256 for sd, f in fetched.items()},
        job.policy_digest,
        job.guard_digest,
        job.mode,
        job.channel_id,
        job.vulnerability_version,
        job.trust.digest(),
        job.trust.stored(job.trusted_root)["trusted_root_sha256"],
    )
    snapshot = UpstreamSnapshot(fetched, fingerprint, dict(job.states), blobs)
    if job.mode == MirrorMode.PASSIVE and not snapshot.unchanged(job, utcnow()):
        snapshot.abouts_by_name = channeldata_abouts(job.source)
        if reporter is not None:
            found = len(snapshot.abouts_by_name)
            reporter.log(
                f"channeldata.json: summaries of {found} packages"
                if found
                else "no summaries in the upstream's channeldata.json (or none there)"
            )
    return snapshot


def _fetch_one(
    source: Any, subdir: str, state: SubdirStateView | None, blobs: BlobStore
) -> FetchedSubdir:
    previous = None
    if state is not None and state.raw_sha256 and blobs.exists(state.raw_sha256):
        previous = Validators(state.etag, state.last_modified, state.variant, state.raw_sha256)
    result = source.fetch_repodata(subdir, previous)
    if result.not_modified and previous is not None:
        assert state is not None
        assert state.raw_sha256 is not None
        return FetchedSubdir(
            subdir, state.raw_sha256, previous.variant or result.variant, result.validators, True
        )
    if result.raw is None:  # not modified, but we lost the bytes: ask again without validators
        result = source.fetch_repodata(subdir, None)
    assert result.raw is not None
    sha = blobs.put_bytes(result.raw)
    return FetchedSubdir(subdir, sha, result.variant, result.validators, False, result.raw)


@dataclass
class Verdict:
    """What the policies and the guard made of the upstream: kept and excluded, per subdir."""

    kept_records: dict[str, dict[str, dict[str, Any]]]  # subdir -> filename -> record
    excluded: dict[str, dict[str, list[Reason]]]  # subdir -> filename -> reasons
    base_urls: dict[str, str | None]
    upstream: int
    valid_until: datetime | None
    #: subdir -> filename -> state of the upstream signature (records that have one)
    signatures: dict[str, dict[str, SignatureCheck]] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return sum(len(v) for v in self.kept_records.values())

    @property
    def excluded_count(self) -> int:
        return sum(len(v) for v in self.excluded.values())

    @property
    def by_reason(self) -> dict[str, int]:
        counter: Counter[str] = Counter()
        for per in self.excluded.values():
            for reasons in per.values():
                counter.update({r.key for r in reasons})
        return dict(counter.most_common())


def evaluate_upstream(
    job: MirrorJob,
    snapshot: UpstreamSnapshot,
    vulnerabilities: VulnerabilityLookup,
    now: datetime,
    *,
    link_scripts: LinkScriptLookup | None = None,
) -> Verdict:
    parsed = snapshot.load()
    return evaluate_records(job, parsed, vulnerabilities, now, link_scripts=link_scripts)


def evaluate_records(
    job: MirrorJob,
    parsed: dict[str, UpstreamSubdir],
    vulnerabilities: VulnerabilityLookup,
    now: datetime,
    *,
    link_scripts: LinkScriptLookup | None = None,
) -> Verdict:
    pre: dict[str, dict[str, list[Reason]]] = {}
    records: dict[str, dict[str, dict[str, Any]]] = {}
    # An upstream signature counts only once verified against the mirror's trusted root (SPEC §8).
    checks = signature_checks(parsed, job.trust)
    upstream = 0
    for subdir, up in parsed.items():
        upstream += len(up.records)
        blocked, valid = integrity_problems(up, VALID_RECORDS.seen(job.mirror_id, subdir))
        VALID_RECORDS.remember(job.mirror_id, subdir, valid)
        for fn, reasons in guard_reasons(up, job.guarded, job.allowed).items():
            blocked.setdefault(fn, []).extend(reasons)
        pre[subdir] = blocked
        records[subdir] = (
            {fn: r for fn, r in up.records.items() if fn not in blocked} if blocked else up.records
        )
    context = EvaluationContext(
        now=now,
        vulnerabilities=vulnerabilities,
        signatures=SignatureStates.of(checks),
        verdicts=FileSet(job.malicious),
        **({"link_scripts": link_scripts} if link_scripts is not None else {}),
    )
    gc_was = gc.isenabled()
    gc.disable()  # millions of small objects and no cycles: collection passes cost, not save
    try:
        results = evaluate_subdirs(job.policies, records, context=context)
    finally:
        if gc_was:
            gc.enable()
    kept: dict[str, dict[str, dict[str, Any]]] = {}
    excluded: dict[str, dict[str, list[Reason]]] = {}
    for subdir, evaluation in results.items():
        recs = records[subdir]
        kept[subdir] = {fn: recs[fn] for fn in evaluation.kept}
        excluded[subdir] = {**pre[subdir], **evaluation.excluded}
    valid_until = _valid_until(job, parsed, excluded)
    if job.trust.expires is not None and (valid_until is None or job.trust.expires < valid_until):
        valid_until = job.trust.expires  # verified signatures stop verifying then
    return Verdict(
        kept,
        excluded,
        {sd: up.base_url for sd, up in parsed.items()},
        upstream,
        valid_until,
        checks,
    )


def _valid_until(
    job: MirrorJob, parsed: dict[str, UpstreamSubdir], excluded: dict[str, dict[str, list[Reason]]]
) -> datetime | None:
    """When the first record held back by a cooldown comes out of it (the result changes then)."""
    days = [p.cooldown_days for p in job.policies if p.cooldown_days]
    if not days:
        return None
    cooldown = min(d for d in days if d is not None)
    soonest: float | None = None
    for subdir, per in excluded.items():
        recs = parsed[subdir].records
        for fn, reasons in per.items():
            if any(r.criterion == "cooldown" for r in reasons):
                ts = timestamp_seconds(recs[fn].get("timestamp"))
                if ts is not None and (soonest is None or ts < soonest):
                    soonest = ts
    if soonest is None:
        return None
    try:
        return datetime.fromtimestamp(soonest, UTC) + timedelta(days=cooldown)
    except (OverflowError, ValueError, OSError):  # a timestamp near year 9999: no shortcut date
        return None
