"""The upstream records of a mirror's last completed run, as dry runs and explain read them:
from the blob store, never from the upstream (parsed once, a few snapshots cached per process)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from stockade.mirroring.inputs import UpstreamSubdir
from stockade.mirroring.job import MirrorJob
from stockade.mirroring.sources import Validators
from stockade.mirroring.upstream import FetchedSubdir, UpstreamSnapshot
from stockade.storage.interfaces import BlobStore

_CACHE_SIZE = 4
_parsed_cache: OrderedDict[tuple[str, ...], dict[str, UpstreamSubdir]] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass
class StoredSnapshot:
    """The upstream records of a mirror's last completed run."""

    parsed: dict[str, UpstreamSubdir]
    fetched_at: datetime | None
    missing: list[str]  # subdirs of the mirror no run fetched yet


def last_snapshot(job: MirrorJob, blobs: BlobStore) -> StoredSnapshot | None:
    """The last run's upstream records of the mirror's subdirs; None if it has none."""
    snapshot: dict[str, FetchedSubdir] = {}
    missing: list[str] = []
    fetched_at: datetime | None = None
    for subdir in job.subdirs:
        state = job.states.get(subdir)
        if state is None or not state.raw_sha256 or not blobs.exists(state.raw_sha256):
            missing.append(subdir)
            continue
        validators = Validators(state.etag, state.last_modified, state.variant, state.raw_sha256)
        snapshot[subdir] = FetchedSubdir(
            subdir, state.raw_sha256, state.variant or "", validators, True
        )
        if state.fetched_at and (fetched_at is None or state.fetched_at < fetched_at):
            fetched_at = state.fetched_at
    if not snapshot:
        return None
    return StoredSnapshot(_parsed(snapshot, job, blobs), fetched_at, missing)


def _parsed(
    snapshot: dict[str, FetchedSubdir], job: MirrorJob, blobs: BlobStore
) -> dict[str, UpstreamSubdir]:
    key = tuple(f"{sd}:{f.raw_sha256}" for sd, f in sorted(snapshot.items()))
    with _cache_lock:
        cached = _parsed_cache.get(key)
        if cached is not None:
            _parsed_cache.move_to_end(key)
            return cached
    parsed = UpstreamSnapshot(snapshot, "", dict(job.states), blobs).load()
    with _cache_lock:
        _parsed_cache[key] = parsed
        while len(_parsed_cache) > _CACHE_SIZE:
            _parsed_cache.popitem(last=False)
    return parsed
