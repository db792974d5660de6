"""Signatures of the records a publication serves, made only for records not signed before.

A record is found by the digest of its bytes as served (after patches): the process keeps the
signatures it knows in memory, looks the rest up in ``record_signatures``, and signs only what is
left (the canonical bytes are built for those alone). So publishing one upload into a signed
subdir of 100,000 records signs one record, and a channel that turns signing on is signed once,
in batches, with its progress on the subdir row.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from stockade.conda.repodata import exact_bytes
from stockade.core.faults import crash_point
from stockade.db.engine import transaction
from stockade.settings import SigningSettings
from stockade.signing.chain import load_chain
from stockade.signing.errors import SignerUnavailableError
from stockade.signing.format import record_bytes
from stockade.signing.models import RecordSignature
from stockade.signing.signers import Signer, open_signer

log = logging.getLogger("stockade.signing")

BATCH = 1000
LOOKUP_CHUNK = 500
CACHE_MAX = 2_000_000
Progress = Callable[[int, int], None]
SignatureMap = dict[str, dict[str, dict[str, str]]]  # filename -> {pubkey: {"signature": hex}}
_NONE: dict[str, str] = {}  # never written: the table of a key with nothing remembered
#: Records remembered from the last publication of each subdir (their bytes and entry), in all.
LAST_MAX = 1_000_000


def digest_of(record_json: bytes) -> str:
    return hashlib.blake2b(record_json, digest_size=16).hexdigest()


def _store(session: Session, rows: list[dict[str, str]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING of a batch, as one executemany of a cached statement: a
    statement with 1,000 VALUES rows was compiled anew per batch (half the time of signing a
    channel from scratch: docs/benchmarks.md, "Signing")."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(RecordSignature).on_conflict_do_nothing(index_elements=["pubkey", "digest"])
    session.connection().execute(statement, rows)


@dataclass
class ServedEntries:
    """The signatures entries of a subdir's served records, as JSON bytes and as orjson fragments
    (embedded as they are in ``repodata.json``), with the record bytes they were made for."""

    keys: tuple[str, ...]
    records: dict[str, bytes] = field(default_factory=dict)
    entries: dict[str, bytes] = field(default_factory=dict)
    fragments: dict[str, orjson.Fragment] = field(default_factory=dict)

    def put(self, filename: str, record: bytes, entry: bytes) -> None:
        self.records[filename] = record
        self.entries[filename] = entry
        self.fragments[filename] = orjson.Fragment(entry)

    def drop(self, filename: str) -> None:
        del self.records[filename], self.entries[filename], self.fragments[filename]


class RecordSigner:
    def __init__(
        self, factory: sessionmaker[Session], settings: SigningSettings, data_dir: Path
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.data_dir = data_dir
        self._known: dict[str, dict[str, str]] = {}  # pubkey -> digest -> signature
        self._size = 0
        self._last: dict[object, ServedEntries] = {}  # by scope (a subdir)

    def current_keys(self) -> list[str]:
        with transaction(self.factory) as session:
            chain = load_chain(session)
        if chain is None:
            raise SignerUnavailableError(
                "the channel is signed but no signing keys are set up (`stockade signing init`)"
            )
        return chain.pkg_mgr_keys

    def served_entries(
        self,
        scope: object,
        sections: tuple[dict[str, bytes], ...],
        progress: Progress | None = None,
    ) -> ServedEntries:
        """The signatures entries of every record of ``sections`` (filename -> served bytes),
        for a publication of ``scope`` (a subdir).

        What the last publication of the same scope served is compared byte for byte (no digest,
        no lookup), and its entries are kept in place: one upload into a signed subdir of 100,000
        records costs a comparison per record and one signature. The result belongs to this
        signer (the next publication of ``scope`` updates it): copy it before changing it.
        """
        keys = tuple(self.current_keys())
        served = self._last.get(scope)
        if served is None or served.keys != keys:
            served = ServedEntries(keys)
        known = served.records.get
        todo: list[tuple[str, bytes]] = []
        total = 0
        for section in sections:
            total += len(section)
            for fn, rec in section.items():
                if known(fn) != rec:
                    todo.append((fn, rec))
        if todo:
            signed = self.sign_records(todo, progress)
            for fn, rec in todo:
                # kept until the next publication: in its own allocation, not orjson's 4 KiB
                served.put(fn, rec, exact_bytes(orjson.dumps(signed[fn])))
        if len(served.records) != total:
            wanted = set().union(*sections)
            for fn in served.records.keys() - wanted:
                served.drop(fn)
        if sum(len(m.records) for m in self._last.values()) > LAST_MAX:
            self._last.clear()
        self._last[scope] = served
        return served

    def sign_records(
        self, records: Iterable[tuple[str, bytes]], progress: Progress | None = None
    ) -> SignatureMap:
        """filename -> its signatures entry, for every (filename, served record bytes)."""
        keys = self.current_keys()
        done: SignatureMap = {}
        missing: list[tuple[str, bytes, str]] = []
        total = self._from_memory(keys, records, done, missing)
        if missing:
            self._lookup(keys, {d for _, _, d in missing})
            still = []
            for fn, rec, digest in missing:
                entry = self._entry(keys, digest, complete=False)
                if entry is None:
                    still.append((fn, rec, digest))
                else:
                    done[fn] = entry
            if still:
                self._sign(keys, still, done, total, progress)
        return done

    def _from_memory(
        self,
        keys: list[str],
        records: Iterable[tuple[str, bytes]],
        done: SignatureMap,
        missing: list[tuple[str, bytes, str]],
    ) -> int:
        """Fill ``done`` with what memory knows (every key signed) and ``missing`` with the rest;
        returns how many records there were. The hot loop of every signed publication (100,000
        records for one upload): one pkg_mgr key, the usual case, has a lean loop of its own."""
        total = 0
        if len(keys) == 1:
            key = keys[0]
            table = self._known.get(key, _NONE)
            for fn, rec in records:
                total += 1
                digest = digest_of(rec)
                signature = table.get(digest)
                if signature is None:
                    missing.append((fn, rec, digest))
                else:
                    done[fn] = {key: {"signature": signature}}
            return total
        for fn, rec in records:
            total += 1
            digest = digest_of(rec)
            entry = self._entry(keys, digest, complete=True)
            if entry is None:
                missing.append((fn, rec, digest))
            else:
                done[fn] = entry
        return total

    def _entry(
        self, keys: list[str], digest: str, *, complete: bool
    ) -> dict[str, dict[str, str]] | None:
        """The signatures entry known in memory for ``digest``: with ``complete``, only when every
        key has one; else when any has."""
        entry: dict[str, dict[str, str]] = {}
        for key in keys:
            signature = self._known.get(key, _NONE).get(digest)
            if signature is not None:
                entry[key] = {"signature": signature}
        if not entry or (complete and len(entry) < len(keys)):
            return None
        return entry

    def _lookup(self, keys: list[str], digests: set[str]) -> None:
        wanted = sorted(digests)
        with transaction(self.factory) as session:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                for key, digest, sig in session.execute(
                    select(
                        RecordSignature.pubkey, RecordSignature.digest, RecordSignature.signature
                    ).where(RecordSignature.pubkey.in_(keys), RecordSignature.digest.in_(chunk))
                ).all():
                    self._remember(key, digest, sig)

    def _remember(self, key: str, digest: str, signature: str) -> None:
        if self._size >= CACHE_MAX:
            self._known.clear()
            self._size = 0
        table = self._known.setdefault(key, {})
        if digest not in table:
            self._size += 1
        table[digest] = signature

    def _sign(
        self,
        keys: list[str],
        todo: list[tuple[str, bytes, str]],
        done: SignatureMap,
        total: int,
        progress: Progress | None,
    ) -> None:
        signer: Signer = open_signer(self.settings, self.data_dir, keys)
        last = 0.0
        try:
            for start in range(0, len(todo), BATCH):
                batch = todo[start : start + BATCH]
                sigs = signer.sign_many([record_bytes(rec) for _, rec, _ in batch])
                rows = []
                for (fn, _, digest), sig in zip(batch, sigs, strict=True):
                    done[fn] = {signer.public_key: {"signature": sig}}
                    self._remember(signer.public_key, digest, sig)
                    rows.append({"pubkey": signer.public_key, "digest": digest, "signature": sig})
                with transaction(self.factory) as session:
                    _store(session, rows)
                crash_point("signing:after-batch")
                if progress is not None and time.monotonic() - last > 1.0:
                    progress(total - len(todo) + start + len(batch), total)
                    last = time.monotonic()
        finally:
            signer.close()
        log.info("signed %d records with pkg_mgr key %s…", len(todo), signer.public_key[:16])
