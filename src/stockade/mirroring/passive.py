"""Passive mirrors: a kept record is published at once and its file fetched on first request.

Concurrent first requests for the same file share one fetch (a lock per sha256 in this process;
between processes the content-addressed store makes a duplicate fetch harmless). The bytes are
checked against the record's sha256 before they are stored or served.

A mirror's upstream settings are cached for ``CONFIG_TTL_S`` under the mirror's id *and* its
``created_at``/``updated_at`` (read with one primary-key query per fetch): an edited mirror, or a
new mirror that took a deleted one's id (SQLite reuses the highest id), never fetches through the
old source, token or proxy.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.core.errors import StockadeError, UnavailableError
from stockade.core.outbound import OutboundPolicy
from stockade.core.secrets import SecretBox
from stockade.mirroring.job import source_config
from stockade.mirroring.models import Mirror, MirrorSubdirState
from stockade.mirroring.sources import SourceConfig, open_source
from stockade.storage.interfaces import BlobStore

log = logging.getLogger("stockade.mirroring")
CONFIG_TTL_S = 30.0


@dataclass(frozen=True)
class _Upstream:
    config: SourceConfig
    base_urls: dict[str, str | None]
    loaded_at: float
    version: tuple[datetime, datetime]  # the mirror's created_at, updated_at when loaded


class PassiveFetcher:
    def __init__(
        self,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        secrets: SecretBox,
        *,
        timeout_s: float = 60.0,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.factory = factory
        self.blobs = blobs
        self.secrets = secrets
        self.timeout_s = timeout_s
        self.outbound = outbound  # the [outbound] policy (None: the strict default)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._upstreams: dict[int, _Upstream] = {}
        self.fetches = 0  # files fetched by this process (tests and metrics read it)

    def ensure(
        self, mirror_id: int, subdir: str, filename: str, sha256: str, size: int | None
    ) -> None:
        """Make sure the blob is stored, fetching it from the mirror's upstream if it is not."""
        if self.blobs.exists(sha256):
            return
        with self._guard:
            lock = self._locks.setdefault(sha256, threading.Lock())
        try:
            with lock:
                if self.blobs.exists(sha256):
                    return
                self._fetch(mirror_id, subdir, filename, sha256, size)
        finally:
            with self._guard:
                if not lock.locked():
                    self._locks.pop(sha256, None)

    def _fetch(
        self, mirror_id: int, subdir: str, filename: str, sha256: str, size: int | None
    ) -> None:
        upstream = self._upstream(mirror_id)
        source = open_source(upstream.config)
        try:
            url = source.file_url(subdir, filename, upstream.base_urls.get(subdir))
            path = source.fetch_file(
                subdir, filename, self.blobs.staging_dir(), sha256=sha256, size=size, url=url
            )
        except StockadeError as exc:
            log.warning("passive fetch of %s/%s failed: %s", subdir, filename, exc.detail)
            raise UnavailableError(
                f"{subdir}/{filename} is not stored here yet and fetching it from the upstream "
                f"failed: {exc.detail}",
                code=exc.code if exc.code.startswith("mirror:") else "mirror:upstream-unavailable",
            ) from None
        finally:
            source.close()
        self.blobs.put_file(path, sha256)
        self.fetches += 1

    def _upstream(self, mirror_id: int) -> _Upstream:
        with self.factory() as session:
            stamp = session.execute(
                select(Mirror.created_at, Mirror.updated_at).where(Mirror.id == mirror_id)
            ).first()
            if stamp is None:
                self._upstreams.pop(mirror_id, None)
                raise UnavailableError(
                    "the mirror this file came from is gone", code="mirror:not-found"
                )
            version = (stamp.created_at, stamp.updated_at)
            known = self._upstreams.get(mirror_id)
            if (
                known is not None
                and known.version == version
                and time.monotonic() - known.loaded_at < CONFIG_TTL_S
            ):
                return known
            upstream = self._load(session, mirror_id, version)
        self._upstreams[mirror_id] = upstream
        return upstream

    def _load(
        self, session: Session, mirror_id: int, version: tuple[datetime, datetime]
    ) -> _Upstream:
        mirror = session.get(Mirror, mirror_id)
        if mirror is None:
            raise UnavailableError(
                "the mirror this file came from is gone", code="mirror:not-found"
            )
        config = source_config(mirror, self.secrets, self.timeout_s, self.outbound)
        base_urls: dict[str, str | None] = dict(
            session.execute(
                select(MirrorSubdirState.subdir, MirrorSubdirState.base_url).where(
                    MirrorSubdirState.mirror_id == mirror_id
                )
            ).all()
        )
        return _Upstream(config, base_urls, time.monotonic(), version)
