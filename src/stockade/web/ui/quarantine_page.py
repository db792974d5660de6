"""The quarantine queue pages (SPEC §8, §10): ``/quarantine`` (what the scanners hold, with the
scan queue's state) and ``/quarantine/{id}`` (one artifact's findings, release and delete forms).

Reading needs ``security:read``; release and delete ``security:manage`` (the forms are shown only
to those who hold it). The queue box is drawn on each load and the page refreshes itself while
scans are queued (no script).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import RedirectResponse, Response

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.scanstate import QUARANTINE_STATES, ScanStatus
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.db.engine import transaction
from stockade.scanning.held_view import held_view
from stockade.scanning.quarantine import QuarantineService
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import confirmed
from stockade.web.ui.forms import FormError, FormText, Redraw, submit
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
QUARANTINE = "/quarantine"
PAGE_SIZE = 100
STATES = tuple(sorted(QUARANTINE_STATES))
ItemId = Annotated[int, Path(ge=1, le=2**62)]
Param = Annotated[str, Query(max_length=512)]
NOTICES = {
    "released": "The file was released: it is served again, with your note.",
    "deleted": "The file was deleted.",
}


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("ok", ""))


def _status(value: str) -> ScanStatus | None:
    if not value:
        return None
    if value not in STATES:
        raise InvalidInputError(f"status: one of {', '.join(STATES)}", field="status")
    return ScanStatus(value)


def _after(value: str) -> int:
    if not value:
        return 0
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise InvalidInputError("after: an artifact id", field="after")
    return int(value)


def _next_link(status: str, channel: str, after: int) -> str:
    params = {k: v for k, v in {"status": status, "channel": channel}.items() if v}
    return f"{QUARANTINE}?{urlencode({**params, 'after': after})}"


def list_page(
    request: Request, container: Container, principal: Principal, status: str, channel: str
) -> Response:
    wanted, after = _status(status), _after(request.query_params.get("after", ""))
    fingerprint = container.scanners.current().fingerprint
    with container.read_factory() as session:
        service = QuarantineService(session)
        rows = service.list(
            principal, status=wanted, channel=channel or None, after_id=after, limit=PAGE_SIZE
        )
        items = [held_view(session, held, fingerprint) for held in rows]
        progress = service.progress(principal)
    more = _next_link(status, channel, items[-1].id) if len(items) == PAGE_SIZE else None
    context: dict[str, Any] = {
        "title": "Quarantine",
        "items": items,
        "progress": progress,
        "states": STATES,
        "status": status,
        "channel": channel,
        "next_page": more,
        "notice": _notice(request),
        "error": None,
    }
    return render(request, "quarantine.html", context)


@router.get(QUARANTINE)
def quarantine_list(
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    status: Param = "",
    channel: Param = "",
) -> Response:
    return guarded(
        request,
        principal,
        lambda: list_page(request, container, principal, status.strip(), channel.strip()),
    )


def item_page(
    request: Request,
    container: Container,
    principal: Principal,
    artifact_id: int,
    *,
    error: FormError | None = None,
) -> Response:
    fingerprint = container.scanners.current().fingerprint
    with container.read_factory() as session:
        service = QuarantineService(session)
        item = held_view(session, service.show(principal, artifact_id), fingerprint)
        progress = service.progress(principal)
    held = item.status in QUARANTINE_STATES and not item.servable
    context: dict[str, Any] = {
        "title": f"Quarantine: {item.filename}",
        "item": item,
        "held": held,
        "progress": progress,
        "may_manage": AccessService().allowed(principal, Permission.SECURITY_MANAGE),
        "notice": None if error else _notice(request),
        "error": error,
    }
    return render(request, "quarantine_item.html", context, status=error.status if error else 200)


@router.get(QUARANTINE + "/{artifact_id}")
def quarantine_item(
    request: Request, artifact_id: ItemId, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(
        request, principal, lambda: item_page(request, container, principal, artifact_id)
    )


def _redraw(
    request: Request, container: Container, principal: Principal, artifact_id: int
) -> Redraw:
    def redraw(error: FormError) -> Response:
        return guarded(
            request,
            principal,
            lambda: item_page(request, container, principal, artifact_id, error=error),
        )

    return redraw


@router.post(QUARANTINE + "/{artifact_id}/release")
def release_item(
    request: Request,
    artifact_id: ItemId,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
    note: FormText = "",
) -> Response:
    back = f"{QUARANTINE}/{artifact_id}"

    def change() -> Response:
        with transaction(container.factory) as session:
            QuarantineService(session).release(principal, artifact_id, note)
        container.notify_changes()
        return RedirectResponse(f"{back}?ok=released", status_code=303)

    return submit(
        request,
        principal,
        csrf_token,
        back=back,
        change=change,
        redraw=_redraw(request, container, principal, artifact_id),
        form="release",
        values={"note": note[:2000]},
    )


@router.post(QUARANTINE + "/{artifact_id}/delete")
def delete_item(
    request: Request,
    artifact_id: ItemId,
    principal: CurrentPrincipal,
    container: ContainerDep,
    csrf_token: FormText = "",
    note: FormText = "",
    confirm: FormText = "",
) -> Response:
    back = f"{QUARANTINE}/{artifact_id}"

    def change() -> Response:
        confirmed(confirm, "this file")
        with transaction(container.factory) as session:
            QuarantineService(session).delete(principal, artifact_id, note)
        container.notify_changes()
        return RedirectResponse(f"{QUARANTINE}?ok=deleted", status_code=303)

    return submit(
        request,
        principal,
        csrf_token,
        back=back,
        change=change,
        redraw=_redraw(request, container, principal, artifact_id),
        form="delete",
        values={"note": note[:2000]},
    )
