"""The policy engine's vulnerability lookup over the database (``policies.engine.VulnerabilityLookup``).

Mirror runs ask about upstream records, which are not artifacts yet, so a ``(name, version)`` is
answered from two sources, and every ``(score, status)`` pair of both counts:

- advisories targeting ``name`` (``vuln_targets``) whose affected ranges contain ``version``
  (``ranges.affects``), with the status of the latest curation for that advisory, package and
  version that covers every build (``builds`` unset), else ``reported``;
- stored matches of the artifacts with that name and version, in their own statuses (a curation for
  chosen builds, or ``security.json``, decide those).

``max_score`` is the highest CVSS best score among pairs in the asked statuses, each advisory
scored as its alias group (``vulns.aliases``: ``PYSEC-2018-66`` takes the NVD score of
``CVE-2018-1000656``), and a curation of any id of a group applies to all of them (advisories
whose group carries no CVSS vector have no score and are left out of it); ``has_uncurated`` is
true when any pair is ``reported``. Data is loaded per name, once, and kept until
:meth:`version` sees the revision of ``vuln_state`` change (every store, match and curation write
advances it); call :meth:`version` before a run, as mirror runs do, to see fresh data.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.models import Artifact
from stockade.vulns.matcher import Advisory, load_advisories
from stockade.vulns.models import Curation, MatchStatus, NameMapEntry, VulnMatch, VulnTarget
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.names import NameMap, load_shipped
from stockade.vulns.store import build_name_map, revision

__all__ = ["DbVulnerabilityLookup"]

_Pairs = list[tuple[float | None, str]]


class _NameData:
    """Everything about one conda name: its advisories, version-wide curations, artifact matches."""

    def __init__(self, session: Session, name: str, names: NameMap) -> None:
        vids = list(
            session.scalars(
                select(VulnTarget.vulnerability_id).where(VulnTarget.conda_name == name)
            )
        )
        self.advisories: list[Advisory] = load_advisories(session, vids, names) if vids else []
        self.curated: dict[tuple[str, str], str] = {}  # (alias group, version) -> status
        query = (
            select(VulnRow.alias_group, Curation.version, Curation.status)
            .join(VulnRow, VulnRow.id == Curation.vulnerability_id)
            .where(Curation.package == name, Curation.builds.is_(None))
            .order_by(Curation.created_at, Curation.id)
        )
        for group, version, status in session.execute(query):
            self.curated[(group, version)] = status  # later rows win
        self.matched: dict[str, _Pairs] = defaultdict(list)
        query_matches = (
            select(Artifact.version, VulnMatch.status, VulnRow.group_score)
            .join(VulnMatch, VulnMatch.artifact_id == Artifact.id)
            .join(VulnRow, VulnRow.id == VulnMatch.vulnerability_id)
            .where(Artifact.name == name)
        )
        for version, status, score in session.execute(query_matches):
            self.matched[version].append((score, status))

    def pairs(self, name: str, version: str) -> _Pairs:
        found = list(self.matched.get(version, ()))
        for advisory in self.advisories:
            if advisory.affects(name, version):
                status = self.curated.get((advisory.group, version), MatchStatus.REPORTED.value)
                found.append((advisory.best_score, status))
        return found


class DbVulnerabilityLookup:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self._revision: int | None = None
        self._targeted: frozenset[str] | None = None
        self._names: NameMap | None = None
        self._by_name: dict[str, _NameData] = {}
        self._pairs: dict[tuple[str, str], _Pairs] = {}

    def version(self) -> str:
        """``vulns:<revision>``; clears the cached data when the revision moved."""
        with self.factory() as session:
            current = revision(session)
        if current != self._revision:
            self._forget()
            self._revision = current
        return f"vulns:{current}"

    def max_score(self, name: str, version: str, statuses: frozenset[str]) -> float | None:
        scores = [s for s, st in self._lookup(name, version) if st in statuses and s is not None]
        return max(scores) if scores else None

    def has_uncurated(self, name: str, version: str) -> bool:
        return any(st == MatchStatus.REPORTED.value for _, st in self._lookup(name, version))

    def _forget(self) -> None:
        self._targeted = None
        self._names = None
        self._by_name.clear()
        self._pairs.clear()

    def _lookup(self, name: str, version: str) -> _Pairs:
        key = (name, version)
        known = self._pairs.get(key)
        if known is not None:
            return known
        if self._targeted is None:
            self._load_targets()
        if name not in (self._targeted or ()):
            return []
        data = self._by_name.get(name)
        if data is None:
            with self.factory() as session:
                data = self._by_name[name] = _NameData(session, name, self._name_map(session))
        found = self._pairs[key] = data.pairs(name, version)
        return found

    def _load_targets(self) -> None:
        with self.factory() as session:
            self._targeted = frozenset(
                session.scalars(select(VulnTarget.conda_name).distinct())
            ) | frozenset(
                session.scalars(
                    select(Artifact.name)
                    .join(VulnMatch, VulnMatch.artifact_id == Artifact.id)
                    .distinct()
                )
            )
            if self._revision is None:
                self._revision = revision(session)

    def _name_map(self, session: Session) -> NameMap:
        if self._names is None:
            rows = session.execute(
                select(NameMapEntry.conda_name, NameMapEntry.identifier, NameMapEntry.origin)
            ).all()
            self._names = build_name_map(rows) if rows else load_shipped()
        return self._names
