"""A channel's repodata patches, ``/channels/{name}/patches``: list, create or replace, revoke.

A patch changes the repodata record of one file (``depends``, ``constrains``, ``license``…), or
marks it revoked or removed from the index, and is applied again at every publication. Readers
see the list; uploaders (``artifact:write``, the check of ``PatchService``, which records each
change with before and after in the audit log) set and clear patches.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.browse import BrowseService
from stockade.channels.patching import PatchService
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import InvalidInputError
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.channel_admin import actions_for, channel_change, channel_name, is_package_path
from stockade.web.ui.forms import FormError, FormText, clean, notice_of
from stockade.web.ui.pages import package_page
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
MAX_CHANGES = 64_000


def patches_url(channel: str) -> str:
    return f"/channels/{channel}/patches"


def patches_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    with container.read_factory() as session:
        channel = ChannelService(session).get(
            principal, channel_name(name), Permission.CHANNEL_READ
        )
        patches = PatchService(session).list(channel)
        context = {
            "title": f"Patches · {channel.name}",
            "channel": channel,
            "actions": actions_for(principal, channel),
            "patches": [(p, json.dumps(p.changes, indent=1, sort_keys=True)) for p in patches],
            "subdirs": [s.subdir for s in BrowseService(session).subdirs(channel)],
            "error": error,
            "notice": None if error else notice_of(request),
        }
        return render(
            request, "channel_patches.html", context, status=error.status if error else 200
        )


@router.get("/channels/{name:path}/patches")
def show_patches(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    if is_package_path(name):  # the package called "patches"
        channel = name.strip("/").removesuffix("/packages")
        build = request.query_params.get("build", "")
        return package_page(request, channel, "patches", principal, container, build)
    return guarded(request, principal, lambda: patches_page(request, container, principal, name))


def parse_changes(text: str) -> dict[str, Any]:
    """The record fields to change, a JSON object (empty: no field changes)."""
    text = text.strip()
    if not text:
        return {}
    if len(text) > MAX_CHANGES:
        raise InvalidInputError(
            f"the changes are longer than {MAX_CHANGES} characters", field="changes"
        )
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(
            f"the changes are not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else "the changes are not JSON (or nested too deep)",
            code="patch:invalid",
            field="changes",
        ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(
            'the changes are a JSON object, such as {"depends": ["python >=3.9"]}',
            code="patch:invalid",
            field="changes",
        )
    return value


@router.post("/channels/{name:path}/patches")
def set_patch(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    subdir: FormText = "",
    filename: FormText = "",
    changes: FormText = "",
    revoked: FormText = "",
    removed: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    channel = name.strip("/")

    def make(session: Session) -> tuple[str, str]:
        PatchService(session).set(
            principal,
            channel_name(channel),
            clean(subdir, 64),
            clean(filename, 512),
            changes=parse_changes(changes),
            revoked=revoked == "yes",
            removed=removed == "yes",
        )
        return patches_url(channel), "patch-saved"

    values = {
        "subdir": subdir,
        "filename": filename,
        "changes": changes,
        "revoked": revoked,
        "removed": removed,
    }
    return channel_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=patches_url(channel),
        redraw=lambda e: patches_page(request, container, principal, channel, error=e),
        form="patch",
        values=values,
    )


@router.post("/channels/{name:path}/patches/clear")
def clear_patch(
    request: Request,
    name: str,
    principal: CurrentPrincipal,
    container: ContainerDep,
    subdir: FormText = "",
    filename: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    channel = name.strip("/")

    def make(session: Session) -> tuple[str, str]:
        PatchService(session).clear(
            principal, channel_name(channel), clean(subdir, 64), clean(filename, 512)
        )
        return patches_url(channel), "patch-cleared"

    return channel_change(
        request,
        principal,
        container,
        csrf_token,
        make,
        back=patches_url(channel),
        redraw=lambda e: patches_page(request, container, principal, channel, error=e),
    )
