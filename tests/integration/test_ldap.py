"""The LDAP / Active Directory provider against a real slapd (tests/support/slapd.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from stockade.audit.models import AuditEvent
from stockade.auth.errors import InvalidCredentialsError
from stockade.auth.identity import ExternalIdentity
from stockade.auth.ldap import LdapDirectory, LdapSyncResult, run_ldap_sync, sync_directory
from stockade.auth.models import Group, GroupMember, User
from stockade.auth.service import UserService
from stockade.container import Container
from stockade.core.errors import ConfigurationError, UnavailableError
from stockade.db.engine import transaction
from stockade.settings import LdapSettings
from tests.support.slapd import (
    GROUPS_BASE,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    _free_ports,
    group_dn,
    run_slapd,
)

ROLE_MAP = {"admins": ["admin"], "staff": ["author"]}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One directory for the tests that only read it."""
    with run_slapd(tmp_path_factory.mktemp("slapd")) as directory:
        yield directory


@pytest.fixture
def fresh_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A directory of its own, for a test that changes it."""
    with run_slapd(tmp_path / "slapd") as directory:
        yield directory


def ldap(slapd: Slapd, **overrides: object) -> LdapDirectory:
    return LdapDirectory(LdapSettings.model_validate(slapd.settings(**overrides)))


def names(identity: ExternalIdentity | None) -> list[str]:
    assert identity is not None
    return [g.name for g in identity.groups]


def login(slapd: Slapd, uid: str, **overrides: object) -> ExternalIdentity | None:
    return ldap(slapd, **overrides).authenticate(uid, PEOPLE[uid].password)


# --- sign-in -------------------------------------------------------------------------------------


def test_bind_login_gives_the_identity_and_nested_groups(slapd: Slapd) -> None:
    identity = login(slapd, "alice")
    assert identity is not None
    assert identity.source == "ldap"
    assert identity.external_id == PEOPLE["alice"].dn
    assert (identity.username, identity.email) == ("alice", "alice@example.org")
    assert identity.display_name == "Alice Archer"
    assert identity.active
    assert names(identity) == ["developers", "staff"]  # staff through developers
    assert {g.external_id for g in identity.groups} == {group_dn("developers"), group_dn("staff")}


def test_without_nested_groups_only_direct_ones(slapd: Slapd) -> None:
    assert names(login(slapd, "alice", nested_groups=False)) == ["developers"]
    assert names(login(slapd, "erin", nested_groups=False)) == ["staff"]


def test_group_cycles_end(slapd: Slapd) -> None:
    assert names(login(slapd, "frank")) == ["loop-a", "loop-b"]


def test_wrong_password_is_refused(slapd: Slapd) -> None:
    with pytest.raises(InvalidCredentialsError, match="wrong username or password"):
        ldap(slapd).authenticate("alice", "not-her-password")


def test_unknown_user_is_none(slapd: Slapd) -> None:
    assert ldap(slapd).authenticate("nobody", "whatever") is None
    assert ldap(slapd).authenticate("", "whatever") is None


@pytest.mark.parametrize("username", ["alice", "nobody", "dave"])
def test_empty_password_is_refused_never_an_unauthenticated_bind(
    slapd: Slapd, username: str
) -> None:
    with pytest.raises(InvalidCredentialsError):
        ldap(slapd).authenticate(username, "")


@pytest.mark.parametrize("password", ["dave-password-1", "a-wrong-one"])
def test_disabled_user_comes_back_inactive(slapd: Slapd, password: str) -> None:
    identity = ldap(slapd).authenticate("dave", password)
    assert identity is not None
    assert not identity.active
    assert identity.external_id == PEOPLE["dave"].dn


def test_without_disabled_filter_the_disabled_user_signs_in(slapd: Slapd) -> None:
    identity = login(slapd, "dave", disabled_filter=None)
    assert identity is not None and identity.active


@pytest.mark.parametrize(
    "username", ["*)(uid=*", "*", "al*", "alice)(|(uid=*", "*)(|(objectClass=*", "alice\x00"]
)
def test_filter_injection_finds_nobody(slapd: Slapd, username: str) -> None:
    directory = ldap(slapd)
    assert directory.lookup(username) is None
    assert directory.authenticate(username, "alice-password-1") is None


def test_login_attribute_can_be_mail(slapd: Slapd) -> None:
    directory = ldap(slapd, login_attribute="mail")
    identity = directory.authenticate("bob@example.org", "bob-password-1")
    assert identity is not None
    assert identity.username == "bob@example.org"
    assert identity.external_id == PEOPLE["bob"].dn


# --- memberOf (the Active Directory layout) ------------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_member_of_mode_agrees_with_group_member_mode(slapd: Slapd, nested: bool) -> None:
    for uid in ("alice", "bob", "carol", "erin", "frank"):
        by_member = login(slapd, uid, nested_groups=nested)
        by_member_of = login(slapd, uid, nested_groups=nested, membership="memberOf")
        assert by_member == by_member_of, uid


def test_member_of_mode_keeps_to_the_group_base(slapd: Slapd) -> None:
    identity = login(
        slapd, "alice", membership="memberOf", group_base=f"ou=elsewhere,{GROUPS_BASE}"
    )
    assert names(identity) == []


def test_group_filter_limits_groups(slapd: Slapd) -> None:
    only = "(&(objectClass=groupOfNames)(cn=staff))"
    for mode in ("group-member", "memberOf"):
        assert names(login(slapd, "alice", membership=mode, group_filter=only)) == [], mode
        assert names(login(slapd, "erin", membership=mode, group_filter=only)) == ["staff"], mode


# --- TLS -----------------------------------------------------------------------------------------


def test_ldaps_with_the_ca_file(slapd: Slapd) -> None:
    directory = ldap(slapd, url=slapd.ldaps_url)
    assert directory.tls_mode == "ldaps"
    assert names(directory.authenticate("alice", "alice-password-1")) == ["developers", "staff"]


def test_start_tls_with_the_ca_file(slapd: Slapd) -> None:
    directory = ldap(slapd, start_tls=True)
    assert directory.test_connection().tls == "starttls"
    assert login(slapd, "bob", start_tls=True) is not None


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_a_certificate_from_another_ca_is_refused(slapd: Slapd, mode: str) -> None:
    tls = {"url": slapd.ldaps_url} if mode == "ldaps" else {"start_tls": True}
    directory = ldap(slapd, ca_file=slapd.wrong_ca_file, **tls)
    with pytest.raises(UnavailableError) as caught:
        directory.authenticate("alice", "alice-password-1")
    assert caught.value.code == "ldap:tls"
    assert "certificate verify failed" in caught.value.detail


def test_verify_tls_off_accepts_any_certificate(slapd: Slapd) -> None:
    settings = {"url": slapd.ldaps_url, "ca_file": slapd.wrong_ca_file, "verify_tls": False}
    assert login(slapd, "alice", **settings) is not None
    assert login(slapd, "alice", start_tls=True, ca_file=None, verify_tls=False) is not None


def test_ldaps_against_a_plain_port_is_a_tls_error(slapd: Slapd) -> None:
    with pytest.raises(UnavailableError) as caught:
        ldap(slapd, url=slapd.url.replace("ldap://", "ldaps://")).test_connection()
    assert caught.value.code == "ldap:tls"


def test_a_missing_ca_file_is_named(slapd: Slapd, tmp_path: Path) -> None:
    with pytest.raises(UnavailableError) as caught:
        ldap(slapd, url=slapd.ldaps_url, ca_file=tmp_path / "nope.pem").test_connection()
    assert caught.value.code == "ldap:tls" and "nope.pem" in caught.value.detail


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"bind_password": "not-the-service-password"},
        {"bind_dn": "cn=nobody,ou=services,dc=example,dc=org"},
    ],
)
def test_wrong_service_bind_names_the_dn_not_the_password(
    slapd: Slapd, overrides: dict[str, str]
) -> None:
    directory = ldap(slapd, **overrides)
    for call in (
        lambda: directory.authenticate("alice", "alice-password-1"),
        directory.test_connection,
    ):
        with pytest.raises(UnavailableError) as caught:
            call()
        assert caught.value.code == "ldap:bind-failed"
        assert str(directory.settings.bind_dn) in caught.value.detail
        assert "invalidCredentials" in caught.value.detail
        for secret in (SERVICE_PASSWORD, "not-the-service-password", "alice-password-1"):
            assert secret not in caught.value.detail and secret not in str(caught.value)


def test_empty_service_password_is_refused(slapd: Slapd) -> None:
    with pytest.raises(UnavailableError) as caught:
        ldap(slapd, bind_password="").test_connection()
    assert caught.value.code == "ldap:bind-failed"


def test_anonymous_bind_without_a_bind_dn(slapd: Slapd) -> None:
    directory = ldap(slapd, bind_dn=None, bind_password=None)
    assert directory.test_connection().bound_as == "anonymous"
    assert login(slapd, "carol", bind_dn=None, bind_password=None) is not None


def test_closed_port_is_unreachable_at_once(slapd: Slapd) -> None:
    url = f"ldap://127.0.0.1:{_free_ports(1)[0]}"
    started = time.monotonic()
    with pytest.raises(UnavailableError) as caught:
        ldap(slapd, url=url).authenticate("alice", "alice-password-1")
    assert time.monotonic() - started < 2
    assert caught.value.code == "ldap:unreachable"
    assert url in caught.value.detail


def test_a_server_that_never_answers_times_out(slapd: Slapd) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody ever answers
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            ldap(slapd, url=url, timeout_s=0.5).test_connection()
        assert time.monotonic() - started < 5
    assert caught.value.code == "ldap:unreachable"
    assert url in caught.value.detail


def test_a_missing_base_is_a_search_failure(slapd: Slapd) -> None:
    with pytest.raises(UnavailableError) as caught:
        ldap(slapd, user_base="ou=nowhere,dc=example,dc=org").test_connection()
    assert caught.value.code == "ldap:search-failed"
    assert "ou=nowhere,dc=example,dc=org" in caught.value.detail


def test_settings_without_an_url_are_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        LdapDirectory(LdapSettings())
    assert caught.value.code == "ldap:not-configured"
    with pytest.raises(ConfigurationError, match="ldap://"):
        LdapDirectory(LdapSettings(url="http://127.0.0.1:389"))


# --- reading the whole directory -----------------------------------------------------------------


def test_test_connection_counts(slapd: Slapd) -> None:
    report = ldap(slapd).test_connection("erin")
    assert (report.users, report.disabled_users, report.groups) == (6, 1, 5)
    assert report.bound_as == SERVICE_DN and report.tls == "none"
    assert report.user is not None and names(report.user) == ["staff"]
    assert ldap(slapd).test_connection("nobody").user is None


@pytest.mark.parametrize("membership", ["group-member", "memberOf"])
def test_iter_users_matches_sign_in(slapd: Slapd, membership: str) -> None:
    users = {u.username: u for u in ldap(slapd, membership=membership).iter_users()}
    assert set(users) == set(PEOPLE)
    assert not users["dave"].active
    assert all(u.active for name, u in users.items() if name != "dave")
    for uid in ("alice", "bob", "carol", "erin", "frank"):
        assert users[uid] == login(slapd, uid, membership=membership), uid


def test_paged_search_reads_past_one_page(
    fresh_slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stockade.auth.ldap.PAGE_SIZE", 2)
    users = list(ldap(fresh_slapd).iter_users())
    assert len(users) == len(PEOPLE)


# --- the sync ------------------------------------------------------------------------------------


def sync(container: Container, slapd: Slapd, **overrides: object) -> LdapSyncResult:
    settings = LdapSettings.model_validate(slapd.settings(group_roles=ROLE_MAP, **overrides))
    return run_ldap_sync(container.factory, settings)


def user_state(container: Container, username: str) -> tuple[bool, list[str], bool]:
    """(is_active, LDAP groups, is_admin) as Stockade sees the user."""
    with transaction(container.factory) as session:
        user = UserService(session).get_by_name(username)
        groups = session.scalars(
            select(Group.name)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user.id, Group.source == "ldap")
            .order_by(Group.name)
        ).all()
        principal = UserService(session).principal_for(user, via="ldap")
        return user.is_active, list(groups), principal.is_admin


def sync_events(container: Container) -> list[AuditEvent]:
    with transaction(container.factory) as session:
        query = (
            select(AuditEvent).where(AuditEvent.event_type == "ldap.sync").order_by(AuditEvent.seq)
        )
        return list(session.scalars(query))


def test_sync_imports_users_groups_and_roles(container: Container, fresh_slapd: Slapd) -> None:
    result = sync(container, fresh_slapd)
    assert sorted(result.created) == sorted(PEOPLE)
    assert result.groups == 5
    assert user_state(container, "alice") == (True, ["developers", "staff"], False)
    assert user_state(container, "carol") == (True, ["admins"], True)  # admins -> admin
    assert user_state(container, "dave") == (False, [], False)
    with transaction(container.factory) as session:
        alice = UserService(session).get_by_name("alice")
        assert (alice.source, alice.external_id) == ("ldap", PEOPLE["alice"].dn)
        assert alice.email == "alice@example.org" and alice.display_name == "Alice Archer"
        staff = session.scalar(select(Group).where(Group.name == "staff"))
        assert staff is not None and staff.external_id == group_dn("staff")
        principal = UserService(session).principal_for(alice, via="ldap")
        assert "author" in principal.roles  # staff -> author
    events = sync_events(container)
    assert len(events) == 1
    assert events[0].outcome == "success" and events[0].actor_kind == "system"
    assert events[0].details is not None
    assert events[0].details["users"] == 6 and events[0].details["created"] == 6
    again = sync(container, fresh_slapd)
    assert (again.created, again.updated, again.disabled) == ([], [], [])


def test_sync_follows_changes_in_the_directory(container: Container, fresh_slapd: Slapd) -> None:
    sync(container, fresh_slapd)
    fresh_slapd.disable("bob")
    fresh_slapd.delete_user("erin")
    fresh_slapd.remove_member("developers", "alice")
    fresh_slapd.add_member("admins", "frank")
    fresh_slapd.remove_member("admins", "carol")  # groupOfNames needs one member at least
    result = sync(container, fresh_slapd)
    assert sorted(result.disabled) == ["bob", "erin"]
    assert user_state(container, "bob") == (False, ["developers", "staff"], False)
    assert user_state(container, "erin")[0] is False
    assert user_state(container, "alice") == (
        True,
        [],
        False,
    )  # no longer in developers (nor staff)
    assert user_state(container, "carol") == (True, [], False)  # lost admin with the group
    assert user_state(container, "frank") == (True, ["admins", "loop-a", "loop-b"], True)
    with transaction(container.factory) as session:
        erin = UserService(session).get_by_name("erin")
        assert erin.disabled_reason == "not found in ldap"
    assert len(sync_events(container)) == 2


def test_a_group_deleted_in_the_directory_loses_its_members(
    container: Container, fresh_slapd: Slapd
) -> None:
    sync(container, fresh_slapd)
    fresh_slapd.delete(group_dn("admins"))
    sync(container, fresh_slapd)
    assert user_state(container, "carol") == (True, [], False)


def test_sync_skips_names_held_by_local_users(container: Container, fresh_slapd: Slapd) -> None:
    with transaction(container.factory) as session:
        UserService(session).create_user("frank", "a-local-password-1")
    result = sync(container, fresh_slapd)
    assert result.skipped == ["frank"]
    assert len(result.created) == 5
    with transaction(container.factory) as session:
        frank = UserService(session).get_by_name("frank")
        assert frank.source == "local" and frank.is_active


def test_a_directory_returning_nobody_disables_nobody(
    container: Container, fresh_slapd: Slapd
) -> None:
    sync(container, fresh_slapd)
    with pytest.raises(UnavailableError) as caught:
        sync(container, fresh_slapd, user_filter="(objectClass=nothingLikeThis)")
    assert caught.value.code == "ldap:empty"
    assert user_state(container, "alice")[0] is True
    failed = sync_events(container)[-1]
    assert failed.outcome == "failure" and failed.details == {
        "reason": "ldap:empty",
        "detail": caught.value.detail,
    }


def test_a_failed_sync_changes_nothing_and_is_audited(
    container: Container, fresh_slapd: Slapd
) -> None:
    sync(container, fresh_slapd)
    url = f"ldap://127.0.0.1:{_free_ports(1)[0]}"
    with pytest.raises(UnavailableError):
        sync(container, fresh_slapd, url=url)
    assert user_state(container, "alice")[0] is True
    failed = sync_events(container)[-1]
    assert failed.outcome == "failure"
    assert failed.details is not None and failed.details["reason"] == "ldap:unreachable"


def test_sync_directory_in_a_caller_transaction(container: Container, slapd: Slapd) -> None:
    """The job and the API call ``run_ldap_sync``; ``sync_directory`` works in any transaction."""
    with transaction(container.factory) as session:
        result = sync_directory(session, ldap(slapd, group_roles=ROLE_MAP))
        assert result.users == 6
        assert session.scalar(select(User).where(User.username == "carol")) is not None
