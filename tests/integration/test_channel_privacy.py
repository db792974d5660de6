"""Issue 11 item 4: a subchannel is never more open than its parent, on every decision path."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from stockade.audit.models import AuditEvent
from stockade.auth.permissions import Permission
from stockade.auth.principal import ANONYMOUS, Principal
from stockade.auth.service import UserService
from stockade.channels.members import MemberService
from stockade.channels.models import Channel
from stockade.channels.privacy import PrivacyLooserThanParentError
from stockade.channels.service import ChannelChanges, ChannelService, channel_ref
from stockade.container import Container
from stockade.core.errors import AuthenticationError, NotFoundError
from stockade.db.engine import transaction
from stockade.mirroring.service import MirrorService, MirrorSpec


def _user(container: Container, name: str) -> Principal:
    with transaction(container.factory) as session:
        users = UserService(session)
        user = users.create_user(name, "a-long-password-1")
        return users.principal_for(user, via="password")


def _refresh(container: Container, name: str) -> Principal:
    with transaction(container.factory) as session:
        users = UserService(session)
        return users.principal_for(users.get_by_name(name), via="password")


def _privacy(container: Container, name: str) -> str:
    with container.factory() as session:
        row = session.scalar(select(Channel).where(Channel.name == name))
        assert row is not None
        return row.privacy


def test_subchannel_takes_its_parents_privacy(container: Container, admin: Principal) -> None:
    with transaction(container.factory) as session:
        channels = ChannelService(session)
        channels.create(admin, "team", privacy="private")
        child = channels.create(admin, "team/nightly")
        deeper = channels.create(admin, "team/nightly/x")
        assert (child.privacy, deeper.privacy) == ("private", "private")
        channels.create(admin, "open")
        assert channels.create(admin, "open/kid").privacy == "public"
        assert channels.create(admin, "open/shut", privacy="private").privacy == "private"


def test_looser_subchannel_is_refused(container: Container, admin: Principal) -> None:
    with transaction(container.factory) as session:
        channels = ChannelService(session)
        channels.create(admin, "team", privacy="authenticated")
        channels.create(admin, "team/nightly")
    with transaction(container.factory) as session, pytest.raises(PrivacyLooserThanParentError):
        ChannelService(session).create(admin, "team/public", privacy="public")
    with (
        transaction(container.factory) as session,
        pytest.raises(PrivacyLooserThanParentError) as e,
    ):
        ChannelService(session).update(admin, "team/nightly", ChannelChanges(privacy="public"))
    assert e.value.code == "channel:privacy-looser-than-parent"
    assert e.value.extra["field"] == "privacy"
    assert _privacy(container, "team/nightly") == "authenticated"


def test_tightening_a_parent_tightens_its_subchannels(
    container: Container, admin: Principal
) -> None:
    with transaction(container.factory) as session:
        channels = ChannelService(session)
        channels.create(admin, "team")
        channels.create(admin, "team/nightly")
        channels.create(admin, "team/nightly/deep", privacy="authenticated")
        channels.create(admin, "team/locked", privacy="private")
        channels.update(admin, "team", ChannelChanges(privacy="authenticated"))
    assert _privacy(container, "team/nightly") == "authenticated"
    assert _privacy(container, "team/nightly/deep") == "authenticated"
    with transaction(container.factory) as session:
        ChannelService(session).update(admin, "team", ChannelChanges(privacy="private"))
    assert {_privacy(container, n) for n in ("team/nightly", "team/nightly/deep")} == {"private"}
    with transaction(container.factory) as session:  # loosening the parent leaves them closed
        ChannelService(session).update(admin, "team", ChannelChanges(privacy="public"))
    assert _privacy(container, "team/locked") == "private"
    assert _privacy(container, "team/nightly") == "private"
    with container.factory() as session:
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.event_type == "channel.update", AuditEvent.target_name == "team/nightly"
            )
        ).all()
    assert [(e.before, e.after) for e in events][:1] == [
        ({"privacy": "public"}, {"privacy": "authenticated"})
    ]


def _legacy_public_child(container: Container, admin: Principal) -> None:
    """A subchannel stored public under a private parent, as older versions allowed."""
    with transaction(container.factory) as session:
        channels = ChannelService(session)
        channels.create(admin, "team", privacy="private")
        channels.create(admin, "team/nightly")
        session.execute(
            update(Channel).where(Channel.name == "team/nightly").values(privacy="public")
        )


def test_read_time_privacy_is_the_strictest_along_the_path(
    container: Container, admin: Principal
) -> None:
    _legacy_public_child(container, admin)
    alice = _user(container, "alice")
    with container.factory() as session:
        channels = ChannelService(session)
        child = channels.find("team/nightly")
        assert child is not None
        assert channel_ref(child).privacy == "private"
        with pytest.raises(AuthenticationError):  # anonymous: 401
            channels.get(ANONYMOUS, "team/nightly", Permission.CHANNEL_READ)
        with pytest.raises(NotFoundError):  # signed in without access: 404
            channels.get(alice, "team/nightly", Permission.CHANNEL_READ)
        assert channels.list_visible(ANONYMOUS) == []
        assert channels.list_visible(alice, prefix="team") == []
    files = container.locator.channel("team/nightly")  # the conda endpoints' read model
    assert files is not None and files.ref.privacy == "private"


def test_members_of_the_parent_are_members_of_the_subchannel(
    container: Container, admin: Principal
) -> None:
    _legacy_public_child(container, admin)
    _user(container, "bob")
    _user(container, "carol")
    with transaction(container.factory) as session:
        ChannelService(session).create(admin, "team/own", privacy="private")
        MemberService(session).grant(admin, "team", "read", user="bob")
        MemberService(session).grant(admin, "team/own", "read", user="carol")
    bob, carol = _refresh(container, "bob"), _refresh(container, "carol")
    with container.factory() as session:
        channels = ChannelService(session)
        assert channels.get(bob, "team/nightly", Permission.CHANNEL_READ).name == "team/nightly"
        assert {c.name for c in channels.list_visible(bob)} == {"team", "team/nightly", "team/own"}
        # a grant on the subchannel alone opens that subchannel only
        assert {c.name for c in channels.list_visible(carol)} == {"team/own"}


def test_mirror_into_a_subchannel_takes_the_parents_privacy(
    container: Container,
    admin: Principal,
) -> None:
    with transaction(container.factory) as session:
        ChannelService(session).create(admin, "team", privacy="private")
        MirrorService(session, container.secrets).create(
            admin,
            "team-mirror",
            MirrorSpec(source="https://conda.example.org/upstream", mode="passive"),
            channel="team/mirror",
            verify_source=False,  # a made-up source
        )
    assert _privacy(container, "team/mirror") == "private"
    with transaction(container.factory) as session, pytest.raises(PrivacyLooserThanParentError):
        MirrorService(session, container.secrets).create(
            admin,
            "team-mirror-2",
            MirrorSpec(source="https://conda.example.org/upstream", mode="passive"),
            channel="team/mirror2",
            privacy="public",
            verify_source=False,
        )
