"""Policies: ``/policies`` (the list), ``/policies/new`` and ``/policies/{name}`` (the editor).

The editor saves through the policy service and previews through the dry run: live in the browser
(``policy-preview.js`` posts the form, as a definition, to the API's draft dry run), or, without
JavaScript, with its "Preview" button, which posts the form here and draws the same counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.service import channel_ref
from stockade.container import Container
from stockade.core.errors import InvalidInputError, StockadeError
from stockade.db.engine import transaction
from stockade.mirroring.service import MirrorService
from stockade.policies.service import PolicyService, parse_new_definition
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import confirmed
from stockade.web.ui.forms import (
    FormError,
    FormText,
    checked_post,
    clean,
    done,
    notice_of,
    submit,
)
from stockade.web.ui.mirror_common import POLICIES, mirrored_channels, policy_url, preview_service
from stockade.web.ui.policy_form import (
    FLAGS,
    LICENSE_FAMILIES,
    OPERATORS,
    SET_MODES,
    STATUSES,
    PolicyFields,
    PolicyForm,
    definition_of,
    form_of,
    labelled,
    preview_view,
    summary_of,
)
from stockade.web.ui.render import guarded, render, sentence

router = APIRouter(include_in_schema=False)
NEW = POLICIES + "/new"
DRAFT = "draft"


# ------------------------------------------------------------------------------------ the list


def policies_page(request: Request, container: Container, principal: Principal) -> Response:
    with container.read_factory() as session:
        service = PolicyService(session)
        rows = service.list_all(principal)
        where: dict[str, list[str]] = {}
        for a in service.assignments(principal):
            label = f"channel {a.channel}" if a.channel else f"mirror {a.mirror}"
            where.setdefault(a.policy, []).append(label)
        context = {
            "title": "Policies",
            "policies": [
                {
                    "name": r.name,
                    "description": r.description,
                    "summary": summary_of(r.definition),
                    "where": where.get(r.name, []),
                }
                for r in rows
            ],
            "may_write": AccessService().allowed(principal, Permission.POLICY_WRITE),
            "notice": notice_of(request),
            "error": None,
        }
    return render(request, "policies.html", context)


@router.get(POLICIES)
def list_policies(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: policies_page(request, container, principal))


# ---------------------------------------------------------------------------------- the editor


def assign_targets(session: Session, container: Container, principal: Principal) -> list[str]:
    """``channel:NAME`` and ``mirror:NAME`` the principal may assign policies to."""
    access = AccessService()
    mirrors = MirrorService(session, container.secrets)
    channels: set[str] = set()
    targets: list[str] = []
    for mirror in mirrors.list_visible(principal):
        channel = mirrors.channel_of(mirror)
        if access.can(principal, Permission.POLICY_MANAGE, channel_ref(channel)):
            channels.add(channel.name)
            targets.append(f"mirror:{mirror.name}")
    return [f"channel:{c}" for c in sorted(channels)] + targets


def editor_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str | None,
    *,
    form: PolicyForm | None = None,
    error: FormError | None = None,
    preview: list[dict[str, Any]] | None = None,
) -> Response:
    access = AccessService()
    with container.read_factory() as session:
        service = PolicyService(session)
        assignments: list[Any] = []
        if name is None:
            access.require(principal, Permission.POLICY_WRITE)
        else:
            row = service.get(principal, name)
            assignments = service.assignments(principal, [row.id])
            form = form or form_of(row.name, row.description, row.definition)
        channels = mirrored_channels(session, container, principal)
        context: dict[str, Any] = {
            "title": f"Policy {name}" if name else "New policy",
            "policy_name": name,
            "f": form or PolicyForm(),
            "assignments": assignments,
            "targets": assign_targets(session, container, principal) if name else [],
            "preview_channels": channels,
            "preview": preview,
        }
    context.update(
        may_write=access.allowed(principal, Permission.POLICY_WRITE),
        may_manage=access.allowed(principal, Permission.POLICY_MANAGE),
        license_families=LICENSE_FAMILIES,
        statuses=STATUSES,
        set_modes=SET_MODES,
        operators=OPERATORS,
        flags=FLAGS,
        error=error,
        notice=None if error or preview is not None else notice_of(request),
    )
    status = error.status if error else 200
    return render(request, "policy.html", context, status=status, scripts=("policy-preview.js",))


@router.get(NEW)
def new_policy(request: Request, principal: CurrentPrincipal, container: ContainerDep) -> Response:
    return guarded(request, principal, lambda: editor_page(request, container, principal, None))


@router.get(POLICIES + "/{name}")
def show_policy(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: editor_page(request, container, principal, name))


def run_preview(
    request: Request, container: Container, principal: Principal, name: str | None, form: PolicyForm
) -> Response:
    """The dry run of the form as it is, drawn under the form (errors: above it)."""
    try:
        channel = clean(form.preview_channel, 512)
        if not channel:
            raise InvalidInputError("pick a channel to preview the policy on", field="channel")
        candidate = parse_new_definition(
            name or clean(form.name, 128) or DRAFT, definition_of(form)
        )
        with container.read_factory() as session:
            previews = preview_service(session, container, request).dry_run(
                principal, channel, candidate, draft=True
            )
    except StockadeError as exc:
        error = FormError(labelled(sentence(exc.detail)), 400, "policy")
        return editor_page(request, container, principal, name, form=form, error=error)
    view = preview_view(previews)
    return editor_page(request, container, principal, name, form=form, preview=view)


def save_or_preview(
    request: Request,
    container: Container,
    principal: Principal,
    name: str | None,
    form: PolicyForm,
) -> Response:
    back = policy_url(name) if name else NEW
    if form.action == "preview":
        return checked_post(
            request,
            principal,
            form.csrf_token,
            lambda: run_preview(request, container, principal, name, form),
            back=back,
        )

    def change() -> Response:
        definition = definition_of(form)
        description = clean(form.description, 10_000)
        with transaction(container.factory) as session:
            service = PolicyService(session)
            if name is None:
                row = service.create(principal, form.name, definition, description=description)
                return done(policy_url(row.name), "policy-created")
            service.update(principal, name, definition=definition, description=description)
        return done(policy_url(name), "policy-updated")

    def redraw(error: FormError) -> Response:
        error = replace(error, message=labelled(error.message))
        return editor_page(request, container, principal, name, form=form, error=error)

    return submit(
        request, principal, form.csrf_token, back=back, change=change, redraw=redraw, form="policy"
    )


@router.post(NEW)
def create_policy(
    request: Request, form: PolicyFields, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return save_or_preview(request, container, principal, None, form)


@router.post(POLICIES + "/{name}")
def update_policy(
    request: Request,
    name: str,
    form: PolicyFields,
    principal: CurrentPrincipal,
    container: ContainerDep,
) -> Response:
    return save_or_preview(request, container, principal, name, form)


# ------------------------------------------------------------------- delete, assign, unassign


def _policy_change(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    make: Callable[[PolicyService], str],
    *,
    form: str,
) -> Response:
    def change() -> Response:
        with transaction(container.factory) as session:
            notice = make(PolicyService(session))
        return done(POLICIES if notice == "policy-deleted" else policy_url(name), notice)

    def redraw(error: FormError) -> Response:
        return editor_page(request, container, principal, name, error=error)

    return submit(
        request,
        principal,
        csrf_token,
        back=policy_url(name),
        change=change,
        redraw=redraw,
        form=form,
    )


def parse_target(value: str) -> dict[str, str]:
    kind, sep, target = value.partition(":")
    if not sep or kind not in ("channel", "mirror") or not target.strip():
        raise InvalidInputError("choose a channel or a mirror", field="target")
    return {kind: clean(target, 512)}


@router.post(POLICIES + "/{name}/delete")
def delete_policy(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(service: PolicyService) -> str:
        confirmed(confirm, f"policy {name!r}")
        service.delete(principal, name)
        return "policy-deleted"

    return _policy_change(request, principal, container, name, csrf_token, make, form="delete")


@router.post(POLICIES + "/{name}/assign")
def assign_policy(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    target: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(service: PolicyService) -> str:
        service.assign(principal, name, **parse_target(target))
        return "policy-assigned"

    return _policy_change(request, principal, container, name, csrf_token, make, form="assign")


@router.post(POLICIES + "/{name}/unassign")
def unassign_policy(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    target: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def make(service: PolicyService) -> str:
        service.unassign(principal, name, **parse_target(target))
        return "policy-unassigned"

    return _policy_change(request, principal, container, name, csrf_token, make, form="assign")
