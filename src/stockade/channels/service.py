"""Channels: create, show, list what a principal may read, update, delete, freeze (SPEC §3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stockade.audit.downloads import retire_channel
from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.models import ChannelGrant, User
from stockade.auth.permissions import Level, Permission, Privacy
from stockade.auth.principal import Principal
from stockade.auth.revision import bump_revision
from stockade.auth.service import UserService
from stockade.channels.errors import (
    ChannelExistsError,
    ChannelHoldsQuarantinedError,
    ChannelNotFoundError,
)
from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.channels.naming import validate_channel_name
from stockade.channels.privacy import (
    channel_ref,
    descendants,
    rank,
    refs_for,
    require_not_looser,
    strictest,
)
from stockade.channels.publishing import request_publication, request_publications
from stockade.channels.scanstate import (
    QUARANTINE_STATES,
    HoldOrServe,
    ScanStatus,
    UploadScanMode,
    refresh_channel,
)
from stockade.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from stockade.signing.chain import require_chain

__all__ = [  # channel_ref lives in channels.privacy; callers take it from here too
    "ChannelChanges",
    "ChannelService",
    "channel_ref",
    "check_token_resources",
    "parse_privacy",
]


@dataclass(frozen=True)
class ChannelChanges:
    description: str | None = None
    privacy: str | None = None
    frozen: bool | None = None
    # Scan settings (SPEC §8); changing them needs security:manage.
    scan_uploads: str | None = None  # UploadScanMode
    scan_suspicious: str | None = None  # HoldOrServe
    scan_errors: str | None = None  # HoldOrServe
    # Content trust (SPEC §8): sign every record the channel serves (needs the keys set up).
    sign: bool | None = None


def parse_privacy(value: str) -> Privacy:
    try:
        return Privacy(value)
    except ValueError:
        raise InvalidInputError(
            f"privacy must be one of public, authenticated, private (got {value!r})",
            code="channel:invalid-privacy",
            field="privacy",
        ) from None


def scan_settings(changes: ChannelChanges) -> dict[str, str]:
    """The scan settings ``changes`` sets, checked (422 naming the field otherwise)."""
    wanted: dict[str, str] = {}
    for key, allowed in (
        ("scan_uploads", UploadScanMode),
        ("scan_suspicious", HoldOrServe),
        ("scan_errors", HoldOrServe),
    ):
        value = getattr(changes, key)
        if value is None:
            continue
        if value not in {m.value for m in allowed}:
            choices = ", ".join(m.value for m in allowed)
            raise InvalidInputError(
                f"{key} must be one of {choices} (got {value!r})",
                code="channel:invalid-scan-setting",
                field=key,
            )
        wanted[key] = value
    return wanted


def _state(channel: Channel) -> dict[str, object]:
    return {
        "privacy": channel.privacy,
        "description": channel.description,
        "frozen": channel.frozen,
        "scan_uploads": channel.scan_uploads,
        "scan_suspicious": channel.scan_suspicious,
        "scan_errors": channel.scan_errors,
        "sign": channel.sign,
    }


class ChannelService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.access = AccessService(session)

    def find(self, name: str) -> Channel | None:
        return self.session.scalar(select(Channel).where(Channel.name == name))

    def get(self, principal: Principal, name: str, permission: Permission) -> Channel:
        """The channel if the principal has ``permission`` on it; hidden channels are 'not found'."""
        channel = self.find(name)
        if channel is None:
            raise ChannelNotFoundError(f"channel {name!r} not found")
        self.access.require_channel(principal, permission, channel_ref(channel))
        return channel

    def create(
        self,
        principal: Principal,
        name: str,
        *,
        privacy: str | None = None,
        description: str | None = None,
    ) -> Channel:
        """Create a channel; a subchannel takes its parent's (effective) privacy by default and
        may be stricter, never looser."""
        segments = validate_channel_name(name)
        privacy_value = parse_privacy(privacy) if privacy is not None else Privacy.PUBLIC
        parent: Channel | None = None
        if len(segments) > 1:
            parent = self.get(principal, "/".join(segments[:-1]), Permission.SUBCHANNEL_CREATE)
            inherited = channel_ref(parent).privacy
            if privacy is None:
                privacy_value = Privacy(inherited)
            require_not_looser(name, privacy_value, inherited)
        else:
            self.access.require(principal, Permission.CHANNEL_CREATE)
        if self.find(name) is not None:
            raise ChannelExistsError(f"channel {name!r} already exists", field="name")
        channel = Channel(
            name=name,
            parent_id=parent.id if parent else None,
            owner_id=principal.user_id,
            privacy=privacy_value.value,
            description=description,
        )
        self.session.add(channel)
        self.session.flush()
        # downloads flushed under this id after a deleted channel had it are not this one's
        retire_channel(self.session, channel.id)
        request_publication(self.session, channel.id, "noarch")
        AuditLog(self.session).record(
            "channel.create", principal, Target("channel", name, channel.id), after=_state(channel)
        )
        return channel

    def list_visible(self, principal: Principal, *, prefix: str | None = None) -> list[Channel]:
        query = select(Channel).order_by(Channel.name)
        if prefix:
            query = query.where(Channel.name.startswith(prefix, autoescape=True))
        channels = self.session.scalars(query).all()
        refs = refs_for(self.session, channels)
        return [
            c for c in channels if self.access.channel_level(principal, refs[c.id]) >= Level.READ
        ]

    def update(self, principal: Principal, name: str, changes: ChannelChanges) -> Channel:
        channel = self.get(principal, name, Permission.CHANNEL_MANAGE)
        before = _state(channel)
        if changes.description is not None:
            channel.description = changes.description
        tightened: list[tuple[Channel, str]] = []
        if changes.privacy is not None:
            tightened = self._change_privacy(channel, parse_privacy(changes.privacy))
        if changes.frozen is not None and changes.frozen != channel.frozen:
            channel.frozen = changes.frozen
            if not channel.frozen:  # publish what accumulated while frozen
                request_publications(self.session, [(channel.id, s) for s in self.subdirs(channel)])
        self._change_scan_settings(principal, channel, changes)
        if changes.sign is not None and changes.sign != channel.sign:
            if changes.sign:
                require_chain(self.session)  # 404 signing:not-set-up, saying what to run
            channel.sign = changes.sign
            # the publisher signs (or stops signing) every subdir, in the background
            request_publications(self.session, [(channel.id, s) for s in self.subdirs(channel)])
        self.session.flush()
        after = _state(channel)
        if after != before:
            AuditLog(self.session).record(
                "channel.update",
                principal,
                Target("channel", name, channel.id),
                before=before,
                after=after,
            )
        for child, old in tightened:
            AuditLog(self.session).record(
                "channel.update",
                principal,
                Target("channel", child.name, child.id),
                before={"privacy": old},
                after={"privacy": child.privacy},
                details={"reason": f"parent {name!r} became {channel.privacy}"},
            )
        return channel

    def _change_scan_settings(
        self, principal: Principal, channel: Channel, changes: ChannelChanges
    ) -> None:
        wanted = scan_settings(changes)
        if all(getattr(channel, key) == value for key, value in wanted.items()):
            return
        AccessService(self.session).require(principal, Permission.SECURITY_MANAGE)
        for key, value in wanted.items():
            setattr(channel, key, value)
        self.session.flush()
        refresh_channel(self.session, channel)

    def _change_privacy(self, channel: Channel, privacy: Privacy) -> list[tuple[Channel, str]]:
        """Set the privacy; refuse looser than the parent; tighten looser subchannels.

        Returns the subchannels tightened, with their former privacy.
        """
        if channel.parent_id is not None:
            parent = self.session.get(Channel, channel.parent_id)
            if parent is not None:
                require_not_looser(channel.name, privacy, channel_ref(parent).privacy)
        channel.privacy = privacy.value
        tightened: list[tuple[Channel, str]] = []
        for child in descendants(self.session, channel):
            if rank(child.privacy) < rank(privacy):
                tightened.append((child, child.privacy))
                child.privacy = strictest([child.privacy, privacy]).value
        return tightened

    def delete(self, principal: Principal, name: str) -> None:
        channel = self.get(principal, name, Permission.CHANNEL_MANAGE)
        children = self.session.scalars(
            select(Channel).where(Channel.name.startswith(name + "/", autoescape=True))
        ).all()
        self._check_no_held(principal, [channel, *children])
        AuditLog(self.session).record(
            "channel.delete",
            principal,
            Target("channel", name, channel.id),
            before={**_state(channel), "subchannels": [c.name for c in children]},
        )
        for child in sorted(children, key=lambda c: -len(c.name)):
            self._delete_rows(child)
        self._delete_rows(channel)
        # Principals cache their grants by channel id, and SQLite gives a deleted row's id to the
        # next channel: every process drops them with this transaction.
        bump_revision(self.session)

    def _check_no_held(self, principal: Principal, channels: Iterable[Channel]) -> None:
        """Files the scanners hold are the quarantine queue's: deleting them with their channel
        is for security staff (a channel manager would erase a quarantined file and its findings)."""
        held = self.session.scalar(
            select(func.count(Artifact.id)).where(
                Artifact.channel_id.in_([c.id for c in channels]),
                Artifact.scan_status.in_(sorted(QUARANTINE_STATES)),
                Artifact.servable.is_(False),
            )
        )
        if held and not self.access.allowed(principal, Permission.SECURITY_MANAGE):
            raise ChannelHoldsQuarantinedError(
                f"the channel holds {held} file(s) in the quarantine queue: a security admin "
                "releases or deletes them, or deletes the channel"
            )

    def _delete_rows(self, channel: Channel) -> None:
        # Blobs stay: others may share them; `stockade fsck` collects orphans.
        self.session.execute(delete(Artifact).where(Artifact.channel_id == channel.id))
        self.session.execute(delete(ChannelGrant).where(ChannelGrant.channel_id == channel.id))
        retire_channel(self.session, channel.id)  # its downloads are not the next channel's
        self.session.delete(channel)
        self.session.flush()

    def subdirs(self, channel: Channel) -> list[str]:
        rows = self.session.scalars(
            select(SubdirIndex.subdir).where(SubdirIndex.channel_id == channel.id)
        ).all()
        return sorted(set(rows) | {"noarch"})

    def stats(self, channel: Channel) -> tuple[int, int]:
        """(number of artifacts, total bytes); rows a mirror run has staged are not the channel's
        until the run switches them in (``mirroring.staging``)."""
        count, size = self.session.execute(
            select(func.count(Artifact.id), func.coalesce(func.sum(Artifact.size), 0)).where(
                Artifact.channel_id == channel.id, Artifact.scan_status != ScanStatus.STAGED
            )
        ).one()
        return int(count), int(size)


def check_token_resources(
    session: Session, owner: User, actor: Principal, names: Iterable[str]
) -> None:
    """A resource token may name only channels its owner can read; hidden ones look missing.

    ``actor`` asks for the token: the owner, or an admin acting for a service account.
    """
    if owner.id != actor.user_id:
        actor = UserService(session).principal_for(owner, via="check")
    channels = ChannelService(session)
    for name in names:
        base = name.removesuffix("/*")
        try:
            channels.get(actor, base, Permission.CHANNEL_READ)
        except (NotFoundError, AuthenticationError):
            raise InvalidInputError(
                f"resources: channel {base!r} not found", code="token:resources", field="resources"
            ) from None
