"""A mirror's page, ``/mirrors/{name}``: settings, policies, the current run, history, exclusions.

The current run's progress is live: ``run-progress.js`` polls the run and its log through the API
while the run is pending or running. Without JavaScript the page refreshes itself every few
seconds, and only while a run is active. "Why is … not here?" is a GET form on the same page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.errors import StockadeError
from stockade.core.urls import redact_url
from stockade.mirroring.credentials import has_proxy_credentials
from stockade.mirroring.inputs import unpack_exclusions
from stockade.mirroring.models import Mirror, MirrorRunLog, MirrorSubdirState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService
from stockade.policies.service import PolicyService
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.forms import FormError, clean, notice_of
from stockade.web.ui.mirror_common import (
    COUNT_LABELS,
    HISTORY_COUNTS,
    MIRRORS,
    RunView,
    log_views,
    preview_service,
    rights_on,
    run_view,
)
from stockade.web.ui.render import guarded, render, sentence

router = APIRouter(include_in_schema=False)
HISTORY = 20
LOG_TAIL = 20
EXCLUSIONS = 50
EXPLAINED = 100
MODES = ("passive", "active")


@dataclass(frozen=True)
class Exclusion:
    subdir: str
    filename: str
    reasons: list[str]


@dataclass(frozen=True)
class Explained:
    """The answer to "why is … not here?" (``error`` when the question could not be asked)."""

    spec: str
    subdir: str
    results: list[Any]
    error: str | None = None


def exclusions_of(
    session: Session, container: Container, mirror: Mirror, package: str
) -> list[Exclusion]:
    """What the last completed run left out, filtered by package name, at most EXCLUSIONS."""
    states = session.scalars(
        select(MirrorSubdirState)
        .where(MirrorSubdirState.mirror_id == mirror.id)
        .order_by(MirrorSubdirState.subdir)
    ).all()
    found: list[Exclusion] = []
    for state in states:
        if not state.exclusions_sha256:
            continue
        excluded = unpack_exclusions(container.blobs.read_bytes(state.exclusions_sha256))
        for filename in sorted(excluded):
            if package and not filename.startswith(package + "-"):
                continue
            found.append(Exclusion(state.subdir, filename, [str(r) for r in excluded[filename]]))
            if len(found) >= EXCLUSIONS:
                return found
    return found


def explain(
    session: Session, container: Container, principal: Principal, channel: str, request: Request
) -> Explained | None:
    spec = clean(request.query_params.get("spec", ""), 1000)
    subdir = clean(request.query_params.get("subdir", ""), 64)
    if not spec:
        return None
    try:
        found = preview_service(session, container, request).explain(
            principal, channel, spec, subdir=subdir or None
        )
    except StockadeError as exc:
        return Explained(spec, subdir, [], sentence(exc.detail))
    return Explained(spec, subdir, found[:EXPLAINED])


def current_run(
    session: Session, runs: RunService, mirror: Mirror
) -> tuple[RunView | None, list[Any]]:
    """The active run, else the last one; with the tail of its log."""
    run = runs.active_run(mirror.id) or runs.mirrors.last_runs([mirror.id]).get(mirror.id)
    if run is None:
        return None, []
    lines = session.scalars(
        select(MirrorRunLog)
        .where(MirrorRunLog.run_id == run.id)
        .order_by(MirrorRunLog.id.desc())
        .limit(LOG_TAIL)
    ).all()
    return run_view(run, mirror.name), log_views(list(reversed(lines)))


def settings_of(service: MirrorService, mirror: Mirror) -> dict[str, Any]:
    return {
        "source": redact_url(mirror.source_url),
        "has_token": mirror.source_token_enc is not None,
        "mode": mirror.mode,
        "subdirs": ", ".join(mirror.subdirs),
        "schedule": mirror.schedule or "",
        "next_run_at": mirror.next_run_at if mirror.enabled and mirror.schedule else None,
        "proxy": redact_url(mirror.proxy) if mirror.proxy else "",
        "has_proxy_credentials": has_proxy_credentials(mirror),
        "ca_bundle": mirror.ca_bundle or "",
        "concurrency": str(mirror.concurrency),
        "enabled": mirror.enabled,
        "channel": service.channel_of(mirror).name,
    }


def mirror_context(
    request: Request, container: Container, principal: Principal, name: str, session: Session
) -> dict[str, Any]:
    runs = RunService(session, container.secrets)
    mirror = runs.mirrors.get(principal, name, Permission.MIRROR_READ)
    channel = runs.mirrors.channel_of(mirror)
    policies = PolicyService(session)
    current, log = current_run(session, runs, mirror)
    package = clean(request.query_params.get("package", ""), 256)
    history = runs.list_runs(principal, name, limit=HISTORY)
    return {
        "title": f"Mirror {mirror.name}",
        "mirror": mirror,
        "settings": settings_of(runs.mirrors, mirror),
        "rights": rights_on(principal, channel),
        "channel_policies": [p.name for p in policies.for_channel(channel.id)],
        "own_policies": [p.name for p in policies.for_mirror(mirror.id)],
        "current": current,
        "log": log,
        "history": [run_view(r, mirror.name) for r in history],
        "package_filter": package,
        "exclusions": exclusions_of(session, container, mirror, package),
        "explained": explain(session, container, principal, channel.name, request),
        "subdirs": list(mirror.subdirs),
        "count_labels": COUNT_LABELS,
        "history_counts": HISTORY_COUNTS,
        "modes": MODES,
    }


def mirror_page(
    request: Request,
    container: Container,
    principal: Principal,
    name: str,
    *,
    error: FormError | None = None,
) -> Response:
    with container.read_factory() as session:
        context = mirror_context(request, container, principal, name, session)
    current: RunView | None = context["current"]
    live = current is not None and current.active
    context.update(
        error=error, notice=None if error else notice_of(request), refresh=live and not error
    )
    status = error.status if error else 200
    scripts = ("run-progress.js",) if live else ()
    return render(request, "mirror.html", context, status=status, scripts=scripts)


@router.get(MIRRORS + "/{name}")
def show_mirror(
    request: Request, name: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: mirror_page(request, container, principal, name))
