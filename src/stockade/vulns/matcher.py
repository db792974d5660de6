"""Advisories against artifacts, both ways, with the status of each match (SPEC §7).

A match ``(advisory, artifact)`` exists when an affected entry of the advisory names a product that
the name map turns into the artifact's conda name, and :func:`~stockade.vulns.ranges.affects` says
the artifact's version is affected. Every channel is searched: matches are per artifact.

The status of a match, first rule that applies:

1. the latest curation (by its time, then id; imported decisions keep theirs) for the advisory,
   the artifact's package name and its exact version, whose ``builds`` glob is unset or matches
   the artifact's build string (``fnmatch``, case-sensitive): that curation's status, origin
   ``curation``;
2. the artifact's ``info/security.json`` lists the advisory's id or one of its aliases in
   ``vulns_mitigated``: ``mitigated``, origin ``security-json``;
3. else ``reported``, origin ``auto``.

Statuses are derived, never stored as the only copy of a decision: re-syncing a feed or re-matching
an artifact recomputes them from the curation history, so a curated ``cleared`` survives, and a new
build of a version curated ``active`` for chosen builds only is ``reported``.

Two entry points: :meth:`Matcher.match_vulnerabilities` (new or changed advisories against all
artifacts of their target names) and :meth:`Matcher.match_artifacts` (new artifacts against the
advisories targeting their names, via ``vuln_targets``). Both reconcile the stored matches of what
they were given: missing ones are added, stale ones deleted, changed statuses updated, and the
per-artifact summaries of every touched artifact recomputed.

Notifications (SPEC §7): in the same transaction, new open matches and matches turned ``active``
are written to the webhook outbox (``vulns.webhook_outbox.enqueue_events``), one delivery per
webhook, event, advisory and channel. The channels' webhooks are read once per matcher, and only
when something is to be announced; ``MatchCounts.deliveries`` lists the deliveries written, for
the caller to dispatch after its commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact
from stockade.channels.scanstate import ScanStatus
from stockade.core.clock import utcnow
from stockade.vulns.aliases import group_ids, group_rows, once_per_group
from stockade.vulns.model import Affected
from stockade.vulns.models import (
    Curation,
    MatchStatus,
    StatusOrigin,
    VulnMatch,
    VulnTarget,
    WebhookEvent,
)
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.names import NameMap
from stockade.vulns.ranges import affects
from stockade.vulns.security import SecurityReader, stored_mitigations
from stockade.vulns.store import VulnStore, chunked, load, lock_writers
from stockade.vulns.summaries import OPEN_STATUSES, refresh_summaries, summary_row
from stockade.vulns.webhook_outbox import WebhookIndex, enqueue_events

__all__ = [
    "OPEN_STATUSES",
    "Advisory",
    "MatchCounts",
    "Matcher",
    "load_advisories",
    "summary_row",
]


@dataclass
class MatchCounts:
    added: int = 0
    removed: int = 0
    restatused: int = 0
    #: Webhook deliveries written with these matches: the caller dispatches them after commit.
    deliveries: list[int] = field(default_factory=list)

    def __iadd__(self, other: MatchCounts) -> MatchCounts:
        self.added += other.added
        self.removed += other.removed
        self.restatused += other.restatused
        self.deliveries += other.deliveries
        return self


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    id: int
    name: str
    version: str
    build: str
    sha256: str
    filename: str
    channel_id: int
    subdir: str


@dataclass
class Advisory:
    """A stored advisory ready to match: its affected entries grouped by conda name."""

    row_id: int
    vuln_id: str
    ids: frozenset[str]  # ids and aliases of every record of its alias group, upper-cased
    best_score: float | None  # the alias group's score
    group: str = ""  # ``alias_group``: curations of any record of the group apply
    by_name: dict[str, list[Affected]] = field(default_factory=dict)
    _seen: dict[tuple[str, str], bool] = field(default_factory=dict)

    def affects(self, name: str, version: str) -> bool:
        key = (name, version)
        known = self._seen.get(key)
        if known is None:
            entries = self.by_name.get(name, ())
            known = self._seen[key] = any(_affects(a, version) for a in entries)
        return known


def _affects(affected: Affected, version: str) -> bool:
    """:func:`affects`, where a malformed stored range affects nothing instead of failing the
    whole batch of artifacts being matched (one bad record must not hide the others)."""
    try:
        return affects(affected, version)
    except (ValueError, TypeError, AttributeError):
        return False


def load_advisories(session: Session, row_ids: Iterable[int], names: NameMap) -> list[Advisory]:
    """Advisories by row id; a withdrawn one has no names (it matches nothing)."""
    found: list[Advisory] = []
    for part in chunked(sorted(set(row_ids))):
        rows = session.scalars(select(VulnRow).where(VulnRow.id.in_(part))).all()
        shared = group_ids(session, {r.alias_group for r in rows})
        for row in rows:
            vuln = load(row)
            advisory = Advisory(
                row.id,
                row.vuln_id,
                frozenset(i.upper() for i in vuln.ids) | shared.get(row.alias_group, frozenset()),
                row.group_score,
                row.alias_group,
            )
            if not vuln.is_withdrawn:
                for affected in vuln.affected:
                    for name in names.conda_names_for(affected):
                        advisory.by_name.setdefault(name, []).append(affected)
            found.append(advisory)
    return found


def _ref(row: Any) -> ArtifactRef:
    return ArtifactRef(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


_ARTIFACT_COLUMNS = (
    Artifact.id,
    Artifact.name,
    Artifact.version,
    Artifact.build,
    Artifact.sha256,
    Artifact.filename,
    Artifact.channel_id,
    Artifact.subdir,
)


class StatusResolver:
    """The status of a match per the module docstring; curations loaded in bulk."""

    def __init__(self, session: Session, security: SecurityReader | None) -> None:
        self.session = session
        self.security = security
        self._curations: dict[tuple[str, str, str], list[tuple[str | None, str]]] = {}
        self._stored: dict[str, frozenset[str]] = {}

    def load_mitigations(self, artifacts: Iterable[ArtifactRef]) -> None:
        """``vulns_mitigated`` as package reading kept it, for these artifacts' contents."""
        self._stored = stored_mitigations(self.session, (a.sha256 for a in artifacts))

    def load(self, groups: Iterable[str], names: Iterable[str]) -> None:
        """Curations of every record of these alias groups, for these package names."""
        self._curations.clear()
        wanted = sorted(set(names))
        if not wanted:
            return
        grouped: dict[tuple[str, str, str], list[tuple[str | None, str]]] = defaultdict(list)
        for part in chunked(sorted(set(groups))):
            for name_part in chunked(wanted):
                query = (
                    select(
                        VulnRow.alias_group,
                        Curation.package,
                        Curation.version,
                        Curation.builds,
                        Curation.status,
                    )
                    .join(VulnRow, VulnRow.id == Curation.vulnerability_id)
                    .where(VulnRow.alias_group.in_(part), Curation.package.in_(name_part))
                    .order_by(Curation.created_at.desc(), Curation.id.desc())
                )
                for vid, package, version, builds, status in self.session.execute(query):
                    grouped[(vid, package, version)].append((builds, status))
        self._curations = dict(grouped)

    def status(self, advisory: Advisory, artifact: ArtifactRef) -> tuple[str, str]:
        key = (advisory.group, artifact.name, artifact.version)
        for builds, status in self._curations.get(key, ()):
            if builds is None or fnmatchcase(artifact.build, builds):
                return status, StatusOrigin.CURATION.value
        mitigated = self._stored.get(artifact.sha256)
        if mitigated is None and self.security is not None:  # contents read before it was kept
            mitigated = self.security(artifact.sha256, artifact.filename)
        if mitigated and advisory.ids & mitigated:
            return MatchStatus.MITIGATED.value, StatusOrigin.SECURITY_JSON.value
        return MatchStatus.REPORTED.value, StatusOrigin.AUTO.value


class Matcher:
    def __init__(
        self,
        session: Session,
        *,
        security: SecurityReader | None = None,
        store: VulnStore | None = None,
    ) -> None:
        self.session = session
        self.store = store or VulnStore(session)
        self.resolver = StatusResolver(session, security)
        self._locked = False
        self._hooks: WebhookIndex | None = None  # loaded on the first new match or activation

    def _one_writer(self) -> None:
        if not self._locked:
            lock_writers(self.session)  # see store.lock_writers
        self._locked = True

    def match_vulnerabilities(self, vuln_row_ids: Sequence[int]) -> MatchCounts:
        """Re-match advisories (new, changed, withdrawn) against every artifact of their names."""
        self._one_writer()
        counts = MatchCounts()
        names = self.store.name_map()
        for part in chunked(sorted(set(vuln_row_ids)), 200):
            advisories = load_advisories(self.session, part, names)
            wanted = sorted({n for a in advisories for n in a.by_name})
            artifacts = self._artifacts_named(wanted)
            existing = self._existing(VulnMatch.vulnerability_id.in_(part))
            counts += self._reconcile(advisories, artifacts, existing)
            # the group's score may have moved (a new alias carries a better one): recount
            self.refresh_summaries(sorted({aid for _, _, aid in existing}))
        return counts

    def match_artifacts(self, artifact_ids: Sequence[int]) -> MatchCounts:
        """Match artifacts against the advisories targeting their names (learning their purls)."""
        self._one_writer()
        counts = MatchCounts()
        learned = self.store.learn_from_metadata(artifact_ids)
        retargeted = self.store.retarget_for(learned)
        if retargeted:  # the names they newly target may have older artifacts too
            counts += self.match_vulnerabilities(retargeted)
        names = self.store.name_map()
        for part in chunked(sorted(set(artifact_ids))):
            artifacts = [
                _ref(r)
                for r in self.session.execute(
                    select(*_ARTIFACT_COLUMNS).where(Artifact.id.in_(part))
                )
            ]
            wanted = sorted({a.name for a in artifacts})
            vids: set[int] = set()
            for name_part in chunked(wanted):
                vids.update(
                    self.session.scalars(
                        select(VulnTarget.vulnerability_id).where(
                            VulnTarget.conda_name.in_(name_part)
                        )
                    )
                )
            advisories = load_advisories(self.session, vids, names)
            existing = self._existing(VulnMatch.artifact_id.in_(part))
            counts += self._reconcile(advisories, artifacts, existing)
        return counts

    def restatus(self, vuln_row_id: int, package: str, version: str) -> MatchCounts:
        """Recompute the statuses of the matches on ``package`` ``version`` of an advisory and
        of every record of its alias group (a curation of one id decides them all)."""
        self._one_writer()
        names = self.store.name_map()
        rows = group_rows(self.session, [vuln_row_id]).get(vuln_row_id, [vuln_row_id])
        advisories = load_advisories(self.session, rows, names)
        query = (
            select(*_ARTIFACT_COLUMNS)
            .join(VulnMatch, VulnMatch.artifact_id == Artifact.id)
            .where(
                VulnMatch.vulnerability_id.in_(rows),
                Artifact.name == package,
                Artifact.version == version,
            )
            .distinct()
        )
        artifacts = [_ref(r) for r in self.session.execute(query)]
        if not advisories or not artifacts:
            return MatchCounts()
        existing = self._existing(
            VulnMatch.vulnerability_id.in_(rows),
            VulnMatch.artifact_id.in_([a.id for a in artifacts]),
        )
        return self._reconcile(advisories, artifacts, existing)

    def _existing(self, *where: ColumnElement[bool]) -> list[tuple[int, int, int]]:
        query = select(VulnMatch.id, VulnMatch.vulnerability_id, VulnMatch.artifact_id)
        return [(m, v, a) for m, v, a in self.session.execute(query.where(*where))]

    def _artifacts_named(self, names: Sequence[str]) -> list[ArtifactRef]:
        found: list[ArtifactRef] = []
        for part in chunked(names):
            # a mirror run's staged rows are matched once the run admits them (jobs/queue.py)
            query = select(*_ARTIFACT_COLUMNS).where(
                Artifact.name.in_(part), Artifact.scan_status != ScanStatus.STAGED
            )
            found += [_ref(r) for r in self.session.execute(query)]
        return found

    def _reconcile(
        self,
        advisories: list[Advisory],
        artifacts: list[ArtifactRef],
        existing: Sequence[tuple[int, int, int]],
    ) -> MatchCounts:
        """Make the stored matches among ``existing`` equal to what the advisories say now."""
        by_name: dict[str, list[ArtifactRef]] = defaultdict(list)
        for artifact in artifacts:
            by_name[artifact.name].append(artifact)
        self.resolver.load((a.group for a in advisories), by_name)
        targeted = {name for advisory in advisories for name in advisory.by_name}
        self.resolver.load_mitigations(a for a in artifacts if a.name in targeted)
        wanted: dict[tuple[int, int], tuple[str, str]] = {}
        for advisory in advisories:
            for name in advisory.by_name:
                for artifact in by_name.get(name, ()):
                    if advisory.affects(name, artifact.version):
                        key = (advisory.row_id, artifact.id)
                        wanted[key] = self.resolver.status(advisory, artifact)
        return self._write(wanted, existing, {a.id: a for a in artifacts})

    def _write(
        self,
        wanted: dict[tuple[int, int], tuple[str, str]],
        existing: Sequence[tuple[int, int, int]],
        refs: dict[int, ArtifactRef],
    ) -> MatchCounts:
        counts = MatchCounts()
        have = {(vid, aid): mid for mid, vid, aid in existing}
        stale = [mid for key, mid in have.items() if key not in wanted]
        touched = {key[1] for key in have if key not in wanted}
        for part in chunked(stale):
            self.session.execute(delete(VulnMatch).where(VulnMatch.id.in_(part)))
        counts.removed = len(stale)
        current = self._statuses([mid for key, mid in have.items() if key in wanted])
        changes: dict[tuple[str, str], list[int]] = defaultdict(list)
        now = utcnow()
        new_rows: list[dict[str, object]] = []
        created: list[tuple[tuple[int, int], str]] = []  # new matches, for webhooks
        activated: list[tuple[int, int]] = []  # matches turned active, for webhooks
        for key, (status, origin) in wanted.items():
            mid = have.get(key)
            if mid is None:
                new_rows.append(
                    {
                        "vulnerability_id": key[0],
                        "artifact_id": key[1],
                        "status": status,
                        "status_origin": origin,
                        "matched_at": now,
                        "updated_at": now,
                    }
                )
                created.append((key, status))
                touched.add(key[1])
            elif current.get(mid) != (status, origin):
                changes[(status, origin)].append(mid)
                touched.add(key[1])
                if status == MatchStatus.ACTIVE.value and current.get(mid, ("",))[0] != status:
                    activated.append(key)
        _insert_ignoring_duplicates(self.session, new_rows)
        counts.added = len(new_rows)
        for (status, origin), ids in changes.items():
            for part in chunked(ids):
                self.session.execute(
                    update(VulnMatch)
                    .where(VulnMatch.id.in_(part))
                    .values(status=status, status_origin=origin, updated_at=now)
                )
            counts.restatused += len(ids)
        if touched:
            self.refresh_summaries(sorted(touched))
            self.store.bump()
        if created or activated:
            counts.deliveries += self._announce(created, activated, refs)
        return counts

    def _announce(
        self,
        created: list[tuple[tuple[int, int], str]],
        activated: list[tuple[int, int]],
        refs: dict[int, ArtifactRef],
    ) -> list[int]:
        """Webhook deliveries, in this transaction: new open matches, and matches turned active.

        A match that starts out cleared, mitigated or disputed (a curation or the package's
        ``security.json`` already decided) is not announced as new, nor a match of a record whose
        alias group already matched the artifact; each is announced under its group's primary.
        """
        if self._hooks is None:
            self._hooks = WebhookIndex.load(self.session)
        if not self._hooks:
            return []
        opened = [(key, s) for key, s in created if s in OPEN_STATUSES and key[1] in refs]
        # records that alias each other are one vulnerability: announced once, as their group
        first = once_per_group(self.session, [key for key, _ in opened], skip_known=True)
        matched = [(first[key], refs[key[1]], s) for key, s in opened if key in first]
        turned = once_per_group(
            self.session, [key for key in activated if key[1] in refs], skip_known=False
        )
        active = [(vid, refs[key[1]], MatchStatus.ACTIVE.value) for key, vid in turned.items()]
        ids = enqueue_events(self.session, self._hooks, WebhookEvent.MATCHED, matched)
        return ids + enqueue_events(self.session, self._hooks, WebhookEvent.ACTIVE, active)

    def _statuses(self, match_ids: list[int]) -> dict[int, tuple[str, str]]:
        found: dict[int, tuple[str, str]] = {}
        for part in chunked(match_ids):
            query = select(VulnMatch.id, VulnMatch.status, VulnMatch.status_origin).where(
                VulnMatch.id.in_(part)
            )
            found.update({mid: (s, o) for mid, s, o in self.session.execute(query)})
        return found

    def refresh_summaries(self, artifact_ids: Sequence[int]) -> None:
        """Recompute the per-artifact summaries (``vulns.summaries``)."""
        refresh_summaries(self.session, artifact_ids)


def _dialect_insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, object]]) -> None:
    """New matches in one executemany (Core, no ORM bookkeeping); a row another transaction has
    inserted meanwhile (a feed sync and an upload's matching at once) is left as it is."""
    if not rows:
        return
    table = VulnMatch.__table__
    statement = _dialect_insert(session)(table).on_conflict_do_nothing(
        index_elements=["vulnerability_id", "artifact_id"]
    )
    connection = session.connection()
    for part in chunked(rows, 5000):
        connection.execute(statement, list(part))
