"""Policies: create, change, assign, dry run, explain (SPEC §6)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring.preview import MirrorPreview, PreviewService
from stockade.mirroring.throttle import take_preview_turn
from stockade.policies.models import PolicyRow
from stockade.policies.service import PolicyService, parse_new_definition
from stockade.web.api import API
from stockade.web.api.mirror_schemas import (
    AssignmentCreate,
    AssignmentPublic,
    DraftDryRunRequest,
    DryRunPublic,
    DryRunRequest,
    ExplanationPublic,
    MirrorPreviewPublic,
    PolicyCreate,
    PolicyPublic,
    PolicyUpdate,
    ReasonPublic,
    SubdirPreviewPublic,
)
from stockade.web.deps import ContainerDep, CurrentPrincipal, SignedIn

router = APIRouter(prefix=API, tags=["policies"])


def policy_public(service: PolicyService, row: PolicyRow, principal: Principal) -> PolicyPublic:
    return PolicyPublic(
        name=row.name,
        description=row.description,
        definition=dict(row.definition),
        assignments=[
            AssignmentPublic(policy=a.policy, channel=a.channel, mirror=a.mirror)
            for a in service.assignments(principal, [row.id])
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def preview_public(preview: MirrorPreview) -> MirrorPreviewPublic:
    return MirrorPreviewPublic(
        mirror=preview.mirror,
        policies=preview.policies,
        snapshot=preview.snapshot,
        snapshot_at=preview.snapshot_at,
        notes=preview.notes,
        totals=preview.totals(),
        subdirs=[
            SubdirPreviewPublic.model_validate(s, from_attributes=True) for s in preview.subdirs
        ],
    )


def _preview_service(session: object, container: Container, request: Request) -> PreviewService:
    """Previews are counted per caller in the database (shared by every process): 429 over."""
    ip = request.client.host if request.client else None
    return PreviewService(
        session,  # type: ignore[arg-type]
        container.blobs,
        container.secrets,
        container.vulnerabilities,
        throttle=lambda principal: take_preview_turn(
            container.factory, principal, ip, container.settings.mirror
        ),
    )


@router.get("/policies", response_model=list[PolicyPublic])
def list_policies(principal: CurrentPrincipal, container: ContainerDep) -> list[PolicyPublic]:
    with container.read_factory() as session:
        service = PolicyService(session)
        return [policy_public(service, r, principal) for r in service.list_all(principal)]


@router.post("/policies", response_model=PolicyPublic, status_code=201)
def create_policy(body: PolicyCreate, principal: SignedIn, container: ContainerDep) -> PolicyPublic:
    with transaction(container.factory) as session:
        service = PolicyService(session)
        row = service.create(
            principal, body.name, body.definition.as_dict(), description=body.description
        )
        return policy_public(service, row, principal)


@router.post("/policies/dry-run", response_model=DryRunPublic)
def dry_run_draft(
    body: DraftDryRunRequest,
    principal: CurrentPrincipal,
    container: ContainerDep,
    request: Request,
) -> DryRunPublic:
    """What the channel's mirrors would keep with a draft policy added (the editor's preview;
    needs write access to the channel); without a definition, what the next run would do with
    the current policies (read access). Reads the last run's upstream records, never the
    upstream: 409 when no mirror of the channel has completed a run."""
    candidate = (
        parse_new_definition(body.name, body.definition.as_dict())
        if body.definition is not None
        else None
    )
    with container.read_factory() as session:
        previews = _preview_service(session, container, request).dry_run(
            principal, body.channel, candidate, mirror=body.mirror, draft=candidate is not None
        )
    return DryRunPublic(
        channel=body.channel,
        policy=candidate.name if candidate else None,
        mirrors=[preview_public(p) for p in previews],
    )


@router.get("/policies/explain", response_model=list[ExplanationPublic])
def explain(
    principal: CurrentPrincipal,
    container: ContainerDep,
    request: Request,
    channel: str = Query(min_length=1, max_length=512),
    spec: str = Query(min_length=1, max_length=1000, examples=["numpy 1.26.4"]),
    subdir: str | None = Query(default=None, max_length=64),
) -> list[ExplanationPublic]:
    """Why each upstream record matching ``spec`` is or is not in the channel: the reasons the
    last run stored. 409 when no mirror of the channel has completed a run."""
    with container.read_factory() as session:
        found = _preview_service(session, container, request).explain(
            principal, channel, spec, subdir=subdir
        )
    return [
        ExplanationPublic(
            mirror=e.mirror,
            subdir=e.subdir,
            filename=e.filename,
            kept=e.kept,
            in_channel=e.in_channel,
            exceptions=e.exceptions,
            evaluated_at=e.evaluated_at,
            notes=e.notes,
            reasons=[
                ReasonPublic(policy=r.policy, criterion=r.criterion, detail=r.detail)
                for r in e.reasons
            ],
        )
        for e in found
    ]


@router.get("/policies/{name}", response_model=PolicyPublic)
def show_policy(name: str, principal: CurrentPrincipal, container: ContainerDep) -> PolicyPublic:
    with container.read_factory() as session:
        service = PolicyService(session)
        return policy_public(service, service.get(principal, name), principal)


@router.patch("/policies/{name}", response_model=PolicyPublic)
def update_policy(
    name: str, body: PolicyUpdate, principal: SignedIn, container: ContainerDep
) -> PolicyPublic:
    with transaction(container.factory) as session:
        service = PolicyService(session)
        row = service.update(
            principal,
            name,
            definition=body.definition.as_dict() if body.definition is not None else None,
            description=body.description,
        )
        return policy_public(service, row, principal)


@router.delete("/policies/{name}", status_code=204)
def delete_policy(name: str, principal: SignedIn, container: ContainerDep) -> Response:
    with transaction(container.factory) as session:
        PolicyService(session).delete(principal, name)
    return Response(status_code=204)


@router.post("/policies/{name}/assignments", response_model=AssignmentPublic, status_code=201)
def assign_policy(
    name: str, body: AssignmentCreate, principal: SignedIn, container: ContainerDep
) -> AssignmentPublic:
    """Apply the policy to a channel (every mirror of it) or to one mirror, from its next run."""
    with transaction(container.factory) as session:
        view = PolicyService(session).assign(
            principal, name, channel=body.channel, mirror=body.mirror
        )
    return AssignmentPublic(policy=view.policy, channel=view.channel, mirror=view.mirror)


@router.delete("/policies/{name}/assignments", status_code=204)
def unassign_policy(
    name: str,
    principal: SignedIn,
    container: ContainerDep,
    channel: str | None = Query(default=None, max_length=512),
    mirror: str | None = Query(default=None, max_length=128),
) -> Response:
    with transaction(container.factory) as session:
        PolicyService(session).unassign(principal, name, channel=channel, mirror=mirror)
    return Response(status_code=204)


@router.post("/policies/{name}/dry-run", response_model=DryRunPublic)
def dry_run(
    name: str,
    body: DryRunRequest,
    principal: CurrentPrincipal,
    container: ContainerDep,
    request: Request,
) -> DryRunPublic:
    """What the channel's mirrors would keep with this policy assigned: counts per reason,
    samples, and what would be added and removed."""
    with container.read_factory() as session:
        service = PolicyService(session)
        candidate = service.policy_of(service.get(principal, name))
        previews = _preview_service(session, container, request).dry_run(
            principal, body.channel, candidate, mirror=body.mirror
        )
    return DryRunPublic(
        channel=body.channel, policy=name, mirrors=[preview_public(p) for p in previews]
    )
