"""Dry runs and explanations: what the policies would make of a channel's mirrors, and why one
record is or is not in the channel (SPEC §6). Nothing is changed.

The upstream records are the ones the last run fetched (kept in the blob store), so a preview needs
no network; a mirror that never ran is fetched now.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rattler import BuildString, MatchSpec, PackageRecord
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel
from stockade.channels.service import ChannelService
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError, NotFoundError
from stockade.core.secrets import SecretBox
from stockade.mirroring.inputs import UpstreamSubdir
from stockade.mirroring.models import Mirror
from stockade.mirroring.plan import MirrorJob, job_for_mirror, mirror_policies
from stockade.mirroring.sources import Validators
from stockade.mirroring.upstream import (
    FetchedSubdir,
    UpstreamSnapshot,
    Verdict,
    evaluate_records,
    fetch_upstream,
)
from stockade.policies.engine import Reason, VulnerabilityLookup
from stockade.policies.model import Policy
from stockade.storage.interfaces import BlobStore

SAMPLES = 10
_CACHE_SIZE = 4
_parsed_cache: OrderedDict[tuple[str, ...], dict[str, UpstreamSubdir]] = OrderedDict()


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


@dataclass
class MirrorPreview:
    mirror: str
    policies: list[str]
    subdirs: list[SubdirPreview] = field(default_factory=list)

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


class PreviewService:
    def __init__(
        self,
        session: Session,
        blobs: BlobStore,
        secrets: SecretBox,
        vulnerabilities: VulnerabilityLookup,
        *,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.blobs = blobs
        self.secrets = secrets
        self.vulnerabilities = vulnerabilities
        self.now = now or utcnow()
        self.channels = ChannelService(session)

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
    ) -> list[MirrorPreview]:
        """The next run's result with ``candidate`` assigned (replacing a policy of its name)."""
        _row, mirrors = self.mirrors_of(principal, channel, mirror)
        return [self._preview(m, candidate) for m in mirrors]

    def _preview(self, mirror: Mirror, candidate: Policy | None) -> MirrorPreview:
        policies = mirror_policies(self.session, mirror)
        if candidate is not None:
            policies = [p for p in policies if p.name != candidate.name] + [candidate]
        job = job_for_mirror(self.session, mirror, self.secrets, policies=policies)
        verdict = self._verdict(job)
        current = self._current(mirror)
        preview = MirrorPreview(mirror.name, [p.name for p in policies])
        for subdir in job.subdirs:
            kept = set(verdict.kept_records.get(subdir, {}))
            excluded = verdict.excluded.get(subdir, {})
            have = current.get(subdir, set())
            adds, removes = sorted(kept - have), sorted(have - kept)
            counts: dict[str, int] = {}
            samples: dict[str, list[str]] = {}
            for fn in sorted(excluded):
                for key in {r.key for r in excluded[fn]}:
                    counts[key] = counts.get(key, 0) + 1
                    bucket = samples.setdefault(key, [])
                    if len(bucket) < SAMPLES:
                        bucket.append(fn)
            preview.subdirs.append(
                SubdirPreview(
                    subdir=subdir,
                    upstream=len(kept) + len(excluded),
                    kept=len(kept),
                    excluded=len(excluded),
                    by_reason=dict(sorted(counts.items(), key=lambda kv: -kv[1])),
                    samples=samples,
                    would_add=len(adds),
                    would_remove=len(removes),
                    add_samples=adds[:SAMPLES],
                    remove_samples=removes[:SAMPLES],
                )
            )
        return preview

    def explain(
        self, principal: Principal, channel: str, spec: str, *, subdir: str | None = None
    ) -> list[Explanation]:
        """Every upstream record of the channel's mirrors matching ``spec``, kept or not, and why."""
        matcher = _Matcher(spec)
        _row, mirrors = self.mirrors_of(principal, channel)
        found: list[Explanation] = []
        for mirror in mirrors:
            job = job_for_mirror(self.session, mirror, self.secrets)
            excepting = [
                (f"{p.name}: {text}", _Matcher(text)) for p in job.policies for text in p.exceptions
            ]
            parsed = self._parsed(job)
            verdict = evaluate_records(job, parsed, self.vulnerabilities, self.now)
            current = self._current(mirror)
            for sd, upstream in parsed.items():
                if subdir and sd != subdir:
                    continue
                for fn, rec in upstream.records.items():
                    if not matcher.matches(rec, sd):
                        continue
                    reasons = verdict.excluded.get(sd, {}).get(fn, [])
                    found.append(
                        Explanation(
                            mirror.name,
                            sd,
                            fn,
                            not reasons,
                            fn in current.get(sd, set()),
                            reasons,
                            [label for label, m in excepting if m.matches(rec, sd)],
                        )
                    )
        return sorted(found, key=lambda e: (e.mirror, e.subdir, e.filename))

    def _verdict(self, job: MirrorJob) -> Verdict:
        return evaluate_records(job, self._parsed(job), self.vulnerabilities, self.now)

    def _parsed(self, job: MirrorJob) -> dict[str, UpstreamSubdir]:
        snapshot = self._snapshot(job)
        key = tuple(f"{sd}:{f.raw_sha256}" for sd, f in sorted(snapshot.subdirs.items()))
        cached = _parsed_cache.get(key)
        if cached is not None:
            _parsed_cache.move_to_end(key)
            return cached
        parsed = snapshot.load()
        _parsed_cache[key] = parsed
        while len(_parsed_cache) > _CACHE_SIZE:
            _parsed_cache.popitem(last=False)
        return parsed

    def _snapshot(self, job: MirrorJob) -> UpstreamSnapshot:
        stored: dict[str, FetchedSubdir] = {}
        for subdir in job.subdirs:
            state = job.states.get(subdir)
            if state is None or not state.raw_sha256 or not self.blobs.exists(state.raw_sha256):
                return fetch_upstream(job, self.blobs, None)  # never ran: ask the upstream now
            validators = Validators(
                state.etag, state.last_modified, state.variant, state.raw_sha256
            )
            stored[subdir] = FetchedSubdir(
                subdir, state.raw_sha256, state.variant or "", validators, True
            )
        return UpstreamSnapshot(stored, "", dict(job.states), self.blobs)

    def _current(self, mirror: Mirror) -> dict[str, set[str]]:
        current: dict[str, set[str]] = {}
        for sd, fn in self.session.execute(
            select(Artifact.subdir, Artifact.filename).where(
                Artifact.channel_id == mirror.channel_id, Artifact.mirror_id == mirror.id
            )
        ).all():
            current.setdefault(sd, set()).add(fn)
        return current


class _Matcher:
    """A user's MatchSpec (``numpy 1.26.4``, ``numpy >=1.26``, ``numpy=1.26.4=py311*``)."""

    def __init__(self, text: str) -> None:
        try:
            self.spec = MatchSpec(text.strip(), strict=False, exact_names_only=False)
        except Exception as exc:  # noqa: BLE001  (rattler raises several types; all mean "bad spec")
            raise InvalidInputError(
                f"not a package spec: {text!r} ({exc})", code="policy:bad-spec", field="spec"
            ) from None
        pkg = self.spec.name.as_package_name()
        self.name = pkg.normalized if pkg is not None else None

    def matches(self, rec: dict[str, Any], subdir: str) -> bool:
        if self.name is not None and rec.get("name") != self.name:
            return False
        try:
            return bool(
                self.spec.matches(
                    PackageRecord(
                        name=str(rec.get("name", "")),
                        version=str(rec.get("version", "0")),
                        build=BuildString(str(rec.get("build", ""))),
                        build_number=int(rec.get("build_number", 0) or 0),
                        subdir=str(rec.get("subdir") or subdir),
                    )
                )
            )
        except Exception:  # noqa: BLE001  (a record rattler cannot represent does not match)
            return False
