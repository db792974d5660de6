"""A ``bundle`` feed of the air-gap folder: URL ``airgap:`` (or the folder's ``file://`` path).

At each run (its schedule, or sync-now) every ``cve.zip`` dropped into the air-gap folder is
applied in name order, each whole or not at all, then moved aside with a result file (SPEC §9).
The folder belongs to the ``airgap`` domain, above this one: the composition root hands the sync
a :class:`BundleFolder` (``stockade.airgap.cve_folder.CveFolder``) that does the folder work; this
module only recognizes the URL and turns what was done into the feed's status.

The feed's ``last_status`` is ``ok`` (every bundle applied), ``partial`` (some refused),
``failed`` (only refusals) or ``unchanged`` (nothing new: none waiting, or only bundles applied
before, which are set aside again without importing them); ``last_error`` says how many bundles
were applied, refused and already applied, and why each refused one was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.request import url2pathname

from sqlalchemy.orm import Session, sessionmaker

from stockade.core.urls import URLParseError, parse_url
from stockade.db.engine import transaction
from stockade.vulns.feed_state import FeedStatus, set_status
from stockade.vulns.models import VulnFeed
from stockade.vulns.sync_counts import SyncCounts

__all__ = ["AIRGAP_URL", "BundleFolder", "FolderRun", "names_folder", "sync_folder"]

AIRGAP_URL = "airgap:"  # exactly: "every CVE bundle dropped into the air-gap folder"
_REASONS_KEPT = 10


@dataclass
class FolderRun:
    """What one run did with the CVE bundles waiting in the folder."""

    applied: list[str] = field(default_factory=list)  # file names
    refused: list[str] = field(default_factory=list)  # "name: reason [code]"
    repeated: list[str] = field(default_factory=list)  # applied before: set aside again
    counts: SyncCounts = field(default_factory=SyncCounts)  # summed over the applied bundles

    def status(self) -> FeedStatus:
        if self.refused:
            return FeedStatus.PARTIAL if self.applied else FeedStatus.FAILED
        return FeedStatus.OK if self.applied else FeedStatus.UNCHANGED

    def summary(self) -> str:
        if not (self.applied or self.refused or self.repeated):
            return "air-gap folder: no CVE bundle waiting"
        applied = len(self.applied)
        text = (
            f"air-gap folder: {applied} CVE bundle{'' if applied == 1 else 's'} applied, "
            f"{len(self.refused)} refused, {len(self.repeated)} already applied (set aside)"
        )
        if self.refused:
            shown = self.refused[:_REASONS_KEPT]
            more = len(self.refused) - len(shown)
            text += "\nrefused: " + "\nrefused: ".join(shown)
            text += f"\n… and {more} more refused" if more else ""
        return text


class BundleFolder(Protocol):
    """The air-gap folder's CVE bundles, applied for a feed (given by the composition root)."""

    @property
    def folder(self) -> Path: ...

    def apply(self, feed_id: int) -> FolderRun: ...


def names_folder(url: str, folder: Path | None) -> bool:
    """Whether a ``bundle`` feed's URL means the air-gap folder: ``airgap:``, or ``file://`` of
    ``folder`` itself."""
    if url == AIRGAP_URL:
        return True
    if folder is None:
        return False
    try:
        parts = parse_url(url)
    except URLParseError:
        return False
    if parts.scheme != "file":
        return False
    return Path(url2pathname(parts.path)).resolve() == folder.resolve()


def sync_folder(factory: sessionmaker[Session], feed_id: int, bundles: BundleFolder) -> SyncCounts:
    """Apply the CVE bundles waiting; the feed's status and summary say what was done."""
    run = bundles.apply(feed_id)
    with transaction(factory) as session:
        feed = session.get(VulnFeed, feed_id)
        if feed is not None:
            set_status(feed, run.status().value, run.summary())
    counts = run.counts
    counts.not_modified = not (run.applied or run.refused)
    counts.failed = len(run.refused)
    counts.errors = run.refused[:_REASONS_KEPT]
    return counts
