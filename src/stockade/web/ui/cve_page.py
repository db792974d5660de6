"""An advisory's page, ``/cves/{id}``: what the feed says, where it matches, and curation.

The feed's text (summary, details) is shown as escaped text with its line breaks, never as HTML or
Markdown; reference links are kept only when they are http(s). Matches are grouped channel →
package → version → builds, from the channels the viewer can read. Curators (``cve:write``) set a
status for a version, or for the builds a glob selects, with a required note; every decision stays
in the history below the form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.browse import version_key
from stockade.container import Container
from stockade.core.handoff import hand_off
from stockade.db.engine import transaction
from stockade.vulns.advisory_queries import (
    check_known_version,
    curation_history,
    show_vulnerability,
)
from stockade.vulns.advisory_views import AffectedArtifact, worst_of
from stockade.vulns.curation import CurationService
from stockade.vulns.display import product_name, spell_range
from stockade.vulns.model import severity_band
from stockade.vulns.security import BlobSecurityReader
from stockade.web.deps import ContainerDep, CurrentPrincipal
from stockade.web.ui.cves import CVES
from stockade.web.ui.forms import FormError, clean, path_part, submit
from stockade.web.ui.render import guarded, render, safe_url

router = APIRouter(include_in_schema=False)
CURATED = ("active", "mitigated", "cleared", "disputed", "reported")
NOTICES = {"curated": "The decision was recorded; the builds it covers took its status."}
NOTE_MAX = 4000


def cve_url(vuln_id: str) -> str:
    return f"{CVES}/{path_part(vuln_id)}"


# ---------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ScoreView:
    version: str
    vector: str
    base_score: float | None
    severity: str | None
    source: str


@dataclass(frozen=True)
class AffectedView:
    """One product the feed names, with its ranges spelled out (``>=0, <3.7.4``)."""

    product: str
    cpes: list[str]
    ranges: list[str]
    versions: list[str]
    default_status: str


@dataclass
class VersionGroup:
    version: str
    builds: list[AffectedArtifact] = field(default_factory=list)

    @property
    def worst(self) -> str:
        return worst_of(b.status for b in self.builds) or ""


@dataclass
class PackageGroup:
    name: str
    versions: list[VersionGroup] = field(default_factory=list)


@dataclass
class ChannelGroup:
    name: str
    packages: list[PackageGroup] = field(default_factory=list)
    artifacts: int = 0


def group_artifacts(artifacts: list[AffectedArtifact]) -> list[ChannelGroup]:
    """Channel → package → version (newest first) → builds."""
    tree: dict[str, dict[str, dict[str, VersionGroup]]] = {}
    for a in artifacts:
        versions = tree.setdefault(a.channel, {}).setdefault(a.name, {})
        versions.setdefault(a.version, VersionGroup(a.version)).builds.append(a)
    groups = []
    for channel in sorted(tree):
        group = ChannelGroup(channel)
        for name in sorted(tree[channel]):
            versions = tree[channel][name]
            ordered = sorted(versions, key=version_key, reverse=True)
            group.packages.append(PackageGroup(name, [versions[v] for v in ordered]))
            group.artifacts += sum(len(v.builds) for v in versions.values())
        groups.append(group)
    return groups


def _score(raw: dict[str, Any]) -> ScoreView:
    value = raw.get("base_score")
    score = float(value) if isinstance(value, int | float) else None
    return ScoreView(
        version=str(raw.get("version", "")),
        vector=str(raw.get("vector", "")),
        base_score=score,
        severity=severity_band(score).value if score is not None else None,
        source=str(raw.get("source", "")),
    )


def _affected(raw: dict[str, Any]) -> AffectedView:
    return AffectedView(
        product=product_name(raw),
        cpes=[str(c) for c in raw.get("cpes", [])],
        ranges=[spell_range(r) for r in raw.get("ranges", []) if isinstance(r, dict)],
        versions=[str(v) for v in raw.get("versions", [])],
        default_status=str(raw.get("default_status", "unaffected")),
    )


def _references(raw: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(url, tags) of the http(s) references; other schemes are left out."""
    found = []
    for ref in raw:
        url = safe_url(ref.get("url"))
        if url is not None:
            found.append((url, ", ".join(str(t) for t in ref.get("tags", []))))
    return found


def cve_context(session: Session, principal: Principal, vuln_id: str) -> dict[str, Any]:
    vuln = show_vulnerability(session, principal, vuln_id)
    return {
        "title": vuln.id,
        "vuln": vuln,
        "scores": [_score(s) for s in vuln.scores],
        "references": _references(vuln.references),
        "affected": [_affected(a) for a in vuln.affected if isinstance(a, dict)],
        "groups": group_artifacts(vuln.artifacts),
        "history": list(reversed(curation_history(session, principal, vuln.id))),
        "may_curate": AccessService().allowed(principal, Permission.CVE_WRITE),
        "statuses": CURATED,
    }


def cve_page(
    request: Request,
    container: Container,
    principal: Principal,
    vuln_id: str,
    *,
    error: FormError | None = None,
) -> Response:
    with container.read_factory() as session:
        context = cve_context(session, principal, vuln_id)
    query = request.query_params
    prefill = {k: clean(query.get(k, ""), 256) for k in ("package", "version", "builds")}
    context.update(
        error=error,
        notice=None if error else NOTICES.get(query.get("ok", "")),
        prefill=prefill,
    )
    return render(request, "cve.html", context, status=error.status if error else 200)


@router.get(CVES + "/{vuln_id}")
def show_cve(
    request: Request, vuln_id: str, principal: CurrentPrincipal, container: ContainerDep
) -> Response:
    return guarded(request, principal, lambda: cve_page(request, container, principal, vuln_id))


# -------------------------------------------------------------------------------- curation


class CurationForm(BaseModel):
    package: str = ""
    version: str = ""
    builds: str = ""
    status: str = ""
    note: str = ""
    csrf_token: str = ""

    def shown_again(self) -> dict[str, str]:
        return self.model_dump(exclude={"csrf_token"})


def note_text(value: str) -> str:
    """The note as typed, lines kept, other control characters dropped."""
    lines = value.replace("\r\n", "\n").split("\n")
    return "\n".join("".join(c for c in ln if c.isprintable()) for ln in lines).strip()


@router.post(CVES + "/{vuln_id}/curations")
def curate(
    request: Request,
    vuln_id: str,
    form: Annotated[CurationForm, Form()],
    principal: CurrentPrincipal,
    container: ContainerDep,
) -> Response:
    back = cve_url(vuln_id)

    def change() -> Response:
        security = BlobSecurityReader(container.blobs)
        with transaction(container.factory) as session:
            AccessService(session).require(principal, Permission.CVE_WRITE)
            service = CurationService(session, security=security)
            service.find(vuln_id)  # an unknown advisory: not found, before the form's fields
            check_known_version(session, principal, form.package, form.version)
            _row, counts = service.curate(
                principal,
                vuln_id,
                clean(form.package, 256),
                clean(form.version, 128),
                form.status,
                note_text(form.note)[: NOTE_MAX + 1],
                builds=clean(form.builds, 257) or None,
            )
        # matches turned active: after the commit
        hand_off(container.dispatch_webhooks, counts.deliveries, "webhook deliveries")
        return RedirectResponse(f"{back}?ok=curated#history", status_code=303)

    def redraw(error: FormError) -> Response:
        return cve_page(request, container, principal, vuln_id, error=error)

    return submit(
        request,
        principal,
        form.csrf_token,
        back=back,
        change=change,
        redraw=redraw,
        form="curate",
        values=form.shown_again(),
    )
