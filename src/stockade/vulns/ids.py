"""Finding an advisory by the id a person types: its own id, else one of its aliases.

Feeds name the same vulnerability differently: OSV PyPI stores ``PYSEC-2021-76`` with the alias
``CVE-2021-21330``, GitHub ``GHSA-…`` with the same CVE alias, NVD the CVE itself. Users and the
issue's examples speak in CVE ids, so every place that takes an id (the API's ``/cves/{id}``,
curation, the CLI) resolves it here:

1. an advisory whose ``vuln_id`` is the id (case-insensitive; ids are upper-case by convention);
2. else the advisories listing it among their ``aliases``, by id; :func:`find_all` returns them
   all, :func:`find_vulnerability` the first.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, func, literal_column, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from stockade.vulns.models import Vulnerability as VulnRow

__all__ = ["find_all", "find_vulnerability"]


def _normal(vuln_id: str) -> str:
    return vuln_id.strip().upper()


def find_vulnerability(session: Session, vuln_id: str) -> VulnRow | None:
    """The advisory named ``vuln_id`` (its id, or else an alias); None when none is stored."""
    found = find_all(session, vuln_id)
    return found[0] if found else None


def find_all(session: Session, vuln_id: str) -> list[VulnRow]:
    """Every advisory ``vuln_id`` names: the one with that id alone, else those aliasing it."""
    wanted = _normal(vuln_id)
    if not wanted:
        return []
    own = session.scalar(select(VulnRow).where(func.upper(VulnRow.vuln_id) == wanted))
    if own is not None:
        return [own]
    query = select(VulnRow).where(_has_alias(session, wanted)).order_by(VulnRow.vuln_id)
    return list(session.scalars(query))


def _has_alias(session: Session, alias: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(VulnRow.aliases, JSONB).contains([alias])
    listed = func.json_each(VulnRow.aliases).table_valued("value").alias("listed")
    return exists(
        select(literal_column("1")).select_from(listed).where(func.upper(listed.c.value) == alias)
    )
