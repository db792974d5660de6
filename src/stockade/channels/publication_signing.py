"""The ``signatures`` a publication serves (SPEC §8): this server's, and upstream's kept ones.

- A signed channel (``channels.sign``) gets a pkg_mgr signature on every record it serves
  (``signing/records.py`` signs only records not signed before).
- A mirrored record keeps the upstream's signature entry while it is served exactly as upstream
  signed it (``signature_status`` verified or unverified); a repodata patch that changes it drops
  the entry, and the publication's warnings say so.
- Both sit side by side in one entry: a client checks the ones its trust root delegates to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.db.engine import transaction
from stockade.signing.errors import SignerUnavailableError
from stockade.signing.records import RecordSigner, SignatureMap

#: Upstream signature states whose entry is served (the record is what upstream signed).
KEPT_STATES = ("verified", "unverified")


def signing_inputs(
    session: Session, channel_id: int, subdir: str
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Whether the channel signs, and the kept upstream signature entries of the subdir."""
    sign = bool(session.scalar(select(Channel.sign).where(Channel.id == channel_id)))
    upstream = {
        fn: sig
        for fn, sig in session.execute(
            select(Artifact.filename, Artifact.signature).where(
                Artifact.channel_id == channel_id,
                Artifact.subdir == subdir,
                Artifact.servable.is_(True),
                Artifact.signature_status.in_(KEPT_STATES),
            )
        ).all()
        if isinstance(sig, dict) and sig
    }
    return sign, upstream


def served_signatures(
    factory: sessionmaker[Session],
    signer: RecordSigner | None,
    index_id: int,
    inputs: tuple[bool, dict[str, dict[str, Any]]],
    served: dict[str, bytes],
    stored: dict[str, bytes],
) -> tuple[SignatureMap, list[str]]:
    """filename -> signatures entry for the records ``served`` (after patches), and warnings."""
    sign, upstream = inputs
    warnings: list[str] = []
    result: SignatureMap = {}
    for fn, entry in upstream.items():
        if fn not in served:
            continue
        if served[fn] != stored.get(fn):
            warnings.append(
                f"{fn}: upstream signature left out (a repodata patch changed the record)"
            )
            continue
        result[fn] = dict(entry)
    if sign:
        if signer is None:
            raise SignerUnavailableError("this server has no record signer configured")
        ours = signer.sign_records(sorted(served.items()), _progress(factory, index_id))
        for fn, entry in ours.items():
            result[fn] = {**result.get(fn, {}), **entry}
    return result, warnings


def _progress(factory: sessionmaker[Session], index_id: int) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        with transaction(factory) as session:
            session.execute(
                update(SubdirIndex)
                .where(SubdirIndex.id == index_id)
                .values(signing_done=done, signing_total=total)
            )

    return report
