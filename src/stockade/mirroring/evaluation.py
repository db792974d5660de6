"""The one evaluation of a mirror's upstream records, shared by runs, dry runs and explain
(SPEC §6): the same policies, guard and lookups, so a dry run and a run cannot disagree about what
they both know.

What only a download can tell (link scripts of a file never read) is reported as *undecided*:
an active run downloads those files and applies the policies again; a passive mirror keeps them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from stockade.mirroring.contents import KnownLinkScripts, known_link_scripts
from stockade.mirroring.inputs import UpstreamSubdir
from stockade.mirroring.job import MirrorJob
from stockade.mirroring.upstream import Verdict, evaluate_records, upstream_files
from stockade.policies.engine import VulnerabilityLookup

UNDECIDED_LINK_SCRIPTS = "link scripts unknown until the file is downloaded"


def needs_link_scripts(job: MirrorJob) -> bool:
    return any(p.no_link_scripts for p in job.policies)


def known_links(
    session: Session, job: MirrorJob, parsed: dict[str, UpstreamSubdir]
) -> KnownLinkScripts | None:
    """What we know of the link scripts of the upstream files (from contents read before)."""
    if not needs_link_scripts(job):
        return None
    return known_link_scripts(session, upstream_files(parsed))


def evaluate_job(
    session: Session,
    job: MirrorJob,
    parsed: dict[str, UpstreamSubdir],
    vulnerabilities: VulnerabilityLookup,
    now: datetime,
) -> tuple[Verdict, KnownLinkScripts | None]:
    """The verdict a run reaches before it downloads anything, and the link-script knowledge it
    used (None when no policy asks about link scripts)."""
    links = known_links(session, job, parsed)
    verdict = evaluate_records(job, parsed, vulnerabilities, now, link_scripts=links)
    return verdict, links


def undecided(verdict: Verdict, links: KnownLinkScripts | None) -> dict[str, list[str]]:
    """Kept records whose link scripts are unknown (per subdir, sorted): an active run reads them
    after downloading and may still exclude them."""
    if links is None:
        return {}
    return {
        sd: sorted(fn for fn in kept if links.has_link_scripts(fn) is None)
        for sd, kept in verdict.kept_records.items()
    }
