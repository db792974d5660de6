"""Vulnerability reports (SPEC §7): of an environment (a :class:`~stockade.vulns.trees.Tree`) and
of a channel; JSON and CSV renderings.

A finding is one stored match (``vuln_matches``) of a package of the environment, with the
advisory's id, aliases, summary, best score and its CVSS version, severity band, KEV flag, the
match's curation status and the shortest path from a root. Only ``reported`` and ``active``
findings count, as in the per-artifact summaries (``matcher.OPEN_STATUSES``); ``cleared``,
``mitigated`` and ``disputed`` ones are listed with ``counts: false`` and left out of the summary's
severity counts, of the highest score and of each package's own and reachable scores.

Per package, the report shows its own highest score beside the highest score reachable through its
dependencies, with the advisory and the path to the package that carries it.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.channels.models import Channel as ChannelRow
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError
from stockade.vulns.aliases import group_spellings, merged_aliases, source_versions
from stockade.vulns.display import display_summary
from stockade.vulns.envfiles import EnvironmentInput, packages_for
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.models import VulnMatch
from stockade.vulns.store import chunked
from stockade.vulns.summaries import OPEN_STATUSES, worse
from stockade.vulns.trees import Node, Tree, TreeBuilder, channel_name_of, check_platform

__all__ = [
    "ChannelReport",
    "EnvironmentReport",
    "Finding",
    "Reachable",
    "channel_report",
    "csv_cell",
    "environment_report",
    "render_csv",
    "render_json",
]

FINDING_COLUMNS = (
    "vuln_id",
    "aliases",
    "summary",
    "score",
    "cvss_version",
    "score_source",
    "severity",
    "kev",
    "status",
    "counts",
    "package",
    "version",
    "build",
    "channel",
    "subdir",
    "filename",
    "path",
)


@dataclass
class Finding:
    vuln_id: str
    aliases: list[str]
    summary: str
    score: float | None
    cvss_version: str | None
    score_source: str | None
    severity: str | None
    kev: bool
    status: str
    counts: bool
    package: str
    version: str
    build: str
    channel: str | None
    subdir: str | None
    filename: str | None
    path: list[str]


@dataclass
class Reachable:
    score: float | None  # None: only advisories without a CVSS vector are reachable
    severity: str | None
    vuln_id: str
    package: str
    path: list[str]


@dataclass
class PackageEntry:
    name: str
    version: str
    build: str
    channel: str | None
    subdir: str | None
    filename: str | None
    sha256: str | None
    md5: str | None
    license: str | None
    known: bool
    path: list[str]
    depends: list[str]
    score: float | None = None
    severity: str | None = None
    reachable: Reachable | None = None
    note: str | None = None


@dataclass
class Summary:
    packages: int
    unknown: int
    findings: int
    by_severity: dict[str, int]
    by_status: dict[str, int]
    highest: Reachable | None


@dataclass
class EnvironmentReport:
    kind: str
    platform: str
    channels: list[str]
    ignored_channels: list[str]
    roots: list[str]
    generated_at: str
    summary: Summary
    packages: list[PackageEntry]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Advisory:
    """The merged view of an alias group (``vulns.aliases``): its primary id, every other id,
    the group's score and the record it came from."""

    vuln_id: str
    aliases: list[str]
    summary: str
    score: float | None
    cvss_version: str | None
    score_source: str | None
    severity: str | None
    kev: bool


def _advisories(session: Session, rows: Sequence[VulnRow]) -> dict[int, _Advisory]:
    spelled = group_spellings(session, {r.alias_group for r in rows})
    versions = source_versions(session, rows)
    return {
        row.id: _Advisory(
            vuln_id=row.alias_group,
            aliases=merged_aliases(row.alias_group, [], spelled.get(row.alias_group, [])),
            summary=display_summary(row.summary, row.details),
            score=row.group_score,
            cvss_version=versions.get(row.id),
            score_source=row.score_source,
            severity=row.group_severity,
            kev=row.kev,
        )
        for row in rows
    }


def _once_per_group(
    found: Sequence[tuple[int, VulnRow, str, str]],
) -> dict[tuple[int, str], tuple[VulnRow, str, str]]:
    """``(artifact id, row, status, origin)`` -> one entry per artifact and alias group: the
    primary record if it matched, with the most severe status of the group's matches (and that
    match's status origin)."""
    kept: dict[tuple[int, str], tuple[VulnRow, str, str]] = {}
    for artifact_id, row, status, origin in found:
        key = (artifact_id, row.alias_group)
        seen = kept.get(key)
        if seen is None:
            kept[key] = (row, status, origin)
            continue
        best = row if row.vuln_id == row.alias_group else seen[0]
        kept[key] = (best, status, origin) if worse(status, seen[1]) else (best, *seen[1:])
    return kept


def matches_of(
    session: Session, artifact_ids: Sequence[int]
) -> dict[int, list[tuple[_Advisory, str]]]:
    """Artifact id -> [(vulnerability, match status)], each alias group once, withdrawn
    advisories left out."""
    rows: list[tuple[int, VulnRow, str, str]] = []
    for part in chunked(sorted(set(artifact_ids))):
        query = (
            select(VulnMatch.artifact_id, VulnMatch.status, VulnRow)
            .join(VulnRow, VulnRow.id == VulnMatch.vulnerability_id)
            .where(VulnMatch.artifact_id.in_(list(part)), VulnRow.withdrawn.is_(None))
        )
        rows += [(aid, row, status, "") for aid, status, row in session.execute(query)]
    kept = _once_per_group(rows)
    advisories = _advisories(session, [row for row, *_ in kept.values()])
    found: dict[int, list[tuple[_Advisory, str]]] = defaultdict(list)
    for (artifact_id, _), (row, status, _origin) in kept.items():
        found[artifact_id].append((advisories[row.id], status))
    return found


def environment_report(
    session: Session,
    tree: Tree,
    *,
    kind: str,
    ignored_channels: Iterable[str] = (),
    notes: Iterable[str] = (),
    name: str | None = None,
) -> EnvironmentReport:
    paths = tree.paths()
    matches = matches_of(session, [n.artifact_id for n in tree.nodes.values() if n.artifact_id])
    findings: list[Finding] = []
    own: dict[str, tuple[float | None, str, str | None]] = {}  # name -> (score, vuln id, severity)
    for node in sorted(tree.nodes.values(), key=lambda n: n.name):
        for advisory, status in sorted(
            matches.get(node.artifact_id or -1, []), key=lambda m: m[0].vuln_id
        ):
            counts = status in OPEN_STATUSES
            findings.append(_finding(node, advisory, status, counts, paths[node.name]))
            if counts:
                best = own.get(node.name)
                if best is None or _rank(advisory.score) > _rank(best[0]):
                    own[node.name] = (advisory.score, advisory.vuln_id, advisory.severity)
    findings.sort(key=lambda f: (-(f.score or -1), f.vuln_id, f.package))
    packages = [_entry(tree, node, paths[node.name], own) for node in _ordered(tree, paths)]
    return EnvironmentReport(
        kind=kind,
        platform=tree.platform,
        channels=list(tree.channels),
        ignored_channels=list(ignored_channels),
        roots=list(tree.roots),
        generated_at=utcnow().isoformat(),
        summary=_summary(packages, findings, paths, own),
        packages=packages,
        findings=findings,
        notes=[*notes, *tree.notes],
        name=name,
    )


def _ordered(tree: Tree, paths: dict[str, list[str]]) -> list[Node]:
    return sorted(tree.nodes.values(), key=lambda n: (len(paths[n.name]), n.name))


def _finding(
    node: Node, advisory: _Advisory, status: str, counts: bool, path: list[str]
) -> Finding:
    return Finding(
        vuln_id=advisory.vuln_id,
        aliases=advisory.aliases,
        summary=advisory.summary,
        score=advisory.score,
        cvss_version=advisory.cvss_version,
        score_source=advisory.score_source,
        severity=advisory.severity,
        kev=advisory.kev,
        status=status,
        counts=counts,
        package=node.name,
        version=node.version,
        build=node.build,
        channel=node.channel,
        subdir=node.subdir,
        filename=node.filename,
        path=list(path),
    )


def _rank(score: float | None) -> float:
    """Scores order findings; an open finding without a score still outranks none at all."""
    return -1.0 if score is None else score


def reachable_from(
    tree: Tree, start: str, own: dict[str, tuple[float | None, str, str | None]]
) -> Reachable | None:
    """The highest score among ``start`` and everything it depends on, with the path to it
    (an unscored open finding when nothing reachable has a score)."""
    best: Reachable | None = None
    for name, path in tree.reach(start).items():
        mine = own.get(name)
        if mine is None:
            continue
        better = best is None or _rank(mine[0]) > _rank(best.score)
        if not better and best is not None and _rank(mine[0]) == _rank(best.score):
            better = len(path) < len(best.path)
        if better:
            best = Reachable(mine[0], mine[2], mine[1], name, list(path))
    return best


def _entry(
    tree: Tree, node: Node, path: list[str], own: dict[str, tuple[float | None, str, str | None]]
) -> PackageEntry:
    mine = own.get(node.name)
    return PackageEntry(
        name=node.name,
        version=node.version,
        build=node.build,
        channel=node.channel,
        subdir=node.subdir,
        filename=node.filename,
        sha256=node.sha256,
        md5=node.md5,
        license=node.license,
        known=node.known,
        path=list(path),
        depends=list(tree.edges.get(node.name, [])),
        score=mine[0] if mine else None,
        severity=mine[2] if mine else None,
        reachable=reachable_from(tree, node.name, own),
        note=node.note if not node.known else None,
    )


def _summary(
    packages: list[PackageEntry],
    findings: list[Finding],
    paths: dict[str, list[str]],
    own: dict[str, tuple[float | None, str, str | None]],
) -> Summary:
    severity = Counter(f.severity or "unscored" for f in findings if f.counts)
    status = Counter(f.status for f in findings)
    highest: Reachable | None = None
    for name, (score, vuln_id, band) in sorted(own.items()):
        path = paths[name]
        mine, theirs = (
            (_rank(score), -len(path)),
            ((_rank(highest.score), -len(highest.path)) if highest else None),
        )
        if theirs is None or mine > theirs:
            highest = Reachable(score, band, vuln_id, name, list(path))
    return Summary(
        packages=len(packages),
        unknown=sum(1 for p in packages if not p.known),
        findings=len(findings),
        by_severity=dict(sorted(severity.items())),
        by_status=dict(sorted(status.items())),
        highest=highest,
    )


# ------------------------------------------------------------------------------- channel


CHANNEL_COLUMNS = (
    "channel",
    "subdir",
    "filename",
    "package",
    "version",
    "build",
    "vuln_id",
    "aliases",
    "summary",
    "score",
    "cvss_version",
    "score_source",
    "severity",
    "kev",
    "status",
    "status_origin",
    "counts",
)


@dataclass
class ChannelReport:
    channel: str
    generated_at: str
    artifacts: int
    by_severity: dict[str, int]
    by_status: dict[str, int]
    rows: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def channel_report(session: Session, channel: ChannelRow) -> ChannelReport:
    """One row per (artifact, vulnerability) of every matched artifact of the channel."""
    query = (
        select(Artifact, VulnMatch.status, VulnMatch.status_origin, VulnRow)
        .join(VulnMatch, VulnMatch.artifact_id == Artifact.id)
        .join(VulnRow, VulnRow.id == VulnMatch.vulnerability_id)
        .where(
            Artifact.channel_id == channel.id,
            Artifact.servable.is_(True),  # quarantined: in no report
            VulnRow.withdrawn.is_(None),
        )
    )
    matched = session.execute(query).all()
    by_id = {a.id: a for a, *_ in matched}
    kept = _once_per_group([(a.id, row, st, origin) for a, st, origin, row in matched])
    advisories = _advisories(session, [row for row, *_ in kept.values()])
    rows: list[dict[str, Any]] = []
    artifacts: set[tuple[str, str]] = set()
    for (aid, _), (vuln, status, origin) in kept.items():
        artifact, advisory = by_id[aid], advisories[vuln.id]
        subdir, filename = artifact.subdir, artifact.filename
        name, version, build = artifact.name, artifact.version, artifact.build
        artifacts.add((subdir, filename))
        rows.append(
            {
                "channel": channel.name,
                "subdir": subdir,
                "filename": filename,
                "package": name,
                "version": version,
                "build": build,
                "vuln_id": advisory.vuln_id,
                "aliases": advisory.aliases,
                "summary": advisory.summary,
                "score": advisory.score,
                "cvss_version": advisory.cvss_version,
                "score_source": advisory.score_source,
                "severity": advisory.severity,
                "kev": advisory.kev,
                "status": status,
                "status_origin": origin,
                "counts": status in OPEN_STATUSES,
            }
        )
    rows.sort(key=lambda r: (r["subdir"], r["filename"], r["vuln_id"]))
    return ChannelReport(
        channel=channel.name,
        generated_at=utcnow().isoformat(),
        artifacts=len(artifacts),
        by_severity=dict(
            sorted(Counter(r["severity"] or "unscored" for r in rows if r["counts"]).items())
        ),
        by_status=dict(sorted(Counter(r["status"] for r in rows).items())),
        rows=rows,
    )


# ----------------------------------------------------------------------------- rendering


def render_json(report: EnvironmentReport | ChannelReport) -> bytes:
    return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2)


def csv_cell(value: object) -> object:
    """Spreadsheets run cells starting with = + - @ (and tab, CR) as formulas: quote them."""
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render_csv(report: EnvironmentReport | ChannelReport) -> bytes:
    """Findings one per row; an environment's unknown packages follow with status ``unknown``."""
    out = io.StringIO()
    if isinstance(report, ChannelReport):
        writer = csv.DictWriter(out, fieldnames=CHANNEL_COLUMNS)
        writer.writeheader()
        for row in report.rows:
            writer.writerow({k: csv_cell(row[k]) for k in CHANNEL_COLUMNS})
        return out.getvalue().encode()
    writer = csv.DictWriter(out, fieldnames=FINDING_COLUMNS)
    writer.writeheader()
    for finding in report.findings:
        row = asdict(finding)
        row["path"] = " -> ".join(finding.path)
        writer.writerow({k: csv_cell(row[k]) for k in FINDING_COLUMNS})
    for package in report.packages:
        if package.known:
            continue
        unknown = dict.fromkeys(FINDING_COLUMNS, "") | {
            "status": "unknown",
            "package": package.name,
            "version": package.version,
            "build": package.build,
            "subdir": package.subdir or "",
            "filename": package.filename or "",
            "summary": package.note or "not in the chosen channels",
            "path": " -> ".join(package.path),
            "counts": False,
        }
        writer.writerow({k: csv_cell(v) for k, v in unknown.items()})
    return out.getvalue().encode()


# ---------------------------------------------------------------------------- orchestration


class NoChannelError(InvalidInputError):
    code = "report:no-channel"
    title = "No channel to report against"


def report_environment(
    session: Session,
    principal: Principal,
    env: EnvironmentInput,
    *,
    channels: Sequence[str] = (),
    platform: str | None = None,
) -> EnvironmentReport:
    """Resolve ``env`` against channels the principal can read and report on it.

    ``channels`` (names, or URLs of our ``/conda/NAME``) must each be readable (else "not
    found"); without them, the file's own channels that exist here and are readable are used,
    the others reported as ignored. Lock files then fall back to every readable channel.
    """
    builder = TreeBuilder(session, principal)
    ignored: list[str] = []
    notes = list(env.notes)
    if channels:
        chosen = [builder.readable(channel_name_of(c) or c) for c in channels]
    else:
        chosen, ignored = builder.pick(env.channels)
    if not chosen and env.pinned:
        chosen = builder.readable_all()
        notes.append("no channel given: every channel you can read was searched")
    if not chosen:
        raise NoChannelError(
            "none of the environment's channels is here: pass channel=NAME",
            ignored=ignored,
        )
    target = _platform(env, platform)
    if env.pinned:
        tree = builder.pin(packages_for(env, target), chosen, target)
    else:
        tree = builder.solve(env.specs, chosen, target)
    return environment_report(
        session, tree, kind=env.kind, ignored_channels=ignored, notes=notes, name=env.name
    )


def _platform(env: EnvironmentInput, platform: str | None) -> str:
    if platform:
        check_platform(platform)
        if env.pinned and env.platforms and platform not in env.platforms:
            raise InvalidInputError(
                f"the file locks no packages for {platform}; it has {', '.join(env.platforms)}",
                code="report:bad-platform",
                field="platform",
            )
        return platform
    if env.platforms:
        return check_platform("linux-64" if "linux-64" in env.platforms else env.platforms[0])
    return "linux-64"


@dataclass
class PackageTree:
    """One artifact's tree: its own highest score beside the highest reachable one."""

    channel: str
    name: str
    version: str
    build: str
    subdir: str
    score: float | None
    severity: str | None
    reachable: Reachable | None
    solve_error: str | None
    report: EnvironmentReport

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def package_tree(
    session: Session,
    principal: Principal,
    channel: str,
    name: str,
    version: str,
    build: str,
    subdir: str,
    *,
    platform: str | None = None,
) -> PackageTree:
    tree, error = TreeBuilder(session, principal).artifact_tree(
        channel, name, version, build, subdir, platform=platform
    )
    report = environment_report(session, tree, kind="package", name=f"{name}-{version}-{build}")
    root = next(p for p in report.packages if p.name == tree.roots[0])
    return PackageTree(
        channel=channel,
        name=root.name,
        version=root.version,
        build=root.build,
        subdir=subdir,
        score=root.score,
        severity=root.severity,
        reachable=root.reachable,
        solve_error=error,
        report=report,
    )
