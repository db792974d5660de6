"""One run's page, ``/mirrors/{name}/runs/{run_id}``: steps, counts, exclusions by reason, the log.

Live while the run is pending or running, as on the mirror's page (``run-progress.js``, or a
refresh every few seconds without JavaScript).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.mirroring.runs import RunService
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.forms import notice_of
from stockade.web.ui.mirror_common import (
    COUNT_LABELS,
    MIRRORS,
    LogView,
    log_views,
    rights_on,
    run_number,
    run_of,
    run_view,
)
from stockade.web.ui.render import guarded, render

router = APIRouter(include_in_schema=False)
LOG_LIMIT = 20_000  # lines shown on the page; the API pages through more
LOG_PAGE = 5000


def full_log(runs: RunService, principal: Principal, run_id: int) -> list[LogView]:
    lines: list[LogView] = []
    after = 0
    while len(lines) < LOG_LIMIT:
        page = runs.logs(principal, run_id, after_id=after, limit=LOG_PAGE)
        lines.extend(log_views(page))
        if len(page) < LOG_PAGE:
            break
        after = page[-1].id
    return lines


def run_page(
    request: Request, container: Container, principal: Principal, name: str, run_id: str
) -> Response:
    number = run_number(run_id)
    with container.read_factory() as session:
        mirror, run = run_of(session, container, principal, name, number)
        runs = RunService(session, container.secrets)
        view = run_view(run, mirror.name)
        context = {
            "title": f"Run {view.id} · {mirror.name}",
            "mirror": mirror,
            "run": view,
            "rights": rights_on(principal, runs.mirrors.channel_of(mirror)),
            "log": full_log(runs, principal, number),
            "count_labels": COUNT_LABELS,
            "by_reason": sorted(
                (view.counts.get("excluded_by_reason") or {}).items(), key=lambda kv: -kv[1]
            ),
            "error": None,
            "notice": notice_of(request),
            "refresh": view.active,
        }
    scripts = ("run-progress.js",) if view.active else ()
    return render(request, "mirror_run.html", context, scripts=scripts)


@router.get(MIRRORS + "/{name}/runs/{run_id}")
def show_run(
    request: Request, name: str, run_id: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(
        request, principal, lambda: run_page(request, container, principal, name, run_id)
    )
