"""The server's trust chain: every root version, the current key_mgr, and what they delegate.

Metadata arrives signed (the CLI holds root and key_mgr keys) and is accepted only when it
chains: a first root that verifies itself, each later root verified by its predecessor and by
itself, and a key_mgr verified by the newest root and not expired. Accepting a key_mgr whose
pkg_mgr keys changed asks every signed channel to publish again (signed with the new key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stockade.core.clock import utcnow
from stockade.signing.errors import SigningExistsError, SigningNotSetUpError, TrustMetadataError
from stockade.signing.format import (
    check_delegating,
    delegation,
    parse_time,
    serialize,
    verify_envelope,
    verify_key_mgr,
    verify_root_update,
)
from stockade.signing.models import TrustMetadata


@dataclass(frozen=True)
class Chain:
    root_version: int
    root: dict[str, Any]  # newest root envelope
    key_mgr: dict[str, Any]  # current key_mgr envelope

    @property
    def pkg_mgr_keys(self) -> list[str]:
        return delegation(self.key_mgr["signed"], "pkg_mgr")[0]

    @property
    def key_mgr_version(self) -> int:
        return int(self.key_mgr["signed"]["version"])

    def expirations(self) -> dict[str, datetime]:
        return {
            "root": parse_time(self.root["signed"]["expiration"], "root expiration"),
            "key_mgr": parse_time(self.key_mgr["signed"]["expiration"], "key_mgr expiration"),
        }


def load_chain(session: Session) -> Chain | None:
    root_row = session.scalars(
        select(TrustMetadata)
        .where(TrustMetadata.role == "root")
        .order_by(TrustMetadata.version.desc())
        .limit(1)
    ).first()
    key_row = session.scalars(
        select(TrustMetadata)
        .where(TrustMetadata.role == "key_mgr")
        .order_by(TrustMetadata.version.desc())
        .limit(1)
    ).first()
    if root_row is None or key_row is None:
        return None
    return Chain(root_row.version, orjson.loads(root_row.body), orjson.loads(key_row.body))


def require_chain(session: Session) -> Chain:
    chain = load_chain(session)
    if chain is None:
        raise SigningNotSetUpError("no signing keys are set up: run `stockade signing init` first")
    return chain


def metadata_file(session: Session, name: str) -> bytes | None:
    """The bytes of ``N.root.json`` or ``key_mgr.json``; None when there is no such file."""
    if name == "key_mgr.json":
        query = select(TrustMetadata.body).where(TrustMetadata.role == "key_mgr")
        return session.scalars(query.order_by(TrustMetadata.version.desc()).limit(1)).first()
    number = name.removesuffix(".root.json")
    if not number.isdigit() or len(number) > 9:
        return None
    return session.scalars(
        select(TrustMetadata.body).where(
            TrustMetadata.role == "root", TrustMetadata.version == int(number)
        )
    ).first()


def install(
    session: Session,
    roots: list[dict[str, Any]],
    key_mgr: dict[str, Any] | None,
    now: datetime | None = None,
) -> tuple[Chain, bool]:
    """Accept new root versions (in order) and/or a new key_mgr; returns the chain and whether the
    pkg_mgr keys changed. Raises TrustMetadataError naming what does not verify."""
    now = now or utcnow()
    current = load_chain(session)
    if current is not None and roots:
        first = roots[0].get("signed") if isinstance(roots[0], Mapping) else None
        version = first.get("version") if isinstance(first, Mapping) else None
        if isinstance(version, int) and version <= current.root_version:
            raise SigningExistsError(
                f"signing is set up already (root version {current.root_version}): rotate keys "
                "with `stockade signing rotate` instead"
            )
    newest_root = current.root if current is not None else None
    for envelope in roots:
        if newest_root is None:
            signed = check_delegating(envelope, "root")
            if signed["version"] != 1:  # clients start from 1.root.json (conda-config --verify)
                raise TrustMetadataError(
                    f"the first root must be version 1, not {signed['version']}: clients chain "
                    "from 1.root.json"
                )
            keys, threshold = delegation(signed, "root")
            verify_envelope(
                envelope, keys, threshold, what=f"{signed['version']}.root.json", openpgp=True
            )
        else:
            signed = verify_root_update(newest_root, envelope)
        session.add(TrustMetadata(role="root", version=signed["version"], body=serialize(envelope)))
        newest_root = envelope
    if newest_root is None:
        raise TrustMetadataError("a root.json is needed first (`stockade signing init`)")
    expiration = newest_root["signed"]["expiration"]
    if roots and parse_time(expiration, "root expiration") <= now:  # clients would refuse it
        raise TrustMetadataError(f"root metadata expired on {expiration}")
    if key_mgr is None:
        if current is None:
            raise TrustMetadataError("a key_mgr.json is needed with the first root")
        key_mgr = current.key_mgr
        verify_key_mgr(newest_root, key_mgr, None)  # the new root must still delegate to it
    else:
        signed = verify_key_mgr(newest_root, key_mgr, now)
        if current is not None and signed["version"] <= current.key_mgr_version:
            raise TrustMetadataError(
                f"key_mgr version {signed['version']} is not newer than the current "
                f"{current.key_mgr_version}"
            )
        session.add(
            TrustMetadata(role="key_mgr", version=signed["version"], body=serialize(key_mgr))
        )
    session.flush()
    chain = Chain(int(newest_root["signed"]["version"]), newest_root, key_mgr)
    changed = current is None or current.pkg_mgr_keys != chain.pkg_mgr_keys
    return chain, changed


def root_versions(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(TrustMetadata).where(TrustMetadata.role == "root")
        )
        or 0
    )
