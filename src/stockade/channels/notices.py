"""Notices: messages to every conda user of a channel, published as ``notices.json``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Channel, Notice
from stockade.channels.service import ChannelService
from stockade.conda.channeldata import Notice as CondaNotice
from stockade.conda.channeldata import NoticeLevel, build_notices_json
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError, NotFoundError
from stockade.storage.interfaces import BlobStore

NOTICE_LEVELS = tuple(level.value for level in NoticeLevel)
MAX_MESSAGE = 4000
MAX_DAYS = 3650


def _unstorable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_notice(message: str, level: str, expires_in_days: int | None) -> None:
    """The limits of a notice (the API's schema has the same), so every caller gets a 4xx."""
    if not message.strip() or len(message) > MAX_MESSAGE:
        raise InvalidInputError(
            f"a notice's message is 1 to {MAX_MESSAGE} characters",
            code="notice:invalid",
            field="message",
        )
    if "\x00" in message or _unstorable(message):
        raise InvalidInputError(
            "a notice's message may not hold a NUL character or a lone surrogate",
            code="notice:invalid",
            field="message",
        )
    if level not in NOTICE_LEVELS:
        raise InvalidInputError(
            f"a notice's level is one of {', '.join(NOTICE_LEVELS)} (got {level[:32]!r})",
            code="notice:invalid",
            field="level",
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        raise InvalidInputError(
            f"a notice expires in 1 to {MAX_DAYS} days, or never",
            code="notice:invalid",
            field="expires_in_days",
        )


def _state(notice: Notice) -> dict[str, object]:
    return {"message": notice.message, "level": notice.level, "expires_at": notice.expires_at}


def _target(channel: Channel, notice: Notice) -> Target:
    return Target("notice", f"{channel.name}#{notice.id}", notice.id)


class NoticeService:
    def __init__(self, session: Session, blobs: BlobStore) -> None:
        self.session = session
        self.blobs = blobs
        self.channels = ChannelService(session)

    def list(self, channel: Channel) -> list[Notice]:
        return list(
            self.session.scalars(
                select(Notice).where(Notice.channel_id == channel.id).order_by(Notice.id)
            ).all()
        )

    def create(
        self,
        principal: Principal,
        channel_name: str,
        message: str,
        *,
        level: str = "info",
        expires_in_days: int | None = None,
    ) -> Notice:
        channel = self.channels.get(principal, channel_name, Permission.CHANNEL_MANAGE)
        check_notice(message, level, expires_in_days)
        expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
        notice = Notice(channel_id=channel.id, message=message, level=level, expires_at=expires)
        self.session.add(notice)
        self.session.flush()
        self._publish(channel)
        AuditLog(self.session).record(
            "notice.create", principal, _target(channel, notice), after=_state(notice)
        )
        return notice

    def delete(self, principal: Principal, channel_name: str, notice_id: int) -> None:
        channel = self.channels.get(principal, channel_name, Permission.CHANNEL_MANAGE)
        notice = self.session.get(Notice, notice_id)
        if notice is None or notice.channel_id != channel.id:
            raise NotFoundError(f"notice {notice_id} not found", code="notice:not-found")
        AuditLog(self.session).record(
            "notice.delete", principal, _target(channel, notice), before=_state(notice)
        )
        self.session.delete(notice)
        self.session.flush()
        self._publish(channel)

    def _publish(self, channel: Channel) -> None:
        now = utcnow()
        current = [
            CondaNotice(
                id=f"{channel.name}-{n.id}",
                message=n.message,
                level=NoticeLevel(n.level),
                created_at=n.created_at,
                expired_at=n.expires_at,
            )
            for n in self.list(channel)
            if n.expires_at is None or n.expires_at > now
        ]
        channel.notices_sha256 = self.blobs.put_bytes(build_notices_json(current))
