"""The content-trust page (SPEC §8, §10): ``/admin/signing``, read-only.

It shows what ``stockade signing status`` shows (``SigningAdmin.status``): the chain's versions,
keys and expiries, what signs records on this server, the warnings, and each signed channel with
its signing progress. Keys are made and rotated with the CLI (the root and key_mgr keys stay off
the server); reading needs ``security:read``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from stockade.channels.signing_admin import SigningAdmin
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import admin_context
from stockade.web.ui.render import base_url, guarded, render

router = APIRouter(include_in_schema=False)


@router.get("/admin/signing")
def signing_page(
    request: Request, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    def build() -> Response:
        settings = container.settings
        with container.read_factory() as session:
            status = SigningAdmin(session, settings.signing, settings.data_dir).status(principal)
        context = {
            "title": "Signing",
            **admin_context(principal, "signing"),
            "status": status,
            "metadata_url": f"{base_url(request)}/signing",
        }
        return render(request, "signing.html", context)

    return guarded(request, principal, build)
