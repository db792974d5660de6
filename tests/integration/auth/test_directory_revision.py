"""Cached principals never outlive what they were computed from, in any process (review of
issue 11, cross-process cache): a directory (LDAP sync or sign-in, OIDC sign-in) taking a user
out of a group that gives a role, a channel deleted (its grants, whose id SQLite reuses), and a
revocation that lands while a credential is being read all move the revision in time."""

from __future__ import annotations

import time

import pytest

from stockade.auth import authenticator as authenticator_module
from stockade.auth.authenticator import Credentials
from stockade.auth.identity import ExternalGroup, ExternalIdentity, IdentityService
from stockade.auth.permissions import Level
from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.auth.tokens import TokenService
from stockade.channels.members import MemberService
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import AuthenticationError
from stockade.db.engine import transaction

OPS = ExternalGroup("cn=ops,ou=groups,dc=example,dc=org", "ops")
GROUP_ROLES = {"ops": ["admin"]}


def sync(
    container: Container, groups: tuple[ExternalGroup, ...], roles: dict[str, list[str]]
) -> int:
    identity = ExternalIdentity("ldap", "uid=dora,dc=example,dc=org", "dora", groups=groups)
    with transaction(container.factory) as session:
        user = IdentityService(session).upsert(identity, group_roles=roles)
        return user.id


@pytest.mark.parametrize("change", ["left the group", "mapping dropped"])
def test_losing_a_role_through_the_directory_reaches_every_process(
    container: Container, other: Container, change: str
) -> None:
    user_id = sync(container, (OPS,), GROUP_ROLES)
    with transaction(container.factory) as session:
        secret = TokenService(session, max_days=30).create(user_id, "t", 5).secret
    creds = Credentials(token=secret, ip="192.0.2.10")
    assert "admin" in other.authenticator.authenticate(creds).roles  # cached for 15 s
    if change == "left the group":
        sync(container, (), GROUP_ROLES)
    else:
        sync(container, (OPS,), {})
    time.sleep(authenticator_module.REVISION_CHECK_SECONDS + 0.1)
    assert "admin" not in other.authenticator.authenticate(creds).roles


def test_a_credential_read_before_a_revocation_is_not_cached_after_it(
    container: Container, other: Container, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolution that read the database before another process revoked the token, and ended
    after this process saw the new revision, must not be remembered as current."""
    user_id = sync(container, (), {})
    with transaction(container.factory) as session:
        issued = TokenService(session, max_days=30).create(user_id, "t", 5)
    creds = Credentials(token=issued.secret, ip="192.0.2.10")
    authenticator = other.authenticator
    resolve = authenticator._resolve

    def slow_resolve(given: Credentials) -> Principal:
        found = resolve(given)  # read before the revocation below
        with transaction(container.factory) as session:
            TokenService(session, max_days=30).revoke(admin, issued.record.id)
        authenticator._revision_read_at = float("-inf")  # another request follows the revision
        authenticator._follow_revision(time.monotonic())
        return found

    monkeypatch.setattr(authenticator, "_resolve", slow_resolve)
    assert authenticator.authenticate(creds).user_id == user_id  # it was valid when read
    monkeypatch.setattr(authenticator, "_resolve", resolve)
    with pytest.raises(AuthenticationError):
        authenticator.authenticate(creds)


def test_a_deleted_channels_grants_do_not_open_the_next_channel_with_its_id(
    container: Container, other: Container, admin: Principal
) -> None:
    """SQLite hands a deleted row's id to the next row: a grant cached with the principal must
    not open the channel that takes the deleted channel's id."""
    with transaction(container.factory) as session:
        UserService(session).create_user("member", "correct-horse-battery")
        UserService(session).create_user("newcomer", "correct-horse-battery")
        old = ChannelService(session).create(admin, "old-team", privacy="private")
        old_id = old.id
    with transaction(container.factory) as session:
        MemberService(session).grant(admin, "old-team", "manage", user="member")
        member = UserService(session).get_by_name("member")
        secret = TokenService(session, max_days=30).create(member.id, "t", 5).secret
    creds = Credentials(token=secret, ip="192.0.2.10")
    assert other.authenticator.authenticate(creds).grants.get(old_id) == Level.MANAGE
    with transaction(container.factory) as session:
        ChannelService(session).delete(admin, "old-team")
    with transaction(container.factory) as session:
        users = UserService(session)
        newcomer = users.principal_for(users.get_by_name("newcomer"), via="password")
        new_id = ChannelService(session).create(newcomer, "fresh", privacy="private").id
    if new_id != old_id:
        pytest.skip("this database does not reuse ids (PostgreSQL sequences)")
    time.sleep(authenticator_module.REVISION_CHECK_SECONDS + 0.1)
    assert other.authenticator.authenticate(creds).grants.get(new_id) is None
