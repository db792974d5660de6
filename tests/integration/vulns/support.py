"""Helpers of the vulnerability integration tests: artifacts, feed folders, syncs, reads."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from stockade.auth.principal import Principal
from stockade.channels.intake import ScanReason, admit_rows
from stockade.channels.models import Artifact, Channel
from stockade.channels.scanstate import ArtifactSource
from stockade.container import Container
from stockade.db.engine import transaction
from stockade.vulns.feedsync import FeedService, FeedSync, SyncCounts
from stockade.vulns.matcher import Matcher
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.models import VulnMatch
from tests.conftest import TESTDATA
from tests.factories.packages import PackageSpec, build_conda
from tests.integration.conftest import add_package, make_channel

VULNS = TESTDATA / "vulns"


def osv_folder(tmp_path: Path, *packages: str) -> Path:
    """A copy of some package folders of ``osv-pypi`` (so tests may edit records)."""
    target = tmp_path / "osv"
    for package in packages:
        shutil.copytree(VULNS / "osv-pypi" / package, target / package)
    return target


def add_feed(container: Container, admin: Principal, name: str, url: str, fmt: str) -> int:
    with transaction(container.factory) as session:
        return FeedService(session).create(admin, name, url, fmt).id


def sync(container: Container, feed_id: int) -> SyncCounts:
    return FeedSync(container.factory).sync_feed(feed_id)


def channel_with_advisories(
    container: Container,
    admin: Principal,
    tmp_path: Path,
    channel: str,
    specs: Iterable[PackageSpec],
    advised: str,
) -> str:
    """Channel ``channel`` with ``specs`` uploaded and the real OSV advisories of the PyPI
    package ``advised`` synced as a feed ``pypa``; the channel's name."""
    make_channel(container, admin, channel)
    for spec in specs:
        folder = tmp_path / spec.name
        folder.mkdir()
        add_package(container, admin, channel, build_conda(folder, spec))
    feed = add_feed(container, admin, "pypa", osv_folder(tmp_path, advised).as_uri(), "osv")
    sync(container, feed)
    return channel


def channel_id(container: Container, admin: Principal, name: str = "internal") -> int:
    with container.factory() as session:
        found = session.scalar(select(Channel.id).where(Channel.name == name))
    if found is not None:
        return found
    make_channel(container, admin, name)
    return channel_id(container, admin, name)


def add_artifacts(
    container: Container,
    channel: int,
    items: list[tuple[str, str, str]],
    *,
    match: bool = True,
) -> list[int]:
    """Artifact rows for ``(name, version, build)``, matched like a new upload.

    They have no bytes, so they enter through the intake as a passive mirror's records do
    (``unfetched``: listed and servable, nothing to scan until fetched)."""
    rows: list[dict[str, Any]] = []
    for name, version, build in items:
        filename = f"{name}-{version}-{build}.conda"
        digest = hashlib.sha256(filename.encode()).hexdigest()
        rows.append(
            {
                "channel_id": channel,
                "subdir": "noarch",
                "filename": filename,
                "name": name,
                "version": version,
                "build": build,
                "format": "conda",
                "sha256": digest,
                "md5": digest[:32],
                "size": 1,
                "record_json": b"{}",
                "indexed_timestamp": 0,
                "source": ArtifactSource.MIRROR,
            }
        )
    with transaction(container.factory) as session:
        target = session.get_one(Channel, channel)
        admitted = admit_rows(session, target, rows, stored=False, reason=ScanReason.MIRROR)
        found = select(Artifact.filename, Artifact.id).where(Artifact.id.in_(admitted))
        by_name: dict[str, int] = dict(session.execute(found).all())
        ids = [by_name[row["filename"]] for row in rows]  # in the order of ``items``
        if match:
            Matcher(session).match_artifacts(ids)
    return ids


def matches(container: Container) -> dict[tuple[str, str, str, str], str]:
    """``(vuln_id, name, version, build) -> status`` of every stored match."""
    with container.factory() as session:
        query = (
            select(
                VulnRow.vuln_id, Artifact.name, Artifact.version, Artifact.build, VulnMatch.status
            )
            .join(VulnRow, VulnRow.id == VulnMatch.vulnerability_id)
            .join(Artifact, Artifact.id == VulnMatch.artifact_id)
        )
        return {(v, n, ver, b): s for v, n, ver, b, s in session.execute(query)}
