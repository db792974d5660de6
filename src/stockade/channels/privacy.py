"""Privacy along a channel's path: a subchannel is never more open than its parent.

The rule has three parts, each enforced here so that no surface can forget one:

- a subchannel is created with its parent's privacy unless a stricter one is asked for, and a
  looser one is refused (``channel:privacy-looser-than-parent``);
- making a channel stricter makes every subchannel at least as strict (stored, audited);
- at read time the *effective* privacy is the strictest along the path, so a row that escaped the
  first two rules (older data, a direct database edit) still cannot open what its parent closes.

Members of a parent are members of its subchannels: ownership and grants on an ancestor count for
the subchannel too (``ChannelRef.lineage``); a grant on the subchannel alone opens only it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from stockade.auth.access import ChannelRef
from stockade.auth.permissions import Privacy
from stockade.channels.models import Channel
from stockade.core.errors import InvalidInputError

_RANK = {Privacy.PUBLIC: 0, Privacy.AUTHENTICATED: 1, Privacy.PRIVATE: 2}


class PrivacyLooserThanParentError(InvalidInputError):
    code = "channel:privacy-looser-than-parent"


def _known(privacy: str) -> Privacy:
    """A stored privacy; an unknown value counts as private (fail closed)."""
    try:
        return Privacy(privacy)
    except ValueError:
        return Privacy.PRIVATE


def rank(privacy: str) -> int:
    """How closed a privacy is: public < authenticated < private."""
    return _RANK[_known(privacy)]


def strictest(privacies: Iterable[str]) -> Privacy:
    return max((_known(p) for p in privacies), key=rank, default=Privacy.PUBLIC)


def ancestor_names(name: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``, root first."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def require_not_looser(name: str, privacy: str, parent_privacy: str) -> None:
    if rank(privacy) < rank(parent_privacy):
        raise PrivacyLooserThanParentError(
            f"channel {name!r} cannot be {privacy}: its parent channel is {parent_privacy}, "
            "and a subchannel is never more open than its parent",
            field="privacy",
        )


def ancestors(session: Session, channel: Channel) -> list[Channel]:
    """The channel's ancestors, root first (missing ones are skipped)."""
    names = ancestor_names(channel.name)
    if not names:
        return []
    rows = {c.name: c for c in session.scalars(select(Channel).where(Channel.name.in_(names)))}
    return [rows[n] for n in names if n in rows]


def descendants(session: Session, channel: Channel) -> list[Channel]:
    return list(
        session.scalars(
            select(Channel)
            .where(Channel.name.startswith(channel.name + "/", autoescape=True))
            .order_by(Channel.name)
        ).all()
    )


def refs_for(session: Session, channels: Sequence[Channel]) -> dict[int, ChannelRef]:
    """Access references (effective privacy, lineage) for many channels in one extra query."""
    by_name = {c.name: c for c in channels}
    missing = {a for c in channels for a in ancestor_names(c.name)} - by_name.keys()
    if missing:
        for row in session.scalars(select(Channel).where(Channel.name.in_(sorted(missing)))):
            by_name[row.name] = row
    refs: dict[int, ChannelRef] = {}
    for channel in channels:
        line = [by_name[n] for n in ancestor_names(channel.name) if n in by_name]
        refs[channel.id] = ChannelRef(
            id=channel.id,
            name=channel.name,
            privacy=strictest([*(a.privacy for a in line), channel.privacy]).value,
            owner_id=channel.owner_id,
            lineage=tuple((a.id, a.owner_id) for a in line),
        )
    return refs


def channel_ref(channel: Channel, session: Session | None = None) -> ChannelRef:
    """The access reference of one channel (its ancestors are read from its session)."""
    session = session or object_session(channel)
    if session is None:  # detached: decide on the parent-free view only if it has no parent
        if "/" in channel.name:
            raise RuntimeError(f"channel {channel.name!r} is detached from its session")
        return ChannelRef(channel.id, channel.name, channel.privacy, channel.owner_id)
    return refs_for(session, [channel])[channel.id]
