"""Sign-in throttling and credential caches are shared by every process (ARCHITECTURE: "No
per-process state that matters"): two containers on one database stand for two workers."""

from __future__ import annotations

import contextlib
import time

import pytest
from sqlalchemy import select

from stockade.auth import authenticator as authenticator_module
from stockade.auth.authenticator import Credentials
from stockade.auth.models import SignInFailures, User
from stockade.auth.principal import Principal
from stockade.auth.ratelimit import LOCKED_MESSAGE, account_key, address_key
from stockade.auth.service import UserService
from stockade.auth.tokens import TokenService
from stockade.container import Container
from stockade.core.errors import AuthenticationError, TooManyRequestsError
from stockade.db.engine import transaction

PASSWORD = "correct-horse-battery"
HOME = "192.0.2.10"
ATTACKER = "198.51.100.7"


def make_user(container: Container, name: str, *, admin: bool = False) -> None:
    with transaction(container.factory) as session:
        UserService(session).create_user(name, PASSWORD, admin=admin)


def fail_times(container: Container, name: str, ip: str, times: int) -> list[str]:
    codes = []
    for i in range(times):
        with pytest.raises(AuthenticationError) as info:
            container.authenticator.password_principal(name, f"wrong-{i}", ip=ip)
        codes.append(info.value.code)
    return codes


def test_ten_failures_lock_a_name_from_that_address_only(container: Container) -> None:
    make_user(container, "root-ish", admin=True)
    fail_times(container, "root-ish", ATTACKER, 10)
    with pytest.raises(AuthenticationError) as locked:
        container.authenticator.password_principal("root-ish", PASSWORD, ip=ATTACKER)
    assert locked.value.code == "auth:locked"
    # the attacker cannot lock the admin out: from the admin's own address, the password works
    principal = container.authenticator.password_principal("root-ish", PASSWORD, ip=HOME)
    assert principal.is_admin


def test_a_lock_says_nothing_about_whether_the_account_exists(container: Container) -> None:
    make_user(container, "real-person")
    answers = []
    for name, ip in (("real-person", ATTACKER), ("nobody-by-this-name", "198.51.100.8")):
        fail_times(container, name, ip, 10)
        with pytest.raises(AuthenticationError) as locked:
            container.authenticator.password_principal(name, PASSWORD, ip=ip)
        answers.append((locked.value.code, str(locked.value)))
    assert answers[0] == answers[1] == ("auth:locked", LOCKED_MESSAGE)


def test_the_lock_is_one_name_whatever_its_spelling(container: Container) -> None:
    assert account_key("Alice ", ATTACKER) == account_key("alice", ATTACKER)
    assert account_key("alice", ATTACKER) != account_key("alice", HOME)
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1")  # one /64
    assert address_key("::ffff:10.0.0.1") == address_key("10.0.0.1")


def test_locks_and_limits_are_shared_by_processes(container: Container, other: Container) -> None:
    make_user(container, "shared-lock")
    fail_times(container, "shared-lock", ATTACKER, 10)  # all on the first process
    with pytest.raises(AuthenticationError) as locked:
        other.authenticator.password_principal("shared-lock", PASSWORD, ip=ATTACKER)
    assert locked.value.code == "auth:locked"
    # the per-address limit too: the first process's failures count on the second
    per_minute = container.settings.auth.login_attempts_per_minute
    make_user(container, "someone-else")
    for i in range(per_minute):
        with contextlib.suppress(AuthenticationError):
            container.authenticator.password_principal(f"guess-{i}", "x" * 8, ip="203.0.113.5")
    with pytest.raises(TooManyRequestsError):
        other.authenticator.password_principal("someone-else", PASSWORD, ip="203.0.113.5")
    with container.factory() as session:  # names are never stored, only hashes
        keys = list(session.scalars(select(SignInFailures.key)))
    assert keys and not any("guess" in k or "shared-lock" in k for k in keys)


def test_odd_names_and_passwords_fail_as_wrong_credentials(container: Container) -> None:
    make_user(container, "plain")
    for name, password in (("pl\x00ain", PASSWORD), ("plain", "pass\x00word"), ("p" * 5000, "x")):
        with pytest.raises(AuthenticationError) as info:
            container.authenticator.password_principal(name, password, ip=HOME)
        assert info.value.code == "auth:invalid-credentials"
    malformed = Credentials(malformed=True, ip=HOME)
    assert not malformed.empty
    with pytest.raises(AuthenticationError):
        container.authenticator.authenticate(malformed)


def issue(container: Container, name: str) -> tuple[str, int]:
    make_user(container, name)
    with transaction(container.factory) as session:
        user = session.scalars(select(User).where(User.username == name)).one()
        issued = TokenService(session, max_days=30).create(user.id, "t", 5)
        return issued.secret, issued.record.id


def test_a_revocation_on_one_process_is_seen_by_the_others(
    container: Container, other: Container, admin: Principal
) -> None:
    secret, token_id = issue(container, "revoked-elsewhere")
    creds = Credentials(token=secret, ip=HOME)
    assert other.authenticator.authenticate(creds).username == "revoked-elsewhere"
    assert other.authenticator.cached(creds) is not None  # cached for the next 15 s
    with transaction(container.factory) as session:
        TokenService(session, max_days=30).revoke(admin, token_id)
    # refused by the other process within the documented bound (it reads the revision at least
    # once a second), not after its 15 s cache life: polled, no longer than needed
    bound = authenticator_module.REVISION_CHECK_SECONDS + 0.5  # + the query, on a busy machine
    started = time.monotonic()
    while True:
        try:
            other.authenticator.authenticate(creds)
        except AuthenticationError:
            break
        assert time.monotonic() - started < bound, "the revoked token still works elsewhere"
        time.sleep(0.02)
    # and stays refused: the refusal is what is cached (or, once the shared revision is due to be
    # read again, nothing counts as cached: the next request goes the slow way, refused there)
    with contextlib.suppress(AuthenticationError):
        assert other.authenticator.cached(creds) is None, "a revoked token served from the cache"
    with pytest.raises(AuthenticationError):
        other.authenticator.authenticate(creds)


@pytest.mark.parametrize("change", ["disable", "delete", "password", "role"])
def test_account_changes_reach_other_processes(
    container: Container, other: Container, admin: Principal, change: str
) -> None:
    secret, _ = issue(container, f"changed-{change}")
    creds = Credentials(token=secret, ip=HOME)
    before = other.authenticator.authenticate(creds)
    assert not before.is_admin
    from stockade.auth.admin import PrincipalAdmin, UserChanges

    with transaction(container.factory) as session:
        principals = PrincipalAdmin(session, admin)
        name = f"changed-{change}"
        if change == "disable":
            principals.update_user(name, UserChanges(is_active=False))
        elif change == "delete":
            principals.delete_user(name)
        elif change == "password":
            principals.update_user(
                name, UserChanges(password="another-password-1", revoke_tokens=True)
            )
        else:
            principals.assign("admin", user=name)
    container.authenticator.forget_all()
    time.sleep(authenticator_module.REVISION_CHECK_SECONDS + 0.1)
    if change == "role":
        assert other.authenticator.authenticate(creds).is_admin
    else:
        with pytest.raises(AuthenticationError):
            other.authenticator.authenticate(creds)


@pytest.mark.parametrize("change", ["token revoked", "removed from the directory"])
def test_changes_made_by_services_alone_reach_every_process(
    container: Container, other: Container, admin: Principal, change: str
) -> None:
    """The revision moves in the same transaction as the change: no edge has to remember to call
    ``forget_all`` (a directory sync job, a sign-in that finds the user gone)."""
    from stockade.auth.identity import IdentityService

    name = "svc-" + change.split(maxsplit=1)[0]
    secret, token_id = issue(container, name)
    creds = Credentials(token=secret, ip=HOME)
    assert other.authenticator.authenticate(creds).username == name
    with transaction(container.factory) as session:
        if change == "token revoked":
            TokenService(session, max_days=30).revoke(admin, token_id)
        else:
            user = session.scalars(select(User).where(User.username == name)).one()
            IdentityService(session).disable_missing_user(user, "not found in ldap")
    time.sleep(authenticator_module.REVISION_CHECK_SECONDS + 0.1)
    with pytest.raises(AuthenticationError):
        other.authenticator.authenticate(creds)
    with pytest.raises(AuthenticationError):
        container.authenticator.authenticate(creds)  # the process that made it, too
