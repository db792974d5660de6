"""Read-only views for browsing: channel overviews, package listings, builds (search:
``stockade.search``).

Nothing here checks access by itself except :meth:`BrowseService.overview`, which lists the
channels the principal may read; callers get a channel through ``ChannelService.get`` first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rattler import Version
from rattler.exceptions import InvalidVersionError
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel, PackageContent, SubdirIndex
from stockade.channels.service import ChannelService
from stockade.core.errors import NotFoundError


class PackageNotFoundError(NotFoundError):
    code = "package:not-found"


@dataclass(frozen=True)
class ChannelSummary:
    channel: Channel
    package_count: int


@dataclass(frozen=True)
class PackageSummary:
    """One package name in a channel: its latest version, where it is built, how many builds."""

    name: str
    latest_version: str
    subdirs: tuple[str, ...]
    build_count: int
    summary: str | None
    license: str | None


@dataclass(frozen=True)
class PackageListing:
    packages: list[PackageSummary]
    total: int  # names matching the filter, over all pages
    offset: int
    limit: int


def version_key(version: str) -> tuple[int, Any]:
    """Sort key for conda versions; strings rattler cannot parse sort below every real version."""
    try:
        return (1, Version(version))
    except InvalidVersionError:
        return (0, version)


def build_sort_key(artifact: Artifact) -> tuple[Any, ...]:
    """Newest first when used with ``reverse=True``: version, then build number."""
    return (version_key(artifact.version), artifact.build_number, artifact.build)


@dataclass(frozen=True)
class _Row:
    name: str
    version: str
    subdir: str
    build_number: int
    summary: str | None
    license: str | None


def summarize(name: str, rows: Sequence[_Row]) -> PackageSummary:
    latest = max(rows, key=lambda r: (version_key(r.version), r.build_number))
    return PackageSummary(
        name=name,
        latest_version=latest.version,
        subdirs=tuple(sorted({r.subdir for r in rows})),
        build_count=len(rows),
        summary=latest.summary or next((r.summary for r in rows if r.summary), None),
        license=latest.license or next((r.license for r in rows if r.license), None),
    )


class BrowseService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.channels = ChannelService(session)

    def overview(self, principal: Principal) -> list[ChannelSummary]:
        """The channels the principal may read, with the number of package names in each."""
        channels = self.channels.list_visible(principal)
        if not channels:
            return []
        counts = dict(
            self.session.execute(
                select(Artifact.channel_id, func.count(distinct(Artifact.name)))
                .where(
                    Artifact.channel_id.in_([c.id for c in channels]), Artifact.servable.is_(True)
                )
                .group_by(Artifact.channel_id)
            ).all()
        )
        return [ChannelSummary(c, int(counts.get(c.id, 0))) for c in channels]

    def subdirs(self, channel: Channel) -> list[SubdirIndex]:
        return list(
            self.session.scalars(
                select(SubdirIndex)
                .where(SubdirIndex.channel_id == channel.id)
                .order_by(SubdirIndex.subdir)
            ).all()
        )

    def packages(
        self, channel: Channel, *, contains: str | None = None, offset: int = 0, limit: int = 200
    ) -> PackageListing:
        """Package names of a channel in name order, one page, optionally filtered by substring."""
        where = [Artifact.channel_id == channel.id, Artifact.servable.is_(True)]
        if contains:
            where.append(Artifact.name.contains(contains.strip().lower(), autoescape=True))
        total = self.session.scalar(select(func.count(distinct(Artifact.name))).where(*where))
        names = self.session.scalars(
            select(Artifact.name)
            .where(*where)
            .group_by(Artifact.name)
            .order_by(Artifact.name)
            .offset(max(offset, 0))
            .limit(limit)
        ).all()
        grouped = self._rows([channel.id], names)
        packages = [summarize(name, grouped[channel.id, name]) for name in names]
        return PackageListing(packages, int(total or 0), max(offset, 0), limit)

    def _rows(
        self, channel_ids: Iterable[int], names: Sequence[str]
    ) -> dict[tuple[int, str], list[_Row]]:
        if not names:
            return {}
        result = self.session.execute(
            select(
                Artifact.channel_id,
                Artifact.name,
                Artifact.version,
                Artifact.subdir,
                Artifact.build_number,
                Artifact.summary,
                Artifact.license,
            ).where(
                Artifact.channel_id.in_(list(channel_ids)),
                Artifact.name.in_(list(names)),
                Artifact.servable.is_(True),
            )
        )
        grouped: dict[tuple[int, str], list[_Row]] = defaultdict(list)
        for channel_id, name, version, subdir, build_number, summary, license_ in result:
            grouped[channel_id, name].append(
                _Row(name, version, subdir, build_number, summary, license_)
            )
        return grouped

    def builds(self, channel: Channel, name: str) -> list[Artifact]:
        """Every build of a package in a channel, newest version first."""
        artifacts = self.session.scalars(
            select(Artifact).where(
                Artifact.channel_id == channel.id,
                Artifact.name == name,
                Artifact.servable.is_(True),
            )
        ).all()
        if not artifacts:
            raise PackageNotFoundError(f"package {name!r} not found in channel {channel.name!r}")
        ordered = sorted(artifacts, key=lambda a: (a.subdir, a.filename))
        return sorted(ordered, key=build_sort_key, reverse=True)

    def content(self, sha256: str) -> PackageContent | None:
        """What was read from a package's ``info/`` (about, paths, link scripts)."""
        return self.session.get(PackageContent, sha256)
