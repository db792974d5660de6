"""The ``signatures`` a publication serves (SPEC §8): this server's, and upstream's kept ones.

- A signed channel (``channels.sign``) gets a pkg_mgr signature on every record it serves
  (``signing/records.py`` signs only records not signed before).
- A mirrored record keeps the upstream's signature entry while it is served exactly as upstream
  signed it (``signature_status`` verified or unverified); a repodata patch that changes it drops
  the entry, and the publication's warnings say so.
- Both sit side by side in one entry: a client checks the ones its trust root delegates to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.db.engine import transaction
from stockade.signing.errors import SignerUnavailableError
from stockade.signing.records import RecordSigner

#: Upstream signature states whose entry is served (the record is what upstream signed).
KEPT_STATES = ("verified", "unverified")


def signing_inputs(
    session: Session, channel_id: int, subdir: str
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Whether the channel signs, and the kept upstream signature entries of the subdir."""
    sign = bool(session.scalar(select(Channel.sign).where(Channel.id == channel_id)))
    # ``servable`` is checked on the rows found (few): in the WHERE clause it would lead SQLite to
    # the servable index and a scan of the whole subdir on every publication.
    upstream = {
        fn: sig
        for fn, sig, servable in session.execute(
            select(Artifact.filename, Artifact.signature, Artifact.servable).where(
                Artifact.channel_id == channel_id,
                Artifact.subdir == subdir,
                Artifact.signature_status.in_(KEPT_STATES),
            )
        ).all()
        if servable and isinstance(sig, dict) and sig
    }
    return sign, upstream


@dataclass
class ServedSignatures:
    """What a publication serves: filename -> signatures entry, as JSON bytes (shards) and as
    orjson fragments (``repodata.json``); ``tag`` names this server's pkg_mgr keys (its
    signatures follow from them and the record bytes), ``upstream`` the files carrying a kept
    upstream entry (their entry is part of a shard's fingerprint)."""

    entries: dict[str, bytes] = field(default_factory=dict)
    fragments: dict[str, orjson.Fragment] = field(default_factory=dict)
    tag: str = ""
    upstream: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def served_signatures(
    factory: sessionmaker[Session],
    signer: RecordSigner | None,
    index_id: int,
    inputs: tuple[bool, dict[str, dict[str, Any]]],
    sections: tuple[dict[str, bytes], dict[str, bytes]],
    stored: Mapping[str, bytes],
) -> ServedSignatures:
    """The signatures entries of the records served (``sections``, after patches)."""
    sign, upstream = inputs
    result = ServedSignatures()
    if sign:
        if signer is None:
            raise SignerUnavailableError("this server has no record signer configured")
        ours = signer.served_entries(index_id, sections, _progress(factory, index_id))
        result.entries, result.fragments = ours.entries, ours.fragments
        result.tag = ",".join(ours.keys)
    kept: dict[str, bytes] = {}
    for fn, entry in upstream.items():
        served = sections[0].get(fn) or sections[1].get(fn)
        if served is None:
            continue
        if served != stored.get(fn):
            result.warnings.append(
                f"{fn}: upstream signature left out (a repodata patch changed the record)"
            )
            continue
        mine = result.entries.get(fn)
        merged = {**entry, **orjson.loads(mine)} if mine is not None else entry
        kept[fn] = orjson.dumps(merged, option=orjson.OPT_SORT_KEYS)
    if kept:  # the signer's dicts are its own: change copies
        result.entries = {**result.entries, **kept}
        result.fragments = {**result.fragments, **{k: orjson.Fragment(v) for k, v in kept.items()}}
        result.upstream = set(kept)
    return result


def _progress(factory: sessionmaker[Session], index_id: int) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        with transaction(factory) as session:
            session.execute(
                update(SubdirIndex)
                .where(SubdirIndex.id == index_id)
                .values(signing_done=done, signing_total=total)
            )

    return report
