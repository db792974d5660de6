"""Mirrors: create, show, list, change, delete (SPEC §5).

Rights: reading a mirror needs ``mirror:read`` on its channel (a channel reader); creating,
changing and deleting need ``mirror:manage`` on it (the channel's managers, or a role with
``mirrors=manage``). A ``file://`` source (in any spelling: ``FILE:``) or a CA bundle names a
path on the server, so those need the global ``mirror:manage`` permission (an administrator's),
not only rights on the channel; that is checked before the path is looked at, so others learn
nothing of the server's files. Upstream URLs and proxies pass the outbound policy
(``[outbound]``, docs/adr/0010); stored credentials stay bound to what they were given for
(``mirroring.credentials``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService, ChannelHiddenError
from stockade.auth.errors import AccessDeniedError
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel
from stockade.channels.naming import validate_channel_name
from stockade.channels.publishing import request_publications
from stockade.channels.service import ChannelService, channel_ref
from stockade.core.clock import utcnow
from stockade.core.cron import next_fire
from stockade.core.errors import AuthenticationError, NotFoundError
from stockade.core.outbound import OutboundPolicy
from stockade.core.secrets import SecretBox
from stockade.core.urls import redact_url
from stockade.mirroring import credentials
from stockade.mirroring import validation as check
from stockade.mirroring.airgap_source import is_airgap
from stockade.mirroring.errors import (
    InvalidMirrorError,
    MirrorExistsError,
    MirrorNotFoundError,
    RunActiveError,
)
from stockade.mirroring.job import source_config
from stockade.mirroring.models import (
    ACTIVE_STATES,
    DEFAULT_SCHEDULE,
    Mirror,
    MirrorMode,
    MirrorRun,
)
from stockade.mirroring.source_check import CHECK_TIMEOUT_S, check_source_reachable

UNSET: Any = object()


@dataclass
class MirrorSpec:
    """What a caller sets on a mirror; ``UNSET`` leaves a field as it is (updates)."""

    source: str = UNSET
    token: str | None = UNSET  # "" or None clears it
    mode: str = UNSET
    subdirs: list[str] = UNSET
    schedule: str | None = UNSET
    proxy: str | None = UNSET
    ca_bundle: str | None = UNSET
    concurrency: int = UNSET
    enabled: bool = UNSET
    companions: list[str] = UNSET
    allowed_names: list[str] = UNSET
    trusted_root: Any = UNSET  # the upstream's root.json (object or text); None or "" clears
    signing_metadata_url: str | None = UNSET

    def given(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not UNSET
        }


def not_visible(
    principal: Principal, subject: str, not_found: type[NotFoundError]
) -> AuthenticationError | NotFoundError:
    """What a caller who may not see ``subject`` is told: the same as for one that does not
    exist (401 for anonymous callers, 404 for signed-in ones)."""
    if principal.is_anonymous:
        return AuthenticationError(f"{subject}: sign in or pass a token to see it")
    return not_found(f"{subject} not found")


def next_run(schedule: str | None, after: datetime | None = None) -> datetime | None:
    """The mirror's next scheduled run (None: no schedule, or one stored before schedules were
    checked that croniter refuses or that never fires)."""
    return next_fire(schedule, after or utcnow())


def state_of(mirror: Mirror) -> dict[str, Any]:
    """What the audit log records of a mirror (never the token nor the proxy's password)."""
    return {
        "source": redact_url(mirror.source_url),
        "has_token": mirror.source_token_enc is not None,
        "mode": mirror.mode,
        "subdirs": list(mirror.subdirs),
        "schedule": mirror.schedule,
        "proxy": redact_url(mirror.proxy) if mirror.proxy else None,
        "has_proxy_credentials": credentials.has_proxy_credentials(mirror),
        "ca_bundle": mirror.ca_bundle,
        "concurrency": mirror.concurrency,
        "enabled": mirror.enabled,
        "companions": list(mirror.companions),
        "allowed_names": list(mirror.allowed_names),
        "trusted_root_sha256": trust_sha(mirror.trusted_root),
        "signing_metadata_url": redact_url(mirror.signing_metadata_url)
        if mirror.signing_metadata_url
        else None,
    }


def trust_sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _shown_unchanged(given: Any, stored: str | None) -> bool:
    if not isinstance(given, str) or not stored:
        return False
    shown = redact_url(stored)
    return shown != stored and given.strip().rstrip("/") == shown.rstrip("/")


class MirrorService:
    def __init__(
        self, session: Session, secrets: SecretBox, outbound: OutboundPolicy | None = None
    ) -> None:
        self.session = session
        self.secrets = secrets
        self.outbound = outbound  # None: destinations are checked when a run connects only
        self.access = AccessService(session)
        self.channels = ChannelService(session)

    # ------------------------------------------------------------------------------------ read

    def find(self, name: str) -> Mirror | None:
        return self.session.scalar(select(Mirror).where(Mirror.name == name))

    def get(self, principal: Principal, name: str, permission: Permission) -> Mirror:
        """The mirror, if ``principal`` may do ``permission`` on its channel. A mirror of a
        channel you cannot see looks like one that does not exist (the channel rule): 401 for
        anonymous callers, 404 for signed-in ones, same message either way."""
        mirror = self.find(name)
        if mirror is not None:
            try:
                self.access.require_channel(
                    principal, permission, channel_ref(self.channel_of(mirror))
                )
                return mirror
            except (ChannelHiddenError, AuthenticationError):
                pass
        raise not_visible(principal, f"mirror {name!r}", MirrorNotFoundError)

    def channel_of(self, mirror: Mirror) -> Channel:
        channel = self.session.get(Channel, mirror.channel_id)
        assert channel is not None
        return channel

    def list_visible(self, principal: Principal, *, channel: str | None = None) -> list[Mirror]:
        query = select(Mirror, Channel).join(Channel, Channel.id == Mirror.channel_id)
        if channel:
            query = query.where(Channel.name == channel)
        rows = self.session.execute(query.order_by(Mirror.name)).all()
        return [
            m for m, c in rows if self.access.can(principal, Permission.MIRROR_READ, channel_ref(c))
        ]

    def token_of(self, mirror: Mirror) -> str | None:
        return self.secrets.decrypt(mirror.source_token_enc) if mirror.source_token_enc else None

    def last_runs(self, mirror_ids: list[int]) -> dict[int, MirrorRun]:
        if not mirror_ids:
            return {}
        runs = self.session.scalars(
            select(MirrorRun)
            .where(MirrorRun.mirror_id.in_(mirror_ids))
            .order_by(MirrorRun.mirror_id, MirrorRun.id.desc())
        ).all()
        latest: dict[int, MirrorRun] = {}
        for run in runs:
            latest.setdefault(run.mirror_id, run)
        return latest

    # ----------------------------------------------------------------------------------- write

    def create(
        self,
        principal: Principal,
        name: str,
        spec: MirrorSpec,
        *,
        channel: str | None = None,
        privacy: str | None = None,
        verify_source: bool = True,
    ) -> Mirror:
        """Create the mirror, and its channel when none has the name. Nothing is written before
        every check passed (rights, values, and unless ``verify_source`` is False the source
        itself, :mod:`stockade.mirroring.source_check`), and the channel and the mirror are
        flushed in the caller's one transaction: a failure leaves no channel behind."""
        name = check.check_name(name)
        if self.find(name) is not None:
            raise MirrorExistsError(f"mirror {name!r} already exists", field="name")
        if spec.source is UNSET:
            raise InvalidMirrorError("source: give the upstream channel URL", field="source")
        target_name = channel or name
        target = self.channels.find(target_name)
        if target is not None:
            self.access.require_channel(principal, Permission.MIRROR_MANAGE, channel_ref(target))
        else:
            self._require_channel_create(principal, target_name)
        mirror = Mirror(
            name=name,
            subdirs=["linux-64", "noarch"],
            schedule=DEFAULT_SCHEDULE,
            created_by_id=principal.user_id,
            companions=[],
            allowed_names=[],
        )
        self._apply(principal, mirror, spec)
        if verify_source:  # before anything is written: no lock is held while it connects
            check_source_reachable(
                source_config(mirror, self.secrets, CHECK_TIMEOUT_S, self.outbound),
                mirror.subdirs,
            )
        if target is None:
            target = self.channels.create(principal, target_name, privacy=privacy)
            target.kind = "mirror"
            self.access.require_channel(principal, Permission.MIRROR_MANAGE, channel_ref(target))
        mirror.channel_id = target.id
        mirror.next_run_at = next_run(mirror.schedule)
        self.session.flush()  # what came before, outside the savepoint
        try:
            # Added inside the savepoint: begin_nested() flushes pending rows first, and a
            # duplicate must roll back only the savepoint (PostgreSQL aborts the transaction).
            with self.session.begin_nested():
                self.session.add(mirror)
                self.session.flush()
        except IntegrityError:
            raise MirrorExistsError(f"mirror {name!r} already exists", field="name") from None
        AuditLog(self.session).record(
            "mirror.create", principal, Target("mirror", name, mirror.id), after=state_of(mirror)
        )
        return mirror

    def _require_channel_create(self, principal: Principal, channel: str) -> None:
        """The rights ``ChannelService.create`` will ask for, asked before the source is
        checked (so that nobody else learns through the check what the server can reach)."""
        segments = validate_channel_name(channel)
        if len(segments) > 1:
            self.channels.get(principal, "/".join(segments[:-1]), Permission.SUBCHANNEL_CREATE)
        else:
            self.access.require(principal, Permission.CHANNEL_CREATE)

    def update(self, principal: Principal, name: str, spec: MirrorSpec) -> Mirror:
        mirror = self.get(principal, name, Permission.MIRROR_MANAGE)
        before = state_of(mirror)
        old_schedule = mirror.schedule
        change = self._apply(principal, mirror, spec)
        if mirror.schedule != old_schedule:
            mirror.next_run_at = next_run(mirror.schedule)
        self.session.flush()
        AuditLog(self.session).record(
            "mirror.update",
            principal,
            Target("mirror", name, mirror.id),
            before=before,
            after=state_of(mirror),
            details=change.details(),
        )
        return mirror

    def delete(self, principal: Principal, name: str) -> int:
        """Delete the mirror and the records it brought into its channel; returns their count."""
        mirror = self.get(principal, name, Permission.MIRROR_MANAGE)
        active = self.session.scalar(
            select(MirrorRun.id).where(
                MirrorRun.mirror_id == mirror.id, MirrorRun.state.in_(ACTIVE_STATES)
            )
        )
        if active is not None:
            raise RunActiveError(
                f"mirror {name!r} has run {active} pending or running: stop it first", run=active
            )
        subdirs = self.session.scalars(
            select(Artifact.subdir).where(Artifact.mirror_id == mirror.id).distinct()
        ).all()
        removed = self.session.execute(
            delete(Artifact).where(Artifact.mirror_id == mirror.id)
        ).rowcount  # type: ignore[attr-defined]
        request_publications(self.session, [(mirror.channel_id, sd) for sd in subdirs])
        AuditLog(self.session).record(
            "mirror.delete",
            principal,
            Target("mirror", name, mirror.id),
            before=state_of(mirror),
            details={"records_removed": int(removed or 0)},
        )
        self.session.delete(mirror)
        self.session.flush()
        return int(removed or 0)

    def _apply(
        self, principal: Principal, mirror: Mirror, spec: MirrorSpec
    ) -> credentials.CredentialChange:
        given = spec.given()
        change = self._apply_upstream(principal, mirror, given)
        self._apply_settings(principal, mirror, given)
        if is_airgap(mirror.source_url) and mirror.mode in (None, MirrorMode.PASSIVE):
            if "mode" not in given:  # not asked for: an air-gap mirror is active
                mirror.mode = MirrorMode.ACTIVE.value
                return change
            raise InvalidMirrorError(
                "an air-gap mirror (airgap:NAME) is active: its files come in the bundles, "
                "there is no upstream to fetch them from later",
                field="mode",
            )
        return change

    def _apply_upstream(
        self, principal: Principal, mirror: Mirror, given: dict[str, Any]
    ) -> credentials.CredentialChange:
        """Source, proxy, CA bundle and token: rights first, then the values (docs/adr/0010)."""
        if given.get("ca_bundle"):  # before the path is looked at: no probing of server files
            self._require_global(principal, "a CA bundle is a file on the server")
        if "ca_bundle" in given:
            mirror.ca_bundle = check.check_ca_bundle(given["ca_bundle"])
        if "source" in given and _shown_unchanged(given["source"], mirror.source_url):
            del given["source"]  # the redacted URL as shown, sent back: the stored one stays
        if "source" in given:
            if check.is_local_source(str(given["source"] or "")):
                self._require_global(
                    principal, "a file:// or airgap: source reads the server's disk"
                )
            mirror.source_url = check.check_source(given["source"])
            self._check_destination(principal, mirror.source_url, "source")
        self._apply_trust(principal, mirror, given)
        proxy_changed = proxy_dropped = False
        if "proxy" in given:
            proxy, userinfo = check.check_proxy(given["proxy"])
            if proxy is not None:
                self._check_destination(principal, proxy, "proxy")
            proxy_changed = proxy != mirror.proxy or (
                userinfo is not None and not userinfo.endswith(":" + credentials.REDACTED)
            )
            proxy_dropped = credentials.set_proxy(mirror, self.secrets, proxy, userinfo)
        token_dropped = False
        if "token" in given:
            credentials.set_token(mirror, self.secrets, given["token"])
        elif not credentials.token_still_bound(mirror, proxy_changed=proxy_changed):
            credentials.set_token(mirror, self.secrets, None)
            token_dropped = True
        return credentials.CredentialChange(token_dropped, proxy_dropped)

    def _apply_trust(self, principal: Principal, mirror: Mirror, given: dict[str, Any]) -> None:
        """The upstream's trusted root and metadata URL (``mirroring.trust``). What the last run
        fetched is forgotten when either, or the source, changes."""
        before = (mirror.trusted_root, mirror.signing_metadata_url, mirror.source_url)
        if "trusted_root" in given:
            mirror.trusted_root = check.check_trusted_root(given["trusted_root"])
        if "signing_metadata_url" in given:
            url = given["signing_metadata_url"]
            if url and check.is_local_source(str(url)):
                self._require_global(principal, "a file:// metadata URL reads the server's disk")
            mirror.signing_metadata_url = check.check_metadata_url(url)
            if mirror.signing_metadata_url is not None:
                self._check_destination(
                    principal, mirror.signing_metadata_url, "signing_metadata_url"
                )
        if (mirror.trusted_root, mirror.signing_metadata_url, mirror.source_url) != before:
            mirror.upstream_trust = None

    def _check_destination(self, principal: Principal, url: str, field: str) -> None:
        if self.outbound is not None:
            detail = self.access.allowed(principal, Permission.MIRROR_MANAGE)
            check.check_destination(url, self.outbound, field, detail=detail)

    def _apply_settings(self, principal: Principal, mirror: Mirror, given: dict[str, Any]) -> None:
        if "mode" in given:
            mirror.mode = check.check_mode(given["mode"])
        if "subdirs" in given:
            mirror.subdirs = check.check_subdirs(given["subdirs"])
        if "schedule" in given:
            mirror.schedule = check.check_schedule(given["schedule"])
        if "concurrency" in given:
            mirror.concurrency = check.check_concurrency(given["concurrency"])
        if "enabled" in given:
            mirror.enabled = bool(given["enabled"])
        if "companions" in given:
            mirror.companions = self._companions(principal, given["companions"])
        if "allowed_names" in given:
            names = check.check_names(given["allowed_names"], "allowed_names")
            if names != sorted(mirror.allowed_names or []):
                self._require_global(
                    principal, "allowing names past the dependency-confusion guard"
                )
            mirror.allowed_names = names

    def _companions(self, principal: Principal, names: list[str] | str) -> list[str]:
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        clean: list[str] = []
        for raw in names:
            name = str(raw).strip()
            self.channels.get(principal, name, Permission.CHANNEL_READ)
            if name not in clean:
                clean.append(name)
        return clean

    def _require_global(self, principal: Principal, why: str) -> None:
        if not self.access.allowed(principal, Permission.MIRROR_MANAGE):
            raise AccessDeniedError(
                f"{why}: this needs the mirror:manage permission of a role (an administrator)",
                code="mirror:admin-only",
            )
