"""The air-gap page (SPEC §9): ``/admin/airgap``, read-only.

What ``stockade airgap status`` and ``stockade airgap exports`` show: the air-gap folder and the
keys trusted for bundles, the bundles waiting in the folder, the bundles applied or refused (with
why), the mirrors whose source is ``airgap:…`` with their newest run (its page shows the run live),
and the bundles exported from this server. Reading needs ``mirror:read``; bundles are placed with
``stockade airgap import`` (or copied into the folder) and exported with ``stockade airgap export``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from stockade.airgap.exports import ExportService, export_file_name
from stockade.airgap.status import airgap_mirrors, airgap_status
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.admin_common import admin_context
from stockade.web.ui.mirror_common import mirror_url, run_url
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
ACTIVE = ("pending", "running")


@router.get("/admin/airgap")
def airgap_page(request: Request, principal: CurrentPrincipal, container: ContainerDep) -> Response:
    def build() -> Response:
        settings = container.settings
        with container.read_factory() as session:
            status = airgap_status(session, principal, settings.airgap, settings.data_dir)
            mirrors = airgap_mirrors(session)
            service = ExportService(session, container.blobs, settings.signing, settings.data_dir)
            exports = [(row, export_file_name(row)) for row in service.list_exports(principal)]
        context = {
            "title": "Air-gap",
            **admin_context(principal, "airgap"),
            "status": status,
            "settle_s": settings.airgap.settle_s,
            "mirrors": [
                (m, mirror_url(m.name), run_url(m.name, m.run_id) if m.run_id else None)
                for m in mirrors
            ],
            "exports": exports,
            "refreshing": any(m.run_state in ACTIVE for m in mirrors),
        }
        return render(request, "airgap.html", context)

    return guarded(request, principal, build)
