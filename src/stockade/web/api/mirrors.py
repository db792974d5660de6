"""Mirrors and their runs: create, change, run now, stop, follow (SPEC §5)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.permissions import Permission
from stockade.channels.models import Channel
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.handoff import hand_off
from stockade.core.urls import redact_url
from stockade.db.engine import transaction
from stockade.mirroring.credentials import has_proxy_credentials
from stockade.mirroring.inputs import unpack_exclusions
from stockade.mirroring.job import metadata_location, mirror_policies
from stockade.mirroring.models import Mirror, MirrorRun, MirrorSubdirState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import UNSET, MirrorService, MirrorSpec, trust_sha
from stockade.signing.upstream import root_summary, stored_trust
from stockade.web.api import API
from stockade.web.api.mirror_schemas import (
    ExclusionPublic,
    MirrorCreate,
    MirrorPublic,
    MirrorUpdate,
    RunLogPublic,
    RunPublic,
    RunStep,
    TrustedRootPublic,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn

router = APIRouter(prefix=API, tags=["mirrors"])
RUN_ID_MAX = 2**31 - 1  # mirror_runs.id is a 32-bit integer column
RunId = Annotated[int, Path(ge=1, le=RUN_ID_MAX)]


def run_public(run: MirrorRun, mirror_name: str) -> RunPublic:
    return RunPublic(
        id=run.id,
        mirror=mirror_name,
        state=run.state,
        trigger=run.trigger,
        attempt=run.attempt,
        stop_requested=run.stop_requested,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        heartbeat_at=run.heartbeat_at,
        summary=run.summary,
        error=run.error,
        steps=[RunStep.model_validate(s) for s in run.steps or []],
        counts=dict(run.counts or {}),
        url=f"{API}/runs/{run.id}",
    )


def mirror_public(session: Session, mirror: Mirror, last: MirrorRun | None) -> MirrorPublic:
    channel = session.get(Channel, mirror.channel_id)
    assert channel is not None
    return MirrorPublic(
        name=mirror.name,
        channel=channel.name,
        source=redact_url(mirror.source_url),
        has_token=mirror.source_token_enc is not None,
        mode=mirror.mode,
        subdirs=list(mirror.subdirs),
        schedule=mirror.schedule,
        next_run_at=mirror.next_run_at if mirror.enabled else None,
        proxy=redact_url(mirror.proxy) if mirror.proxy else None,
        has_proxy_credentials=has_proxy_credentials(mirror),
        ca_bundle=mirror.ca_bundle,
        concurrency=mirror.concurrency,
        enabled=mirror.enabled,
        companions=list(mirror.companions or []),
        allowed_names=list(mirror.allowed_names or []),
        policies=[p.name for p in mirror_policies(session, mirror)],
        created_at=mirror.created_at,
        last_run=run_public(last, mirror.name) if last is not None else None,
        **trust_public(mirror),
    )


def trust_public(mirror: Mirror) -> dict[str, Any]:
    """A mirror's trust settings as shown: the root's version and public keys, never more."""
    summary = root_summary(mirror.trusted_root)
    root = (
        TrustedRootPublic(**summary, sha256=trust_sha(mirror.trusted_root))
        if summary is not None
        else None
    )
    trust = stored_trust(
        mirror.trusted_root, mirror.upstream_trust, utcnow(), metadata_location(mirror)
    )
    url = mirror.signing_metadata_url
    return {
        "trusted_root": root,
        "signing_metadata_url": redact_url(url) if url else None,
        "signature_trust": trust.describe(),
    }


def _spec(body: MirrorCreate | MirrorUpdate) -> MirrorSpec:
    spec = MirrorSpec()
    for field in body.model_fields_set:
        if hasattr(spec, field):
            setattr(spec, field, getattr(body, field))
    return spec


def _service(session: Session, container: Container) -> MirrorService:
    return MirrorService(session, container.secrets, container.settings.outbound.policy())


@router.get("/mirrors", response_model=list[MirrorPublic])
def list_mirrors(
    principal: CurrentPrincipal, container: ContainerDep, channel: str | None = None
) -> list[MirrorPublic]:
    with container.read_factory() as session:
        service = _service(session, container)
        mirrors = service.list_visible(principal, channel=channel)
        last = service.last_runs([m.id for m in mirrors])
        return [mirror_public(session, m, last.get(m.id)) for m in mirrors]


@router.post("/mirrors", response_model=MirrorPublic, status_code=201)
def create_mirror(body: MirrorCreate, principal: SignedIn, container: ContainerDep) -> MirrorPublic:
    with transaction(container.factory) as session:
        spec = _spec(body)
        spec.source = body.source
        mirror = _service(session, container).create(
            principal,
            body.name,
            spec,
            channel=body.channel,
            privacy=body.privacy,
            verify_source=body.check,
        )
        public = mirror_public(session, mirror, None)
    container.notify_changes()
    return public


@router.get("/mirrors/{name}", response_model=MirrorPublic)
def show_mirror(name: str, principal: CurrentPrincipal, container: ContainerDep) -> MirrorPublic:
    with container.read_factory() as session:
        service = _service(session, container)
        mirror = service.get(principal, name, Permission.MIRROR_READ)
        return mirror_public(session, mirror, service.last_runs([mirror.id]).get(mirror.id))


@router.patch("/mirrors/{name}", response_model=MirrorPublic)
def update_mirror(
    name: str, body: MirrorUpdate, principal: SignedIn, container: ContainerDep
) -> MirrorPublic:
    with transaction(container.factory) as session:
        spec = _spec(body)
        if body.source is None:
            spec.source = UNSET
        service = _service(session, container)
        mirror = service.update(principal, name, spec)
        return mirror_public(session, mirror, service.last_runs([mirror.id]).get(mirror.id))


@router.delete("/mirrors/{name}", status_code=204)
def delete_mirror(name: str, principal: SignedIn, container: ContainerDep) -> Response:
    with transaction(container.factory) as session:
        _service(session, container).delete(principal, name)
    container.notify_changes()
    return Response(status_code=204)


@router.post("/mirrors/{name}/runs", response_model=RunPublic, status_code=202)
def start_run(
    name: str, principal: SignedIn, container: ContainerDep, response: Response
) -> RunPublic:
    """Queue a run now (202); follow it at the returned ``url``. 409 if one is in progress."""
    with transaction(container.factory) as session:
        run = RunService(session, container.secrets).request(principal, name)
        public = run_public(run, name)
    hand_off(container.dispatch_run, public.id, "mirror run")
    response.headers["Location"] = public.url
    return public


@router.get("/mirrors/{name}/runs", response_model=list[RunPublic])
def list_runs(
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    before: int | None = Query(default=None, ge=1, le=RUN_ID_MAX),
    limit: int = Query(default=20, ge=1, le=200),
) -> list[RunPublic]:
    with container.read_factory() as session:
        runs = RunService(session, container.secrets).list_runs(
            principal, name, before_id=before, limit=limit
        )
        return [run_public(r, name) for r in runs]


@router.get("/mirrors/{name}/exclusions", response_model=list[ExclusionPublic])
def list_exclusions(
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    subdir: str | None = Query(default=None, max_length=64),
    package: str | None = Query(default=None, max_length=256, description="package name"),
    limit: int = Query(default=100, ge=1, le=5000),
) -> list[ExclusionPublic]:
    """The records the last completed run left out, with their reasons."""
    with container.read_factory() as session:
        mirror = _service(session, container).get(principal, name, Permission.MIRROR_READ)
        states = session.scalars(
            select(MirrorSubdirState).where(MirrorSubdirState.mirror_id == mirror.id)
        ).all()
    found: list[ExclusionPublic] = []
    for state in sorted(states, key=lambda s: s.subdir):
        if (subdir and state.subdir != subdir) or not state.exclusions_sha256:
            continue
        excluded = unpack_exclusions(container.blobs.read_bytes(state.exclusions_sha256))
        for filename in sorted(excluded):
            if package and not filename.startswith(package + "-"):
                continue
            found.append(
                ExclusionPublic(
                    subdir=state.subdir,
                    filename=filename,
                    reasons=[str(r) for r in excluded[filename]],
                )
            )
            if len(found) >= limit:
                return found
    return found


def _run_mirror_name(session: Session, run: MirrorRun) -> str:
    mirror = session.get(Mirror, run.mirror_id)
    return mirror.name if mirror else ""


@router.get("/runs/{run_id}", response_model=RunPublic)
def show_run(run_id: RunId, principal: CurrentPrincipal, container: ContainerDep) -> RunPublic:
    with container.read_factory() as session:
        run = RunService(session, container.secrets).get(principal, run_id)
        return run_public(run, _run_mirror_name(session, run))


@router.post("/runs/{run_id}/stop", response_model=RunPublic)
def stop_run(run_id: RunId, principal: SignedIn, container: ContainerDep) -> RunPublic:
    """Stop a pending run at once, or ask a running one to stop at its next safe point."""
    with transaction(container.factory) as session:
        run = RunService(session, container.secrets).stop(principal, run_id)
        return run_public(run, _run_mirror_name(session, run))


@router.get("/runs/{run_id}/logs", response_model=list[RunLogPublic])
def run_logs(
    run_id: RunId,
    principal: CurrentPrincipal,
    container: ContainerDep,
    after: int = Query(default=0, ge=0, le=2**62),
    limit: int = Query(default=500, ge=1, le=5000),
) -> list[RunLogPublic]:
    with container.read_factory() as session:
        lines = RunService(session, container.secrets).logs(
            principal, run_id, after_id=after, limit=limit
        )
        return [
            RunLogPublic(id=ln.id, at=ln.at, level=ln.level, message=ln.message) for ln in lines
        ]
