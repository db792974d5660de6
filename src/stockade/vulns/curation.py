"""Curators' decisions: a status per advisory and package version, optionally for chosen builds.

Decisions are appended, never changed (:class:`~stockade.vulns.models.Curation`): the history is the
table. A decision is kept on the record curated and applies to every record of its alias group
(``vulns.aliases``): clearing ``CVE-2018-1000656`` for flask 0.12.2 clears ``PYSEC-2018-66`` too.
The latest decision whose selector covers a build decides its status (``vulns.matcher``).
``curate`` needs ``cve:write``, a non-blank note, and writes a ``cve.curate`` audit event with the
status before (the previous decision for the same selector, if any) and after. Matches it turns
``active`` are announced to the channels' webhooks in the same transaction (``vulns.matcher``);
the returned counts list the deliveries, which the caller dispatches after its commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.errors import InvalidInputError
from stockade.vulns.aliases import group_rows
from stockade.vulns.errors import VulnerabilityNotFoundError
from stockade.vulns.ids import find_vulnerability
from stockade.vulns.matcher import MatchCounts, Matcher
from stockade.vulns.models import Curation, MatchStatus
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.security import SecurityReader

__all__ = ["CURATED_STATUSES", "CurationService"]

#: What a curator may set; ``reported`` puts a version back to "not reviewed".
CURATED_STATUSES = frozenset(s.value for s in MatchStatus)
NOTE_MAX = 4000
GLOB_MAX = 256


class CurationService:
    def __init__(self, session: Session, *, security: SecurityReader | None = None) -> None:
        self.session = session
        self.access = AccessService(session)
        self.matcher = Matcher(session, security=security)

    def curate(
        self,
        principal: Principal,
        vuln_id: str,
        package: str,
        version: str,
        status: str,
        note: str,
        builds: str | None = None,
    ) -> tuple[Curation, MatchCounts]:
        """Record a decision and re-status the matches it covers."""
        self.access.require(principal, Permission.CVE_WRITE)
        vuln = self.find(vuln_id)
        package, version, builds, note = _check(package, version, status, note, builds)
        before = self.latest(vuln.id, package, version, builds)
        row = Curation(
            vulnerability_id=vuln.id,
            package=package,
            version=version,
            builds=builds,
            status=status,
            note=note,
            created_by_id=principal.user_id,
        )
        self.session.add(row)
        self.session.flush()
        counts = self.matcher.restatus(vuln.id, package, version)
        self.matcher.store.bump()
        selector = {"package": package, "version": version, "builds": builds}
        AuditLog(self.session).record(
            "cve.curate",
            principal,
            Target("vulnerability", vuln.vuln_id, vuln.id),
            before={**selector, "status": before.status, "note": before.note} if before else None,
            after={**selector, "status": status, "note": note},
            details={"restatused": counts.restatused},
        )
        return row, counts

    def find(self, vuln_id: str) -> VulnRow:
        """The advisory by its id, else by an alias (a CVE id finds the PYSEC record aliasing it)."""
        row = find_vulnerability(self.session, vuln_id)
        if row is None:
            raise VulnerabilityNotFoundError(f"vulnerability {vuln_id!r} not found")
        return row

    def latest(
        self, vuln_row_id: int, package: str, version: str, builds: str | None
    ) -> Curation | None:
        """The last decision for this selector on any record of the advisory's alias group."""
        rows = group_rows(self.session, [vuln_row_id]).get(vuln_row_id, [vuln_row_id])
        query = (
            select(Curation)
            .where(
                Curation.vulnerability_id.in_(rows),
                Curation.package == package,
                Curation.version == version,
                Curation.builds.is_(None) if builds is None else Curation.builds == builds,
            )
            .order_by(Curation.id.desc())
            .limit(1)
        )
        return self.session.scalar(query)

    def history(self, principal: Principal, vuln_id: str) -> Sequence[Curation]:
        """Every decision on an advisory and on the records aliasing it, oldest first."""
        self.access.require(principal, Permission.CVE_READ)
        vuln = self.find(vuln_id)
        rows = group_rows(self.session, [vuln.id]).get(vuln.id, [vuln.id])
        query = select(Curation).where(Curation.vulnerability_id.in_(rows)).order_by(Curation.id)
        return self.session.scalars(query).all()


def _check(
    package: str, version: str, status: str, note: str, builds: str | None
) -> tuple[str, str, str | None, str]:
    if status not in CURATED_STATUSES:
        allowed = ", ".join(sorted(CURATED_STATUSES))
        raise InvalidInputError(f"status must be one of {allowed}", field="status")
    clean_note = (note or "").strip()
    if not clean_note:
        raise InvalidInputError("a curation needs a note saying why", field="note")
    if len(clean_note) > NOTE_MAX:
        raise InvalidInputError(f"the note is longer than {NOTE_MAX} characters", field="note")
    name, ver = (package or "").strip().lower(), (version or "").strip()
    if not name:
        raise InvalidInputError("a curation names a package", field="package")
    if not ver:
        raise InvalidInputError("a curation names a version", field="version")
    glob = builds.strip() if builds else None
    if glob is not None and (len(glob) > GLOB_MAX or not glob.isprintable()):
        raise InvalidInputError("builds is a printable glob of build strings", field="builds")
    return name, ver, glob or None, clean_note
