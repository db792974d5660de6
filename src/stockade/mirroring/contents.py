"""What is inside mirrored packages, for the criteria that need it (link scripts, SPEC §6).

Repodata does not say whether a package has pre-link, post-link or pre-unlink scripts; the archive
does. Packages whose contents we already read (uploaded, or mirrored before) are known from
``package_contents``; in active mode the files a run downloads are read after the download (the
same untrusted-archive reader as uploads) and the policies are applied again with what they hold.
In passive mode a file not stored yet is unknown until it is fetched: the criterion keeps it
(documented in the admin guide).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import PackageContent
from stockade.channels.upload import record_content
from stockade.conda.archive import PackageInfo, ValidationLimits, inspect_package
from stockade.core.clock import now_ms
from stockade.core.errors import StockadeError
from stockade.storage.errors import BlobNotFoundError, BlobStoreUnavailableError
from stockade.storage.interfaces import BlobStore
from stockade.storage.local_copy import local_file, suffix_of

log = logging.getLogger("stockade.mirroring")
CHUNK = 2000


@dataclass
class KnownLinkScripts:
    """``LinkScriptLookup`` over filenames: True/False when known, None when not."""

    by_filename: dict[str, bool] = field(default_factory=dict)

    def has_link_scripts(self, filename: str) -> bool | None:
        return self.by_filename.get(filename)


def known_link_scripts(session: Session, files: dict[str, str]) -> KnownLinkScripts:
    """``files``: filename -> sha256. Looks their contents up where we have read them."""
    by_sha: dict[str, bool] = {}
    shas = sorted(set(files.values()))
    for start in range(0, len(shas), CHUNK):
        chunk = shas[start : start + CHUNK]
        for sha, scripts in session.execute(
            select(PackageContent.sha256, PackageContent.link_scripts).where(
                PackageContent.sha256.in_(chunk)
            )
        ).all():
            by_sha[sha] = bool(scripts)
    return KnownLinkScripts({fn: by_sha[sha] for fn, sha in files.items() if sha in by_sha})


def read_downloaded(
    session: Session,
    blobs: BlobStore,
    limits: ValidationLimits,
    files: Iterable[tuple[str, str]],
    known: KnownLinkScripts,
) -> list[str]:
    """Read each downloaded ``(filename, sha256)`` not known yet, record its contents, and add
    what it says to ``known``. Returns the filenames that could not be read (with a warning).

    Every file is read before anything is written: the session's first write takes SQLite's
    write lock, which must not be held while packages are read."""
    unreadable: list[str] = []
    read: list[tuple[str, PackageInfo]] = []
    for filename, sha256 in files:
        if filename in known.by_filename:
            continue
        try:  # a blob kept elsewhere (S3) is read from a copy in the staging folder
            with local_file(blobs, sha256, suffix_of(filename)) as path:
                info = inspect_package(path, filename, limits=limits, now_ms=now_ms())
        except BlobNotFoundError:
            log.warning("mirrored %s is not in the blob store (yet): not read", filename)
            continue
        except BlobStoreUnavailableError:
            raise  # the store is down: the run fails and is retried, nothing is taken as read
        except StockadeError as exc:
            log.warning("mirrored %s cannot be read: %s", filename, exc.detail)
            unreadable.append(filename)
            continue
        read.append((sha256, info))
        known.by_filename[filename] = bool(info.link_scripts)
    for sha256, info in read:
        record_content(session, sha256, info)
    return unreadable
