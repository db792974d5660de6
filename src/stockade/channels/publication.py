"""Publication: build a subdir's index from database rows and switch to it in one row update.

Never re-reads archives. Rebuilds only the subdir asked for and, for CEP 16 shards, only the names
whose records changed (by fingerprint). Every file is written to the blob store first (content
addressed, so a crash leaves only unreferenced blobs); then one transaction points the subdir at
the new ``repodata.json``, ``.zst``, shard index and ``run_exports.json`` together.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import ChainMap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import compress

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.locks import PublicationLocks
from stockade.channels.models import (
    Channel,
    RepodataPatch,
    SubdirIndex,
    SubdirShard,
)
from stockade.channels.publication_channeldata import (
    WAIT_FOR_INDEXES,
    DueChannelData,
    build_channeldata,
    claim_channeldata,
    due_channeldata,
    finish_channeldata,
    release_channeldata,
    request_channeldata,
)
from stockade.channels.publication_exports import RunExportsEntries, run_exports_json
from stockade.channels.publication_memory import (
    TRIM_MIN_RECORDS,
    ShardMemos,
    release_memory,
)
from stockade.channels.publication_rows import (
    Served,
    SubdirRead,
    columns,
    ends_with,
    servable_rows,
)
from stockade.channels.publication_shards import build_shards, store_shards
from stockade.channels.publication_signing import (
    ServedSignatures,
    served_signatures,
    signing_inputs,
)
from stockade.channels.publication_state import (
    clear_failure,
    due_for_retry,
    record_failure,
    safe_instructions,
    scans_settled,
)
from stockade.conda.patches import apply_patches
from stockade.conda.records import RecordChecker
from stockade.conda.repodata import build_repodata_json, compress_zst
from stockade.core.clock import utcnow
from stockade.core.faults import crash_point
from stockade.core.metrics import metrics
from stockade.db.engine import transaction
from stockade.signing.records import RecordSigner
from stockade.storage.interfaces import BlobStore

log = logging.getLogger("stockade.publisher")


@dataclass
class BuiltIndex:
    rev: int
    repodata: str
    repodata_zst: str
    shard_index: str
    run_exports: str
    record_count: int
    shards: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (fingerprint, sha)
    gone: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)  # stored patches left out
    signed: int = 0  # records carrying this server's signature (0: the channel is not signed)


PublishedHook = Callable[[int, str], None]
#: Called in the transaction that switches a subdir's index: (session, channel id, subdir, names
#: whose records changed). The search index is kept current here (search/index.py).
SwitchHook = Callable[[Session, int, str, set[str]], None]


class PublicationService:
    def __init__(
        self,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        *,
        zstd_level: int = 3,
        on_published: PublishedHook | None = None,
        locks: PublicationLocks | None = None,
        signer: RecordSigner | None = None,
        on_switch: SwitchHook | None = None,
        read_factory: sessionmaker[Session] | None = None,
    ) -> None:
        self.factory = factory
        # Reads (a subdir's rows, a channel's for channeldata.json) in read-only sessions: on
        # SQLite a write session holds the database's write lock from BEGIN, and a 100,000-record
        # read under load held it for seconds (uploads answered 503 meanwhile).
        self.read_factory = read_factory or factory
        self.on_switch = on_switch
        self.signer = signer
        self.locks = locks or PublicationLocks(_engine_of(factory))
        self.blobs = blobs
        self.zstd_level = zstd_level
        self.on_published = on_published
        self.owner = uuid.uuid4().hex
        # sha256 -> run_exports of that package content (immutable, so never stale): a
        # publication reads only the run_exports of packages it has not seen before.
        self._run_exports = RunExportsEntries()
        # What the last publication of each subdir fingerprinted (shards of changed names only).
        self._memos = ShardMemos()
        # Records stored invalid (before index.json was fully validated) are never published.
        self._records = RecordChecker()
        #: Set by the job edge (``jobs/apart.py``): builds a channel's ``channeldata.json`` in a
        #: process of its own and returns its sha256, for a channel whose last build took
        #: ``channeldata_apart_ms`` or longer (None: always in this process).
        self.channeldata_apart: Callable[[int], str] | None = None
        self.channeldata_apart_ms = -1
        self._apart_slot = threading.Lock()

    def pending(self) -> list[int]:
        """Subdir index ids with unpublished changes, in channels that are not frozen, leaving
        out failed ones still backing off (unless changed since)."""
        with transaction(self.factory) as session:
            return list(
                session.scalars(
                    select(SubdirIndex.id)
                    .join(Channel, Channel.id == SubdirIndex.channel_id)
                    .where(
                        SubdirIndex.requested_rev > SubdirIndex.published_rev,
                        Channel.frozen.is_(False),
                        due_for_retry(utcnow()),
                        scans_settled(utcnow()),
                    )
                    .order_by(SubdirIndex.id)
                ).all()
            )

    def run_pending(self) -> int:
        """Publish every pending subdir once, then the channeldata that is due.

        Returns how many channels had subdirs published (0 when there was nothing to do).
        """
        channels: set[int] = set()
        for index_id in self.pending():
            channel_id = self.publish(index_id)
            if channel_id is not None:
                channels.add(channel_id)
        self.publish_due_channeldata()
        return len(channels)

    def publish_due_channeldata(self) -> None:
        """Rebuild the ``channeldata.json`` asked for, by whichever publisher takes it first.

        The switch of a subdir's index asks for it in its transaction (a crash after that
        commit loses nothing: ``channels/publication_channeldata.py``). It spans every subdir
        of a channel, so it is built after the indexes (never delaying them), and a channel
        whose build took ``t`` seconds is rebuilt at most every ``5 t`` seconds (at most a
        minute): a small channel at once, a huge one without hogging the publishers under a
        stream of uploads. A slow build (over a second last time) also waits while indexes are
        pending, for up to a minute: an upload that came meanwhile is published first.
        """
        with transaction(self.read_factory) as session:
            due = due_channeldata(session, utcnow())
        for item in due:
            if item.slow and utcnow() - item.requested_at < WAIT_FOR_INDEXES and self.pending():
                return  # still asked for: built once the indexes are published
            self._rebuild_channeldata(item)

    def _rebuild_channeldata(self, due: DueChannelData) -> None:
        apart = self._apart(due)
        if apart is None:
            with transaction(self.factory) as session:
                claimed = claim_channeldata(session, due, self.owner, utcnow())
            if claimed is not None:  # else another publisher took it (or built it) meanwhile
                self._build_channeldata(due, claimed, self._build_here)
                release_memory()  # it decoded every record of the channel: give the heap back
            return
        # One build apart at a time per publisher (each process holds a channel's records): a
        # slow channel due meanwhile stays asked for, and a later pass takes it.
        if not self._apart_slot.acquire(blocking=False):
            return
        handed = False
        try:
            with transaction(self.factory) as session:
                claimed = claim_channeldata(session, due, self.owner, utcnow())
            if claimed is not None:
                # A thread waits for that process: this one goes on publishing the indexes
                # (the lease just taken keeps every publisher from building it twice).
                threading.Thread(
                    target=self._build_apart,
                    args=(due, claimed, apart),
                    name=f"stockade-channeldata-{due.channel_id}",
                    daemon=True,
                ).start()
                handed = True
        finally:
            if not handed:
                self._apart_slot.release()

    def _build_apart(
        self, due: DueChannelData, claimed: datetime, build: Callable[[int], str]
    ) -> None:
        try:
            self._build_channeldata(due, claimed, build)
        finally:
            self._apart_slot.release()

    def _build_here(self, channel_id: int) -> str:
        return build_channeldata(self.read_factory, self.blobs, channel_id)

    def _build_channeldata(
        self, due: DueChannelData, claimed: datetime, build: Callable[[int], str]
    ) -> None:
        """Build it and record the result under the lease taken (or let the lease go)."""
        started = time.monotonic()
        try:
            sha = build(due.channel_id)
        except Exception:  # one channel's channeldata never stops the others
            log.exception("channeldata.json of channel id %s failed", due.channel_id)
            took = timedelta(seconds=time.monotonic() - started)
            with transaction(self.factory) as session:
                release_channeldata(session, due.channel_id, self.owner, took, utcnow())
            return
        took = timedelta(seconds=time.monotonic() - started)
        with transaction(self.factory) as session:
            finish_channeldata(session, due.channel_id, self.owner, claimed, sha, took, utcnow())

    def _apart(self, due: DueChannelData) -> Callable[[int], str] | None:
        """How to build it in a process of its own, when its last build was slow enough."""
        limit = self.channeldata_apart_ms
        if self.channeldata_apart is None or limit < 0 or due.build_ms < limit:
            return None
        return self.channeldata_apart

    def publish_channeldata(self, channel_id: int) -> None:
        """Build the channel's ``channeldata.json`` now and serve it (no lease, no request)."""
        sha = build_channeldata(self.read_factory, self.blobs, channel_id)
        with transaction(self.factory) as session:
            session.execute(
                update(Channel).where(Channel.id == channel_id).values(channeldata_sha256=sha)
            )

    def publish(self, index_id: int) -> int | None:
        """Publish one subdir unless another process is; returns its channel id when it did."""
        with self.locks.hold(index_id) as held:
            if not held:
                return None
            started = utcnow()  # requests after this one's target was read come later
            target = self._target(index_id)
            if target is None:
                return None
            channel_id, subdir, rev = target
            try:
                built = self._build(index_id, channel_id, subdir, rev)
                crash_point("publication:after-blobs")
                latency = self._switch(index_id, channel_id, built, started)
            except Exception as exc:  # noqa: BLE001 - recorded on the subdir; others go on
                with transaction(self.factory) as session:
                    record_failure(session, index_id, rev, exc)
                return None
        crash_point("publication:after-switch")
        if latency is not None:  # from the request (its commit) to the switch (committed)
            metrics().publication_latency.observe(latency)
        if built.record_count >= TRIM_MIN_RECORDS:
            release_memory()  # the build's freed buffers back to the OS (publication_memory.py)
        if self.on_published is not None:
            self.on_published(channel_id, subdir)
        return channel_id

    def _target(self, index_id: int) -> tuple[int, str, int] | None:
        """(channel id, subdir, revision to publish), or None when it is already published."""
        with transaction(self.factory) as session:
            row = session.get(SubdirIndex, index_id)
            if row is None or row.requested_rev <= row.published_rev:
                return None
            row.lease_owner = self.owner  # informational: who is publishing it
            return row.channel_id, row.subdir, row.requested_rev

    def _build(self, index_id: int, channel_id: int, subdir: str, rev: int) -> BuiltIndex:
        with transaction(self.read_factory) as session:
            read = self._read(session, index_id, channel_id, subdir)
        served = self._served(read)
        signing_out = ServedSignatures()
        if read.signing[0] or read.signing[1]:
            signing_out = served_signatures(
                self.factory,
                self.signer,
                index_id,
                read.signing,
                served.sections,
                ChainMap(*read.sections),
            )
            served.warnings += signing_out.warnings
        tar_bz2, conda = served.sections
        repodata = build_repodata_json(
            subdir, tar_bz2.items(), conda.items(), served.removed, signatures=signing_out.fragments
        )
        count = len(tar_bz2) + len(conda)
        built = BuiltIndex(
            rev,
            "",
            "",
            "",
            "",
            count,
            warnings=served.warnings,
            signed=count if read.signing[0] else 0,
        )
        # Hashing, compressing and writing (fsync) release the GIL: they run in threads while
        # this one builds the shards and run_exports.json.
        with ThreadPoolExecutor(2, thread_name_prefix="publish") as pool:
            json_sha = pool.submit(self.blobs.put_bytes, repodata)
            zst_sha = pool.submit(self._put_zst, repodata)
            del repodata  # freed as soon as both threads are done with it
            built.shards, built.gone, built.shard_index, memo = build_shards(
                self.blobs,
                subdir,
                read.names,
                (tar_bz2, conda, signing_out),
                served.removed,
                read.known,
                self._memos.get(index_id),
            )
            # CEP 12: every package of the unpatched index, with {} when it has no run_exports.
            built.run_exports = self.blobs.put_bytes(
                run_exports_json(subdir, read.run_exports, *served.unpatched)
            )
            built.repodata, built.repodata_zst = json_sha.result(), zst_sha.result()
        self._memos.put(index_id, memo)
        return built

    def _read(self, session: Session, index_id: int, channel_id: int, subdir: str) -> SubdirRead:
        """Everything a publication of the subdir reads from the database."""
        rows = servable_rows(session, channel_id, subdir)
        patches = list(
            session.scalars(
                select(RepodataPatch).where(
                    RepodataPatch.channel_id == channel_id, RepodataPatch.subdir == subdir
                )
            ).all()
        )
        known = {
            name: (fingerprint, sha)
            for name, fingerprint, sha in session.execute(
                select(SubdirShard.name, SubdirShard.fingerprint, SubdirShard.shard_sha256).where(
                    SubdirShard.subdir_index_id == index_id, SubdirShard.retired_at.is_(None)
                )
            ).all()
        }
        ids, fns, row_names, records, row_shas = columns(rows)
        names, shas = dict(zip(fns, row_names, strict=True)), dict(zip(fns, row_shas, strict=True))
        # one section per suffix, split without a Python-level loop over 100,000 records
        sections = tuple(
            dict(zip(compress(fns, ends), compress(records, ends), strict=True))
            for ends in (ends_with(fns, ".tar.bz2"), ends_with(fns, ".conda"))
        )
        invalid = self._records.invalid_rows(ids, fns, records)
        for fn in invalid:
            del names[fn], shas[fn]
            for section in sections:
                section.pop(fn, None)
        return SubdirRead(
            names=names,
            sections=(sections[0], sections[1]),
            patches=patches,
            known=known,
            run_exports=self._run_exports.of_files(session, channel_id, subdir, shas),
            signing=signing_inputs(session, channel_id, subdir),
            warnings=list(invalid.values()),
        )

    def _served(self, read: SubdirRead) -> Served:
        """The records served (patches applied, unreadable results reverted) and removed."""
        tar_bz2, conda = unpatched = read.sections
        warnings = list(read.warnings)
        removed: list[str] = []
        if read.patches:
            instructions, left_out = safe_instructions(read.patches)
            warnings += left_out
            patched_tar_bz2, patched_conda, removed = apply_patches(tar_bz2, conda, instructions)
            # a patch that would make a record unreadable (``version: 1..2``) is not applied
            warnings += self._records.revert_invalid(tar_bz2, patched_tar_bz2)
            warnings += self._records.revert_invalid(conda, patched_conda)
            tar_bz2, conda = patched_tar_bz2, patched_conda
        return Served(
            (tar_bz2, conda), removed, warnings, (unpatched[0].keys(), unpatched[1].keys())
        )

    def _put_zst(self, repodata: bytes) -> str:
        return self.blobs.put_bytes(compress_zst(repodata, self.zstd_level))

    def _switch(
        self, index_id: int, channel_id: int, built: BuiltIndex, started: datetime
    ) -> float | None:
        """Point the subdir at the built files and ask for its channel's channeldata.json, in
        one transaction; returns the seconds since the publication was asked for (None when
        another publisher was first)."""
        with transaction(self.factory) as session:
            # The channel's row before the subdir's, the order of a channel update (``FOR NO KEY
            # UPDATE``: uploads inserting rows that reference the channel are not held up).
            session.execute(
                select(Channel.id).where(Channel.id == channel_id).with_for_update(key_share=True)
            )
            row = session.get(SubdirIndex, index_id, with_for_update=True)
            assert row is not None
            if built.rev <= row.published_rev:
                return None  # someone already published this revision or a newer one
            now = utcnow()
            asked = row.requested_at
            # Requests this build does not cover came after its target was read: from then on.
            row.requested_at = started if row.requested_rev > built.rev else None
            row.repodata_sha256 = built.repodata
            row.repodata_zst_sha256 = built.repodata_zst
            row.repodata_bz2_sha256 = None  # derived lazily from this revision's repodata.json
            row.shard_index_sha256 = built.shard_index
            row.run_exports_sha256 = built.run_exports
            row.record_count = built.record_count
            row.signing_done = row.signing_total = built.signed
            row.published_rev = max(row.published_rev, built.rev)
            row.published_at = now
            row.lease_owner = None
            clear_failure(row, built.warnings)
            changed = store_shards(session, index_id, built.shards, built.gone)
            if self.on_switch is not None:
                self.on_switch(session, row.channel_id, row.subdir, changed)
            request_channeldata(session, channel_id, now)
        return (now - asked).total_seconds() if asked is not None else None


def _engine_of(factory: sessionmaker[Session]) -> Engine:
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    return bind
