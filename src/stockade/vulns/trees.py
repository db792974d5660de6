"""Dependency trees (SPEC §7): solve specs or pin lock files against our channels, in-process.

The solver is py-rattler's, fed from the database: the records of the chosen channels are read
from ``artifacts`` (with the channel's repodata patches applied, as publication does), only for
the names reachable from the asked ones, written as a small ``repodata.json`` per channel subdir
into a temporary folder and solved with ``solve_with_sparse_repodata``. No HTTP call to ourselves.
Channel order is priority order (strict, as conda's default).

Lock files (conda-lock, pixi, explicit URL lists) are not solved: each locked package is looked
up among the chosen channels (by subdir and filename, else name, version and build; the sha256
when the file gives one must agree) and the edges come from the records' ``depends`` resolved
among the locked packages. A locked package we do not hold stays in the tree as *unknown*, with
the dependencies its lock file states.

A :class:`Tree` is a graph of packages by name: roots (the asked specs, or the locked packages
nothing depends on), nodes and edges. :meth:`Tree.paths` gives each package's shortest path from
a root; :meth:`Tree.reach` the shortest path from one package to each of its dependencies.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rattler import (
    BuildString,
    Channel,
    GenericVirtualPackage,
    MatchSpec,
    PackageName,
    SparseRepoData,
    Version,
    solve_with_sparse_repodata,
)
from rattler.exceptions import SolverError
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.auth.permissions import Level, Permission
from stockade.auth.principal import Principal
from stockade.channels.errors import ArtifactNotFoundError
from stockade.channels.models import Artifact, RepodataPatch
from stockade.channels.models import Channel as ChannelRow
from stockade.channels.service import ChannelService, channel_ref
from stockade.conda.records import (
    decoded_problem,
)
from stockade.core.errors import InvalidInputError, TooManyRequestsError
from stockade.vulns.envfiles import SPEC_ERRORS, LockedPackage, dependency_name
from stockade.vulns.store import chunked
from stockade.vulns.tree_records import Row, SkippedRecords, patched, repodata

__all__ = [
    "PLATFORMS",
    "Node",
    "Tree",
    "TreeBuilder",
    "UnsatisfiableError",
    "virtual_packages",
]

PLATFORMS = (
    "linux-64",
    "linux-aarch64",
    "linux-ppc64le",
    "linux-s390x",
    "linux-armv7l",
    "osx-64",
    "osx-arm64",
    "win-64",
    "win-arm64",
    "noarch",
)
SOLVE_TIMEOUT = timedelta(seconds=60)
#: Solves running at once in this process; more wait up to SOLVE_WAIT_S, then get a 429.
#: (Reports are open to anonymous callers; a solve may take seconds of CPU.)
MAX_SOLVES = 4
SOLVE_WAIT_S = 10.0
_SOLVES = threading.BoundedSemaphore(MAX_SOLVES)


class SolverBusyError(TooManyRequestsError):
    code = "report:busy"
    title = "The solver is busy"


MAX_NAMES = 20000
_BASE = "https://stockade.invalid/conda/"  # never fetched: it only tells records apart
_ARCHSPEC = {
    "linux-64": "x86_64",
    "linux-aarch64": "aarch64",
    "linux-ppc64le": "ppc64le",
    "linux-s390x": "s390x",
    "linux-armv7l": "armv7l",
    "osx-64": "x86_64",
    "osx-arm64": "arm64",
    "win-64": "x86_64",
    "win-arm64": "arm64",
}


class UnsatisfiableError(InvalidInputError):
    code = "report:unsatisfiable"
    title = "Unsatisfiable specs"


class UnknownPlatformError(InvalidInputError):
    code = "report:bad-platform"
    title = "Unknown platform"


def check_platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise UnknownPlatformError(
            f"platform {platform!r} is not one of {', '.join(PLATFORMS)}", field="platform"
        )
    return platform


def virtual_packages(platform: str) -> list[GenericVirtualPackage]:
    """The virtual packages a machine of ``platform`` has, at sensible default versions."""
    found: list[tuple[str, str, str]] = []
    if platform.startswith(("linux-", "osx-")):
        found.append(("__unix", "0", "0"))
    if platform.startswith("linux-"):
        found += [("__linux", "5.10", "0"), ("__glibc", "2.28", "0")]
    if platform.startswith("osx-"):
        found.append(("__osx", "11.0" if platform == "osx-arm64" else "10.15", "0"))
    if platform.startswith("win-"):
        found.append(("__win", "0", "0"))
    if platform in _ARCHSPEC:
        found.append(("__archspec", "1", _ARCHSPEC[platform]))
    return [GenericVirtualPackage(PackageName(n), Version(v), BuildString(b)) for n, v, b in found]


@dataclass
class Node:
    """One package of an environment; ``artifact_id`` is None for a package we do not hold."""

    name: str
    version: str
    build: str
    subdir: str | None
    channel: str | None
    filename: str | None
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None
    license: str | None = None
    depends: tuple[str, ...] = ()
    artifact_id: int | None = None
    note: str | None = None

    @property
    def known(self) -> bool:
        return self.artifact_id is not None


@dataclass
class Tree:
    platform: str
    roots: list[str]
    nodes: dict[str, Node]
    edges: dict[str, list[str]] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def link(self) -> None:
        """Edges from each node's ``depends`` to the packages of the environment they name."""
        self.edges = {
            name: sorted({dependency_name(d) for d in node.depends} & (self.nodes.keys() - {name}))
            for name, node in self.nodes.items()
        }

    def paths(self) -> dict[str, list[str]]:
        """Each package's shortest path from a root (a breadth-first walk from all roots)."""
        found: dict[str, list[str]] = {}
        queue: deque[str] = deque()
        for root in self.roots:
            if root in self.nodes and root not in found:
                found[root] = [root]
                queue.append(root)
        self._walk(found, queue)
        for name in sorted(self.nodes.keys() - found.keys()):  # cut off (cycles): its own root
            found[name] = [name]
            queue.append(name)
            self._walk(found, queue)
        return found

    def reach(self, start: str) -> dict[str, list[str]]:
        """The shortest path from ``start`` to each package it depends on, itself included."""
        found = {start: [start]}
        self._walk(found, deque([start]))
        return found

    def _walk(self, found: dict[str, list[str]], queue: deque[str]) -> None:
        while queue:
            name = queue.popleft()
            for dep in self.edges.get(name, ()):
                if dep not in found:
                    found[dep] = [*found[name], dep]
                    queue.append(dep)


class TreeBuilder:
    """Builds trees against channels the principal can read."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self.channels = ChannelService(session)
        #: Records left out because they are invalid (stored before validation was complete):
        #: said in the tree's notes instead of failing the whole tree.
        self.skipped = SkippedRecords()

    # ----------------------------------------------------------------------- channels

    def readable(self, name: str) -> ChannelRow:
        """The channel when the principal can read it; otherwise 'not found' (never a leak)."""
        return self.channels.get(self.principal, name, Permission.CHANNEL_READ)

    def readable_all(self) -> list[ChannelRow]:
        return self.channels.list_visible(self.principal)

    def pick(self, names: Iterable[str]) -> tuple[list[ChannelRow], list[str]]:
        """Channels from an environment file: (readable ones, the names ignored).

        ``https://host/conda/NAME`` and ``…/conda/t/<token>/NAME`` name our channel NAME; a
        channel that does not exist or that the caller cannot read is ignored alike.
        """
        found: list[ChannelRow] = []
        ignored: list[str] = []
        for raw in names:
            name = channel_name_of(raw)
            row = self.channels.find(name) if name else None
            if row is None or not self._can_read(row):
                ignored.append(_shown(raw))
            elif row.id not in {c.id for c in found}:
                found.append(row)
        return found, ignored

    def _can_read(self, row: ChannelRow) -> bool:
        level = self.channels.access.channel_level(self.principal, channel_ref(row))
        return level >= Level.READ

    # ---------------------------------------------------------------------- solving

    def solve(
        self,
        specs: Sequence[str],
        channels: Sequence[ChannelRow],
        platform: str,
        *,
        roots: Sequence[str] | None = None,
    ) -> Tree:
        check_platform(platform)
        subdirs = list(dict.fromkeys([platform, "noarch"]))
        rows = self._closure(channels, subdirs, {dependency_name(s) for s in specs})
        by_url: dict[str, Row] = {}
        with tempfile.TemporaryDirectory(prefix="stockade-solve-") as tmp:
            sparse: list[SparseRepoData] = []
            for channel in channels:
                for subdir in subdirs:
                    group = rows.get((channel.id, subdir))
                    if not group:
                        continue
                    base = f"{_BASE}{channel.name}/"
                    path = Path(tmp) / f"{channel.id}-{subdir}.json"
                    path.write_bytes(repodata(subdir, group))
                    sparse.append(SparseRepoData(Channel(base), subdir, str(path)))
                    by_url.update({f"{base}{subdir}/{r.filename}": r for r in group.values()})
            if not sparse:
                names = ", ".join(sorted({dependency_name(s) for s in specs}))
                raise UnsatisfiableError(
                    f"no package named {names} in the chosen channels for {platform}"
                )
            records = self._run_solver(specs, sparse, platform)
        names_of = {c.id: c.name for c in channels}
        nodes: dict[str, Node] = {}
        for record in records:
            row = by_url.get(record.url)
            name = record.name.normalized
            nodes[name] = Node(
                name=name,
                version=str(record.version),
                build=str(record.build),
                subdir=record.subdir,
                channel=names_of[row.channel_id] if row else None,
                filename=record.file_name,
                url=None,
                sha256=row.sha256 if row else None,
                md5=row.md5 if row else None,
                license=record.license,
                depends=tuple(record.depends),
                artifact_id=row.artifact_id if row else None,
            )
        tree = Tree(
            platform=platform,
            roots=list(roots if roots is not None else _spec_roots(specs, nodes)),
            nodes=nodes,
            channels=[c.name for c in channels],
            notes=self.skipped.notes(),
        )
        tree.link()
        return tree

    @staticmethod
    def _run_solver(specs: Sequence[str], sparse: list[SparseRepoData], platform: str) -> list[Any]:
        try:  # parsed as the input was checked (lenient, like conda: ``jinja2 2.10``)
            parsed = [MatchSpec(spec) for spec in specs]
        except SPEC_ERRORS as exc:
            raise InvalidInputError(f"invalid spec: {exc}", field="specs") from None
        if not _SOLVES.acquire(timeout=SOLVE_WAIT_S):
            raise SolverBusyError(
                f"{MAX_SOLVES} environments are being solved already; try again shortly",
                retry_after=5,
            )
        try:
            return TreeBuilder._solve(parsed, sparse, platform)
        finally:
            _SOLVES.release()

    @staticmethod
    def _solve(parsed: list[MatchSpec], sparse: list[SparseRepoData], platform: str) -> list[Any]:
        solving = solve_with_sparse_repodata(
            parsed,
            sparse,
            virtual_packages=virtual_packages(platform),
            timeout=SOLVE_TIMEOUT,
        )
        try:
            return asyncio.run(solving)
        except SolverError as exc:
            message = " ".join(str(exc).split())
            raise UnsatisfiableError(f"the specs cannot be solved: {message}") from None

    def _closure(
        self, channels: Sequence[ChannelRow], subdirs: list[str], names: set[str]
    ) -> dict[tuple[int, str], dict[str, Row]]:
        """The (patched) records of ``names`` and of every name they depend on, transitively."""
        found: dict[tuple[int, str], dict[str, Row]] = defaultdict(dict)
        ids = [c.id for c in channels]
        seen: set[str] = set()
        pending = {n for n in names if not n.startswith("__")}
        patches = self._patches(ids, subdirs)
        while pending and ids:
            seen |= pending
            if len(seen) > MAX_NAMES:
                raise InvalidInputError(f"the environment names more than {MAX_NAMES} packages")
            batch: list[Row] = []
            for part in chunked(sorted(pending)):
                query = select(
                    Artifact.id,
                    Artifact.channel_id,
                    Artifact.subdir,
                    Artifact.filename,
                    Artifact.name,
                    Artifact.sha256,
                    Artifact.md5,
                    Artifact.record_json,
                ).where(
                    Artifact.channel_id.in_(ids),
                    Artifact.subdir.in_(subdirs),
                    Artifact.name.in_(list(part)),
                    Artifact.servable.is_(True),  # what clients can install, nothing held
                )
                for aid, cid, subdir, fn, name, sha, md5, rec in self.session.execute(query):
                    batch.append(Row(aid, cid, subdir, fn, name, sha, md5, {}, rec))
            pending = set()
            for row in self.skipped.valid(
                patched(self.skipped.decoded(batch), patches, self.skipped)
            ):
                found[(row.channel_id, row.subdir)][row.filename] = row
                for dep in row.record.get("depends") or ():
                    dep_name = dependency_name(str(dep))
                    if dep_name and not dep_name.startswith("__") and dep_name not in seen:
                        pending.add(dep_name)
        return found

    def _patches(
        self, ids: list[int], subdirs: list[str]
    ) -> dict[tuple[int, str], list[RepodataPatch]]:
        found: dict[tuple[int, str], list[RepodataPatch]] = defaultdict(list)
        if not ids:
            return found
        query = select(RepodataPatch).where(
            RepodataPatch.channel_id.in_(ids), RepodataPatch.subdir.in_(subdirs)
        )
        for patch in self.session.scalars(query):
            found[(patch.channel_id, patch.subdir)].append(patch)
        return found

    # ----------------------------------------------------------------------- pinning

    def pin(
        self, packages: Sequence[LockedPackage], channels: Sequence[ChannelRow], platform: str
    ) -> Tree:
        """A tree of locked packages, each mapped to an artifact of ``channels`` when we hold it."""
        names_of = {c.id: c.name for c in channels}
        rank = {c.id: i for i, c in enumerate(channels)}
        candidates = self._candidates(packages, list(names_of))
        nodes: dict[str, Node] = {}
        notes: list[str] = []
        for pkg in packages:
            options = candidates.get((pkg.name, pkg.version or "", pkg.build or ""), [])
            row, note = _choose(pkg, options, names_of, rank)
            if note:
                notes.append(note)
            nodes[pkg.name] = _pinned_node(pkg, row, names_of, note)
        tree = Tree(platform=platform, roots=[], nodes=nodes, channels=list(names_of.values()))
        tree.link()
        depended = {d for deps in tree.edges.values() for d in deps}
        tree.roots = [n for n in nodes if n not in depended]
        tree.notes = notes + self.skipped.notes()
        return tree

    def _candidates(
        self, packages: Sequence[LockedPackage], ids: list[int]
    ) -> dict[tuple[str, str, str], list[Row]]:
        found: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
        if not ids:
            return found
        names = sorted({p.name for p in packages})
        for part in chunked(names):
            query = select(
                Artifact.id,
                Artifact.channel_id,
                Artifact.subdir,
                Artifact.filename,
                Artifact.name,
                Artifact.sha256,
                Artifact.md5,
                Artifact.record_json,
                Artifact.version,
                Artifact.build,
            ).where(
                Artifact.channel_id.in_(ids),
                Artifact.name.in_(list(part)),
                Artifact.servable.is_(True),
            )
            rows: list[Row] = []
            keys: dict[int, tuple[str, str, str]] = {}
            for aid, cid, sd, fn, name, sha, md5, rec, version, build in self.session.execute(
                query
            ):
                rows.append(Row(aid, cid, sd, fn, name, sha, md5, {}, rec))
                keys[aid] = (name, version, build)
            for row in self.skipped.valid(self.skipped.decoded(rows)):
                found[keys[row.artifact_id]].append(row)
        return found

    # ------------------------------------------------------------------ one artifact

    def artifact_tree(
        self,
        channel: str,
        name: str,
        version: str,
        build: str,
        subdir: str,
        *,
        platform: str | None = None,
    ) -> tuple[Tree, str | None]:
        """The tree of one artifact: ``name ==version build`` solved for its own subdir and
        noarch (a noarch artifact: ``platform``, default linux-64), against every channel the
        caller can read, its own channel first. Returns the tree and the solver's message when
        the tree cannot be solved (the tree then holds the artifact alone)."""
        home = self.readable(channel)
        row = self.session.scalar(
            select(Artifact).where(
                Artifact.channel_id == home.id,
                Artifact.name == name.strip().lower(),
                Artifact.version == version,
                Artifact.build == build,
                Artifact.subdir == subdir,
                Artifact.servable.is_(True),
            )
        )
        if row is None:
            raise ArtifactNotFoundError(
                f"{name} {version} {build} ({subdir}) not found in channel {channel!r}"
            )
        target = subdir if subdir != "noarch" else check_platform(platform or "linux-64")
        record, problem = decoded_problem(row.record_json)
        if record is None:
            why = f"{row.subdir}/{row.filename} has an invalid record ({problem})"
            return _alone(row, home.name, target, (), note=why), why
        channels = [home, *(c for c in self.readable_all() if c.id != home.id)]
        spec = f"{row.name} =={row.version} {row.build}"
        try:
            return self.solve([spec], channels, target, roots=[row.name]), None
        except InvalidInputError as exc:  # unsatisfiable, or a spec rattler cannot read
            depends = tuple(record.get("depends") or ())
            return _alone(row, home.name, target, depends, notes=self.skipped.notes()), exc.detail


def _alone(
    row: Artifact,
    channel: str,
    platform: str,
    depends: tuple[str, ...],
    *,
    note: str | None = None,
    notes: list[str] | None = None,
) -> Tree:
    """The tree of one artifact by itself (its dependencies could not be solved)."""
    node = Node(
        name=row.name,
        version=row.version,
        build=row.build,
        subdir=row.subdir,
        channel=channel,
        filename=row.filename,
        sha256=row.sha256,
        md5=row.md5,
        license=row.license,
        depends=depends,
        artifact_id=row.id,
    )
    tree = Tree(platform, [row.name], {row.name: node}, channels=[channel])
    tree.notes = [note] if note else list(notes or [])
    tree.link()
    return tree


# ------------------------------------------------------------------------------ helpers


def channel_name_of(raw: str) -> str | None:
    """Our channel name in an environment file's channel entry (a name, or a URL to us)."""
    text = raw.strip().rstrip("/")
    if "://" not in text:
        return text or None
    path = text.split("://", 1)[1].split("/", 1)[1] if "/" in text.split("://", 1)[1] else ""
    segments = [s for s in path.split("/") if s]
    if "conda" not in segments:
        return None
    rest = segments[len(segments) - segments[::-1].index("conda") :]
    if rest[:1] == ["t"]:
        rest = rest[2:]
    return "/".join(rest) or None


def _shown(raw: str) -> str:
    """A channel entry as reported back: a URL without any ``/t/<token>/`` part."""
    text = raw.strip()
    if "/t/" in text:
        head, _, tail = text.partition("/t/")
        return f"{head}/t/<token>/{tail.partition('/')[2]}"
    return text[:300]


def _spec_roots(specs: Sequence[str], nodes: dict[str, Node]) -> list[str]:
    return [n for n in dict.fromkeys(dependency_name(s) for s in specs) if n in nodes]


def _choose(
    pkg: LockedPackage,
    options: list[Row],
    names_of: dict[int, str],
    rank: dict[int, int],
) -> tuple[Row | None, str | None]:
    """The artifact a locked package is: same subdir, the sha256 when given, its channel first."""
    fitting = [r for r in options if pkg.subdir in (None, r.subdir)]
    if pkg.sha256:
        same = [r for r in fitting if r.sha256 == pkg.sha256]
        if not same and fitting:
            return None, f"{pkg.name} {pkg.version} {pkg.build}: sha256 differs from ours"
        fitting = same
    if not fitting:
        return None, None

    def order(row: Row) -> tuple[int, int, int]:
        return (
            0 if names_of[row.channel_id] == pkg.channel else 1,
            0 if row.filename == pkg.filename else 1,
            rank[row.channel_id],
        )

    return min(fitting, key=order), None


def _pinned_node(
    pkg: LockedPackage, row: Row | None, names_of: dict[int, str], note: str | None
) -> Node:
    if row is None:
        return Node(
            name=pkg.name,
            version=pkg.version or "",
            build=pkg.build or "",
            subdir=pkg.subdir,
            channel=None,
            filename=pkg.filename,
            url=pkg.url,
            sha256=pkg.sha256,
            md5=pkg.md5,
            depends=pkg.depends,
            note=note or "not in the chosen channels",
        )
    return Node(
        name=pkg.name,
        version=pkg.version or str(row.record.get("version", "")),
        build=pkg.build or str(row.record.get("build", "")),
        subdir=row.subdir,
        channel=names_of[row.channel_id],
        filename=row.filename,
        url=pkg.url,
        sha256=row.sha256,
        md5=row.md5,
        license=row.record.get("license"),
        depends=tuple(str(d) for d in row.record.get("depends") or ()),
        artifact_id=row.artifact_id,
    )
