"""Managing content trust (SPEC §8): the chain's state, accepting new metadata, signed channels.

Reading needs ``security:read``, installing metadata ``security:manage``. Metadata is made and
signed by the CLI, where the root and key_mgr keys are; the server checks that it chains before
storing it. When the pkg_mgr keys change (a rotation), every signed channel is published again,
signed with the new key: the old key's signatures stop verifying at once (it is revoked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Channel, SubdirIndex
from stockade.channels.publishing import request_publications
from stockade.core.clock import utcnow
from stockade.settings import SigningSettings
from stockade.signing.chain import Chain, install, load_chain, root_versions
from stockade.signing.errors import SignerUnavailableError, TrustMetadataError
from stockade.signing.format import delegation
from stockade.signing.keys import KeyFolder, passphrase_from_env
from stockade.signing.signers import keys_dir, open_signer


@dataclass
class SignedChannel:
    name: str
    records: int
    signed: int
    signing: bool  # a publication is signing it now, or is due


@dataclass
class SigningStatus:
    set_up: bool
    root_version: int = 0
    key_mgr_version: int = 0
    root_expires: datetime | None = None
    key_mgr_expires: datetime | None = None
    root_keys: list[str] = field(default_factory=list)
    key_mgr_keys: list[str] = field(default_factory=list)
    pkg_mgr_keys: list[str] = field(default_factory=list)
    signer: str = "not set up"
    signer_ready: bool = False
    warnings: list[str] = field(default_factory=list)
    channels: list[SignedChannel] = field(default_factory=list)


class SigningAdmin:
    def __init__(self, session: Session, settings: SigningSettings, data_dir: Path) -> None:
        self.session = session
        self.settings = settings
        self.data_dir = data_dir
        self.access = AccessService(session)

    def status(self, principal: Principal, *, check_signer: bool = True) -> SigningStatus:
        self.access.require(principal, Permission.SECURITY_READ)
        chain = load_chain(self.session)
        if chain is None:
            return SigningStatus(set_up=False, channels=self._channels())
        expires = chain.expirations()
        status = SigningStatus(
            set_up=True,
            root_version=chain.root_version,
            key_mgr_version=chain.key_mgr_version,
            root_expires=expires["root"],
            key_mgr_expires=expires["key_mgr"],
            root_keys=delegation(chain.root["signed"], "root")[0],
            key_mgr_keys=delegation(chain.root["signed"], "key_mgr")[0],
            pkg_mgr_keys=chain.pkg_mgr_keys,
            channels=self._channels(),
        )
        status.warnings = self._warnings(chain, expires)
        if check_signer:
            self._check_signer(status, chain)
        return status

    def install(
        self, principal: Principal, roots: list[dict[str, Any]], key_mgr: dict[str, Any] | None
    ) -> SigningStatus:
        """Store new root versions and/or key_mgr (verified); re-sign channels on a new pkg_mgr."""
        self.access.require(principal, Permission.SECURITY_MANAGE)
        if not roots and key_mgr is None:
            raise TrustMetadataError("nothing to install: give new root versions or a key_mgr")
        before = root_versions(self.session)
        chain, changed = install(self.session, roots, key_mgr)
        if changed:
            signed = self.session.scalars(select(Channel.id).where(Channel.sign.is_(True))).all()
            subdirs = self.session.execute(
                select(SubdirIndex.channel_id, SubdirIndex.subdir).where(
                    SubdirIndex.channel_id.in_(signed)
                )
            ).all()
            request_publications(self.session, [(cid, sd) for cid, sd in subdirs])
        AuditLog(self.session).record(
            "signing.metadata",
            principal,
            Target("signing", "trust", None),
            details={
                "roots_added": len(roots),
                "root_version": chain.root_version,
                "first_root_version": before + 1 if roots else None,
                "key_mgr_version": chain.key_mgr_version,
                "pkg_mgr_keys": chain.pkg_mgr_keys,
                "pkg_mgr_changed": changed,
            },
        )
        return self.status(principal)

    def _warnings(self, chain: Chain, expires: dict[str, datetime]) -> list[str]:
        now = utcnow()
        soon = timedelta(days=self.settings.expiry_warning_days)
        warnings: list[str] = []
        for role, when in expires.items():
            how = "rotate it" if role == "key_mgr" else "rotate the root"
            if when <= now:
                warnings.append(f"{role} expired on {when:%Y-%m-%d}: {how}")
            elif when - now <= soon:
                warnings.append(
                    f"{role} expires on {when:%Y-%m-%d} ({(when - now).days} days): {how}"
                )
        folder = KeyFolder.read(
            keys_dir(self.settings, self.data_dir),
            passphrase_from_env(self.settings.passphrase_env),
        )
        online = set(folder.keys) & set(delegation(chain.root["signed"], "root")[0])
        for key in sorted(online):
            warnings.append(
                f"the root key {folder.paths[key].name} is in the server's key folder: keep it "
                "offline (only the pkg_mgr key belongs there)"
            )
        return warnings

    def _check_signer(self, status: SigningStatus, chain: Chain) -> None:
        try:
            signer = open_signer(self.settings, self.data_dir, chain.pkg_mgr_keys)
        except SignerUnavailableError as exc:
            status.signer = exc.detail
            status.warnings.append(f"signed channels cannot publish: {exc.detail}")
            return
        kind = "external signer command" if self.settings.signer_command else "key file"
        status.signer = f"{kind} for pkg_mgr key {signer.public_key[:16]}…"
        status.signer_ready = True
        signer.close()

    def _channels(self) -> list[SignedChannel]:
        rows = self.session.execute(
            select(
                Channel.name,
                SubdirIndex.record_count,
                SubdirIndex.signing_done,
                SubdirIndex.signing_total,
                SubdirIndex.requested_rev,
                SubdirIndex.published_rev,
            )
            .join(SubdirIndex, SubdirIndex.channel_id == Channel.id)
            .where(Channel.sign.is_(True))
            .order_by(Channel.name)
        ).all()
        found: dict[str, SignedChannel] = {}
        for name, records, done, total, requested, published in rows:
            entry = found.setdefault(name, SignedChannel(name, 0, 0, False))
            entry.records += records or 0
            entry.signed += min(done or 0, total or 0) if total else 0
            entry.signing = entry.signing or requested > published or (done or 0) < (total or 0)
        return list(found.values())
