"""What a mirror run loads before it starts: the mirror's settings, policies, guard and the state
of its subdirs (``MirrorJob``), read in one session so the run never reads the mirror row again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import Channel
from stockade.core.clock import utcnow
from stockade.core.outbound import OutboundPolicy
from stockade.core.secrets import SecretBox
from stockade.core.urls import origin_of
from stockade.mirroring.credentials import proxy_url
from stockade.mirroring.inputs import (
    digest,
    guarded_names,
    malicious_files,
)
from stockade.mirroring.models import Mirror, MirrorRun, MirrorSubdirState
from stockade.mirroring.sources import SourceConfig, redact_url
from stockade.policies.model import Policy
from stockade.policies.service import PolicyService
from stockade.signing.upstream import (
    UpstreamTrust,
    stored_trust,
)

if TYPE_CHECKING:
    pass

CHUNK = 2000


@dataclass(frozen=True)
class SubdirStateView:
    subdir: str
    etag: str | None
    last_modified: str | None
    variant: str | None
    raw_sha256: str | None
    fingerprint: str | None
    valid_until: datetime | None
    upstream_count: int
    kept_count: int
    base_url: str | None
    exclusions_sha256: str | None
    fetched_at: datetime | None = None


@dataclass
class MirrorJob:
    run_id: int
    attempt: int
    mirror_id: int
    name: str
    channel_id: int
    channel_name: str
    mode: str
    subdirs: list[str]
    concurrency: int
    source: SourceConfig
    policies: list[Policy]
    policy_digest: str
    guarded: set[str]
    allowed: list[str]
    guard_digest: str
    malicious: set[str]
    states: dict[str, SubdirStateView]
    vulnerability_version: str = ""
    # Content trust of the upstream (``mirroring.trust``): the root an admin trusts, where the
    # upstream's metadata is, and what records are checked with: the last run's, checked again
    # offline (dry runs, explain) until a run fetches it anew (``fetch_upstream``).
    trusted_root: bytes | None = None
    signing_metadata_url: str | None = None
    trust: UpstreamTrust = field(default_factory=UpstreamTrust)
    # An air-gap run (``mirroring.airgap_run``): every file or nothing, and what to record in the
    # switching transaction (that the bundle is applied).
    all_or_nothing: bool = False
    publish_hooks: list[Callable[[Session], None]] = field(default_factory=list)

    def describe(self) -> str:
        policies = ", ".join(p.name for p in self.policies) or "no policy"
        return (
            f"{self.mode} mirror of {redact_url(self.source.url)} into "
            f"{self.channel_name!r} ({', '.join(self.subdirs)}; {policies})"
        )


def state_views(session: Session, mirror_id: int) -> dict[str, SubdirStateView]:
    rows = session.scalars(
        select(MirrorSubdirState).where(MirrorSubdirState.mirror_id == mirror_id)
    ).all()
    return {
        r.subdir: SubdirStateView(
            r.subdir,
            r.etag,
            r.last_modified,
            r.variant,
            r.raw_sha256,
            r.fingerprint,
            r.valid_until,
            r.upstream_count,
            r.kept_count,
            r.base_url,
            r.exclusions_sha256,
            r.fetched_at,
        )
        for r in rows
    }


def metadata_location(mirror: Mirror) -> str:
    """Where the upstream's trust metadata is fetched from (``mirroring.trust``)."""
    return mirror.signing_metadata_url or mirror.source_url


def mirror_policies(session: Session, mirror: Mirror) -> list[Policy]:
    """The channel's policies, then the mirror's own (a record must pass all of them)."""
    service = PolicyService(session)
    seen: set[str] = set()
    result: list[Policy] = []
    for policy in service.for_channel(mirror.channel_id) + service.for_mirror(mirror.id):
        if policy.name not in seen:
            seen.add(policy.name)
            result.append(policy)
    return result


def source_config(
    mirror: Mirror,
    secrets: SecretBox,
    timeout_s: float = 60.0,
    outbound: OutboundPolicy | None = None,
) -> SourceConfig:
    """How to reach the mirror's upstream: the token bound to the origin it was given for, the
    proxy with its decrypted credentials, the outbound policy (strict when not given)."""
    return SourceConfig(
        url=mirror.source_url,
        token=secrets.decrypt(mirror.source_token_enc) if mirror.source_token_enc else None,
        token_origin=mirror.source_token_origin or origin_of(mirror.source_url),
        proxy=proxy_url(mirror, secrets),
        ca_bundle=Path(mirror.ca_bundle) if mirror.ca_bundle else None,
        timeout_s=timeout_s,
        outbound=outbound or OutboundPolicy(),
    )


def job_for_mirror(
    session: Session,
    mirror: Mirror,
    secrets: SecretBox,
    *,
    run_id: int = 0,
    attempt: int = 0,
    policies: list[Policy] | None = None,
    timeout_s: float = 60.0,
    outbound: OutboundPolicy | None = None,
) -> MirrorJob:
    channel = session.get(Channel, mirror.channel_id)
    assert channel is not None
    chosen = mirror_policies(session, mirror) if policies is None else policies
    guarded = guarded_names(session, channel.id, mirror.companions or [])
    allowed = list(mirror.allowed_names or [])
    definitions = list(chosen)  # dataclasses: digested field by field, sets sorted
    return MirrorJob(
        run_id=run_id,
        attempt=attempt,
        mirror_id=mirror.id,
        name=mirror.name,
        channel_id=channel.id,
        channel_name=channel.name,
        mode=mirror.mode,
        subdirs=list(mirror.subdirs),
        concurrency=mirror.concurrency,
        source=source_config(mirror, secrets, timeout_s, outbound),
        policies=chosen,
        policy_digest=digest(definitions),
        guarded=guarded,
        allowed=allowed,
        guard_digest=digest(sorted(guarded - set(allowed))),
        malicious=malicious_files(session, channel.id),
        states=state_views(session, mirror.id),
        trusted_root=mirror.trusted_root,
        signing_metadata_url=mirror.signing_metadata_url,
        trust=stored_trust(
            mirror.trusted_root, mirror.upstream_trust, utcnow(), metadata_location(mirror)
        ),
    )


def load_job(
    session: Session,
    run_id: int,
    secrets: SecretBox,
    timeout_s: float = 60.0,
    outbound: OutboundPolicy | None = None,
) -> MirrorJob:
    run = session.get(MirrorRun, run_id)
    assert run is not None
    mirror = session.get(Mirror, run.mirror_id)
    assert mirror is not None
    return job_for_mirror(
        session,
        mirror,
        secrets,
        run_id=run_id,
        attempt=run.attempt,
        timeout_s=timeout_s,
        outbound=outbound,
    )


# ------------------------------------------------------------------------------------------ plan
