"""Mirrors: ``/mirrors`` (the list, a new mirror) and the changes made on a mirror's page.

Every change is a form posted with the session's CSRF token: create, save settings, run now,
stop a run, delete. The mirroring services check who may do what; a refusal draws the page the
form came from again with the reason (and what was typed, except the token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel
from starlette.responses import Response

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.handoff import hand_off
from stockade.core.urls import redact_url
from stockade.db.engine import transaction
from stockade.mirroring.models import Mirror
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import confirmed
from stockade.web.ui.forms import FormError, FormText, clean, done, notice_of, submit
from stockade.web.ui.mirror_common import (
    MIRRORS,
    last_completed,
    may_create_mirror,
    mirror_url,
    rights_on,
    run_number,
    run_of,
    run_url,
    run_view,
    whole_number,
)
from stockade.web.ui.mirror_page import mirror_page
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
MODES = ("passive", "active")


class MirrorForm(BaseModel):
    """The new-mirror and settings forms (blank fields: not given)."""

    name: str = ""
    source: str = ""
    token: str = ""
    clear_token: str = ""
    channel: str = ""
    mode: str = "passive"
    subdirs: str = ""
    schedule: str = ""
    proxy: str = ""
    ca_bundle: str = ""
    concurrency: str = ""
    enabled: str = ""
    no_check: str = ""  # checked: create without checking the source (offline on purpose)
    csrf_token: str = ""

    def shown_again(self) -> dict[str, str]:
        """What the form shows after a refusal: as typed, never the token."""
        values = self.model_dump(exclude={"token", "csrf_token", "clear_token"})
        return {k: str(v) for k, v in values.items()}


MirrorFields = Annotated[MirrorForm, Form()]


def _optional(value: str, limit: int = 4096) -> str | None:
    return clean(value, limit) or None


def _schedule(value: str) -> str | None:
    return " ".join(value.split())[:128] or None


def create_spec(form: MirrorForm) -> MirrorSpec:
    spec = MirrorSpec(
        source=clean(form.source, 4096),
        mode=form.mode,
        schedule=_schedule(form.schedule),
        proxy=_optional(form.proxy),
        ca_bundle=_optional(form.ca_bundle),
    )
    if form.subdirs.strip():
        spec.subdirs = [s for s in form.subdirs.split(",") if s.strip()]
    if form.token.strip():
        spec.token = form.token.strip()
    concurrency = whole_number(form.concurrency, "concurrency", low=1, high=64)
    if concurrency is not None:
        spec.concurrency = concurrency
    return spec


def update_spec(mirror: Mirror, form: MirrorForm) -> MirrorSpec:
    """Only what changed: a channel manager may then save a mirror whose file:// source or CA
    bundle an administrator set."""
    spec = MirrorSpec()
    wanted = {
        "source": clean(form.source, 4096).rstrip("/") or mirror.source_url,
        "mode": form.mode,
        "schedule": _schedule(form.schedule),
        "proxy": _optional(form.proxy),
        "ca_bundle": _optional(form.ca_bundle),
        "enabled": form.enabled == "yes",
    }
    current = {  # as the form shows them (redacted): an unchanged field is not sent
        "source": redact_url(mirror.source_url),
        "mode": mirror.mode,
        "schedule": mirror.schedule,
        "proxy": redact_url(mirror.proxy) if mirror.proxy else None,
        "ca_bundle": mirror.ca_bundle,
        "enabled": mirror.enabled,
    }
    for key, value in wanted.items():
        if value != current[key]:
            setattr(spec, key, value)
    subdirs = [s.strip() for s in form.subdirs.split(",") if s.strip()]
    if subdirs != list(mirror.subdirs):
        spec.subdirs = subdirs
    concurrency = whole_number(form.concurrency, "concurrency", low=1, high=64)
    if concurrency is not None and concurrency != mirror.concurrency:
        spec.concurrency = concurrency
    if form.clear_token == "yes":  # noqa: S105  (a checkbox, not a password)
        spec.token = None
    elif form.token.strip():
        spec.token = form.token.strip()
    return spec


# ------------------------------------------------------------------------------------ the list


def mirrors_page(
    request: Request,
    container: Container,
    principal: Principal,
    *,
    error: FormError | None = None,
) -> Response:
    channel = clean(request.query_params.get("channel", ""), 512)
    with container.read_factory() as session:
        service = MirrorService(session, container.secrets, container.settings.outbound.policy())
        mirrors = service.list_visible(principal, channel=channel or None)
        ids = [m.id for m in mirrors]
        last, completed = service.last_runs(ids), last_completed(session, ids)
        rows = []
        for m in mirrors:
            target = service.channel_of(m)
            rows.append(
                {
                    "mirror": m,
                    "channel": target.name,
                    "rights": rights_on(principal, target),
                    "last": run_view(last[m.id], m.name) if m.id in last else None,
                    "completed": run_view(completed[m.id], m.name) if m.id in completed else None,
                }
            )
    context = {
        "title": "Mirrors",
        "rows": rows,
        "channel_filter": channel,
        "may_create": may_create_mirror(principal),
        "modes": MODES,
        "error": error,
        "notice": None if error else notice_of(request),
    }
    return render(request, "mirrors.html", context, status=error.status if error else 200)


@router.get(MIRRORS)
def list_mirrors(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: mirrors_page(request, container, principal))


@router.post(MIRRORS)
def create_mirror(
    request: Request, form: MirrorFields, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    name = clean(form.name, 128)

    def change() -> Response:
        with transaction(container.factory) as session:
            MirrorService(session, container.secrets, container.settings.outbound.policy()).create(
                principal,
                name,
                create_spec(form),
                channel=clean(form.channel, 512) or None,
                verify_source=not form.no_check,
            )
        container.notify_changes()
        return done(mirror_url(name), "mirror-created")

    def redraw(error: FormError) -> Response:
        return mirrors_page(request, container, principal, error=error)

    return submit(
        request,
        principal,
        form.csrf_token,
        back=MIRRORS,
        change=change,
        redraw=redraw,
        form="create",
        values=form.shown_again(),
    )


# --------------------------------------------------------------------- changes on a mirror's page


def _mirror_change(
    request: Request,
    principal: Principal,
    container: Container,
    name: str,
    csrf_token: str,
    change: Callable[[], Response],
    *,
    form: str,
    back: str = "",
    values: dict[str, str] | None = None,
) -> Response:
    """One change from a mirror's page (or the list, ``back=list``), drawn again on a refusal."""

    def redraw(error: FormError) -> Response:
        if back == "list":
            return mirrors_page(request, container, principal, error=error)
        return mirror_page(request, container, principal, name, error=error)

    return submit(
        request,
        principal,
        csrf_token,
        back=mirror_url(name),
        change=change,
        redraw=redraw,
        form=form,
        values=values,
    )


@router.post(MIRRORS + "/{name}")
def update_mirror(
    request: Request,
    name: str,
    form: MirrorFields,
    principal: CurrentPrincipal,
    container: ContainerDep,
) -> Response:
    def change() -> Response:
        with transaction(container.factory) as session:
            service = MirrorService(
                session, container.secrets, container.settings.outbound.policy()
            )
            mirror = service.get(principal, name, Permission.MIRROR_MANAGE)
            service.update(principal, name, update_spec(mirror, form))
        return done(mirror_url(name), "mirror-updated")

    values = form.shown_again()
    return _mirror_change(
        request, principal, container, name, form.csrf_token, change, form="settings", values=values
    )


@router.post(MIRRORS + "/{name}/run")
def run_now(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    back: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def change() -> Response:
        with transaction(container.factory) as session:
            run_id = RunService(session, container.secrets).request(principal, name).id
        hand_off(container.dispatch_run, run_id, "mirror run")
        return done(MIRRORS if back == "list" else mirror_url(name), "run-started")

    return _mirror_change(
        request, principal, container, name, csrf_token, change, form="run", back=back
    )


@router.post(MIRRORS + "/{name}/runs/{run_id}/stop")
def stop_run(
    request: Request,
    name: str,
    run_id: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    back: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def change() -> Response:
        number = run_number(run_id)
        with transaction(container.factory) as session:
            run_of(session, container, principal, name, number)
            RunService(session, container.secrets).stop(principal, number)
        return done(run_url(name, number) if back == "run" else mirror_url(name), "run-stopped")

    return _mirror_change(request, principal, container, name, csrf_token, change, form="run")


@router.post(MIRRORS + "/{name}/delete")
def delete_mirror(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    confirm: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def change() -> Response:
        confirmed(confirm, f"mirror {name!r}")
        with transaction(container.factory) as session:
            MirrorService(session, container.secrets, container.settings.outbound.policy()).delete(
                principal, name
            )
        container.notify_changes()
        return done(MIRRORS, "mirror-deleted")

    return _mirror_change(request, principal, container, name, csrf_token, change, form="delete")
