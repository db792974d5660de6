"""LDAP / Active Directory: bind authentication and the directory sync (SPEC §4).

:class:`LdapDirectory` speaks to one directory with ldap3: it finds a user with the service account
(or anonymously), checks the password by binding as the user's DN, and reads the user's groups,
either from the groups' member attribute (OpenLDAP ``groupOfNames``) or from the user's
``memberOf`` (Active Directory, or OpenLDAP's memberof overlay), following nested groups when
asked. :func:`sync_directory` makes the database agree with the whole directory through
:class:`~stockade.auth.identity.IdentityService`.

Failures are :class:`~stockade.core.errors.UnavailableError` with a stable code and never carry
the bind password: ``ldap:unreachable`` (naming the URL), ``ldap:tls``, ``ldap:bind-failed``
(naming the bind DN), ``ldap:search-failed`` (naming the base), ``ldap:error``.
"""

from __future__ import annotations

import math
import re
import ssl
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.audit.service import SYSTEM, Actor, AuditLog
from stockade.auth.errors import InvalidCredentialsError
from stockade.auth.identity import (
    ExternalIdentity,
    IdentityService,
    SyncResult,
    safe_username,
)
from stockade.auth.ldap_groups import (
    Attributes,
    GroupIndex,
    GroupLookup,
    LiveGroups,
    Search,
    first_value,
    ldap_filter,
    normalize_dn,
    resolve_groups,
)
from stockade.auth.models import User
from stockade.core.errors import ConfigurationError, StockadeError, UnavailableError
from stockade.core.urls import URLParseError, parse_url, redact_url
from stockade.db.engine import transaction
from stockade.settings import LdapSettings

with warnings.catch_warnings():
    # ldap3 2.9.1 imports pyasn1's ``tagMap``/``typeMap``, deprecated since pyasn1 0.5
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ldap3")
    import ldap3  # type: ignore[import-untyped]  # ldap3 ships no type information
    from ldap3.core import exceptions as ldap_errors  # type: ignore[import-untyped]  # as above
    from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]  # as above

SOURCE = "ldap"
PAGE_SIZE = 500
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
NO_ATTRIBUTES = ["1.1"]  # RFC 4511: return no attributes
NO_SUCH_OBJECT = 32
WRONG_CREDENTIALS = "wrong username or password"
_TUPLE_TEXT = re.compile(r"""\(['"](.*)['"],\)""", re.DOTALL)


@dataclass(frozen=True)
class LdapTestReport:
    """What ``stockade ldap test`` shows: the directory answers, and what Stockade would see."""

    url: str
    bound_as: str  # the bind DN, or "anonymous"
    tls: str  # ldaps | starttls | none
    users: int
    disabled_users: int
    groups: int
    elapsed_ms: int
    user: ExternalIdentity | None = None  # the user asked about, if any


@dataclass
class LdapSyncResult(SyncResult):
    """A :class:`SyncResult` with the directory's size and the users that could not be imported."""

    users: int = 0
    skipped: list[str] = field(default_factory=list)  # another account holds the name


class _CheckedTls(ldap3.Tls):  # type: ignore[misc]  # ldap3.Tls is untyped (Any)
    """ldap3's TLS, with the server name checked by the ``ssl`` module during the handshake.

    ldap3 2.9 turns the context's hostname check off and then calls ``ssl.match_hostname``, which
    is deprecated (and gone in Python 3.12, where ldap3's fallback refuses IP addresses).
    """

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(cafile=self.ca_certs_file)
        if self.validate == ssl.CERT_NONE:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection.socket = context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host,
        )


def _is_tls_failure(exc: BaseException) -> bool:
    if isinstance(exc, ssl.SSLError | ssl.CertificateError | ldap_errors.LDAPStartTLSError):
        return True
    history = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], list) else []
    return any(isinstance(item[0], ssl.SSLError | ssl.CertificateError) for item in history)


def _reason(exc: BaseException) -> str:
    """ldap3's message; it sometimes arrives as the text of a one-element tuple."""
    text = str(exc.args[0]) if exc.args else ""
    wrapped = _TUPLE_TEXT.fullmatch(text)
    if wrapped:
        text = wrapped.group(1)
    return (text or exc.__class__.__name__)[:300]


class LdapDirectory:
    def __init__(self, settings: LdapSettings) -> None:
        if not settings.url:
            raise ConfigurationError("ldap.url is not set", code="ldap:not-configured")
        url = settings.url.strip()
        try:  # parsed once (stockade.core.urls): scheme and host decided on the parsed form
            parsed = parse_url(url)
        except URLParseError as exc:
            raise ConfigurationError(f"ldap.url is not a URL ({exc})") from None
        if parsed.scheme not in ("ldap", "ldaps") or not parsed.host or parsed.has_userinfo:
            raise ConfigurationError(
                f"ldap.url must be ldap://host or ldaps://host (the bind user and password are "
                f"settings of their own), not {redact_url(url)!r}"
            )
        self.settings = settings
        self.url = url
        self.use_ssl = parsed.scheme == "ldaps"

    @property
    def group_roles(self) -> Mapping[str, Sequence[str]]:
        return self.settings.group_roles

    @property
    def tls_mode(self) -> str:
        if self.use_ssl:
            return "ldaps"
        return "starttls" if self.settings.start_tls else "none"

    # -- connections --------------------------------------------------------------------------

    def _tls(self) -> _CheckedTls:
        """Certificate checks as configured (``ca_file`` alone, or the system's CAs)."""
        ca_file = self.settings.ca_file
        if ca_file is not None and not ca_file.is_file():
            raise UnavailableError(
                f"ldap.ca_file {str(ca_file)!r} is not a readable file", code="ldap:tls"
            )
        return _CheckedTls(
            validate=ssl.CERT_REQUIRED if self.settings.verify_tls else ssl.CERT_NONE,
            ca_certs_file=str(ca_file) if ca_file else None,
        )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """ldap3's exceptions become domain errors naming the URL (never a password)."""
        try:
            yield
        except ldap_errors.LDAPCommunicationError as exc:
            if _is_tls_failure(exc):
                raise UnavailableError(
                    f"TLS with the directory at {self.url} failed: {_reason(exc)}", code="ldap:tls"
                ) from exc
            raise UnavailableError(
                f"cannot reach the directory at {self.url}: {_reason(exc)}", code="ldap:unreachable"
            ) from exc
        except ldap_errors.LDAPStartTLSError as exc:
            raise UnavailableError(
                f"StartTLS with the directory at {self.url} failed: {_reason(exc)}", code="ldap:tls"
            ) from exc
        except ldap_errors.LDAPException as exc:
            raise UnavailableError(
                f"the directory at {self.url} failed: {_reason(exc)}", code="ldap:error"
            ) from exc
        except (KeyError, IndexError, ValueError, TypeError) as exc:  # ldap3 decoding garbage
            raise UnavailableError(
                f"the server at {self.url} does not answer as an LDAP directory",
                code="ldap:error",
            ) from exc

    def _bind(self, who: str | None, password: str | None) -> tuple[ldap3.Connection, bool]:
        """An open connection (TLS as configured) and whether the bind succeeded."""
        timeout = self.settings.timeout_s
        server = ldap3.Server(
            self.url,
            use_ssl=self.use_ssl,
            tls=self._tls() if self.use_ssl or self.settings.start_tls else None,
            connect_timeout=timeout,
            get_info=ldap3.NONE,
        )
        conn = ldap3.Connection(
            server,
            user=who,
            password=password,
            authentication=ldap3.SIMPLE if who else ldap3.ANONYMOUS,
            receive_timeout=max(1, math.ceil(timeout)),
            read_only=True,
            auto_referrals=False,
            raise_exceptions=False,
        )
        try:
            with self._translated():
                conn.open()
                if self.settings.start_tls and not self.use_ssl:
                    conn.start_tls(read_server_info=False)
                return conn, bool(conn.bind())
        except BaseException:
            _close(conn)
            raise

    @contextmanager
    def _service(self) -> Iterator[ldap3.Connection]:
        """A connection bound as the service account (anonymous without ``bind_dn``)."""
        who = self.settings.bind_dn or None
        secret = (
            self.settings.bind_password.get_secret_value() if self.settings.bind_password else ""
        )
        if who and not secret:  # an empty password would make an unauthenticated bind
            raise UnavailableError(
                f"ldap.bind_password is empty for the service account {who!r}",
                code="ldap:bind-failed",
            )
        conn, bound = self._bind(who, secret or None)
        try:
            if not bound:
                outcome = conn.result.get("description") if conn.result else "refused"
                name = f"the service account {who!r}" if who else "an anonymous bind"
                raise UnavailableError(
                    f"the directory at {self.url} refused {name}: {outcome}",
                    code="ldap:bind-failed",
                )
            yield conn
        finally:
            _close(conn)

    def _password_ok(self, dn: str, password: str) -> bool:
        conn, bound = self._bind(dn, password)
        _close(conn)
        return bound

    # -- searches -----------------------------------------------------------------------------

    def _search(
        self,
        conn: ldap3.Connection,
        base: str,
        search_filter: str,
        attributes: Sequence[str],
        *,
        scope: str = ldap3.SUBTREE,
    ) -> Iterator[tuple[str, Attributes]]:
        """Entries (DN, attributes), page by page; a failed search raises, never stops short."""
        cookie: bytes | None = None
        while True:
            with self._translated():
                conn.search(
                    base,
                    search_filter,
                    search_scope=scope,
                    attributes=list(attributes),
                    paged_size=PAGE_SIZE if scope == ldap3.SUBTREE else None,
                    paged_cookie=cookie,
                )
            result = conn.result or {}
            if result.get("result") == NO_SUCH_OBJECT and scope == ldap3.BASE:
                return
            if result.get("result") != 0:
                raise UnavailableError(
                    f"searching {base!r} for {search_filter} in the directory at {self.url} "
                    f"failed: {result.get('description')} {result.get('message') or ''}".strip(),
                    code="ldap:search-failed",
                )
            page = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
            for entry in page:
                yield entry["dn"], entry.get("attributes") or {}
            controls = result.get("controls") or {}
            cookie = controls.get(PAGED_RESULTS_OID, {}).get("value", {}).get("cookie")
            if not cookie:
                return

    def _count(self, conn: ldap3.Connection, base: str, search_filter: str) -> int:
        return sum(1 for _ in self._search(conn, base, ldap_filter(search_filter), NO_ATTRIBUTES))

    def _searcher(self, conn: ldap3.Connection) -> Search:
        return partial(self._search, conn)

    def _user_attributes(self) -> list[str]:
        s = self.settings
        names = [s.login_attribute, s.email_attribute, s.display_name_attribute]
        if s.membership == "memberOf":
            names.append("memberOf")
        return names

    def _find_user(self, conn: ldap3.Connection, username: str) -> tuple[str, Attributes] | None:
        s = self.settings
        wanted = (
            f"(&{ldap_filter(s.user_filter)}({s.login_attribute}={escape_filter_chars(username)}))"
        )
        found = list(self._search(conn, s.user_base, wanted, self._user_attributes()))
        if len(found) > 1:
            raise InvalidCredentialsError(
                f"the directory has {len(found)} accounts named {username!r}; "
                "ask an administrator to fix ldap.user_filter"
            )
        return found[0] if found else None

    def _is_disabled(self, conn: ldap3.Connection, dn: str) -> bool:
        if not self.settings.disabled_filter:
            return False
        flt = ldap_filter(self.settings.disabled_filter)
        return any(True for _ in self._search(conn, dn, flt, NO_ATTRIBUTES, scope=ldap3.BASE))

    def _disabled_dns(self, conn: ldap3.Connection) -> set[str]:
        s = self.settings
        if not s.disabled_filter:
            return set()
        flt = f"(&{ldap_filter(s.user_filter)}{ldap_filter(s.disabled_filter)})"
        return {normalize_dn(dn) for dn, _ in self._search(conn, s.user_base, flt, NO_ATTRIBUTES)}

    # -- identities ---------------------------------------------------------------------------

    def _identity(
        self, dn: str, attributes: Attributes, lookup: GroupLookup, *, active: bool, fallback: str
    ) -> ExternalIdentity:
        s = self.settings
        return ExternalIdentity(
            source=SOURCE,
            external_id=dn,
            username=first_value(attributes, s.login_attribute) or fallback,
            email=first_value(attributes, s.email_attribute),
            display_name=first_value(attributes, s.display_name_attribute),
            groups=resolve_groups(lookup, dn, attributes, nested=self.settings.nested_groups),
            active=active,
        )

    def lookup(self, username: str) -> ExternalIdentity | None:
        """The directory's view of ``username`` (no password check); None when unknown."""
        name = username.strip()
        if not name:
            return None
        with self._service() as conn:
            found = self._find_user(conn, name)
            if found is None:
                return None
            dn, attributes = found
            active = not self._is_disabled(conn, dn)
            return self._identity(
                dn,
                attributes,
                LiveGroups(self.settings, self._searcher(conn)),
                active=active,
                fallback=name,
            )

    def holds(self, dn: str) -> bool:
        """Whether the directory still has the user entry ``dn`` (under ``user_filter``)."""
        with self._service() as conn:
            flt = ldap_filter(self.settings.user_filter)
            return any(True for _ in self._search(conn, dn, flt, NO_ATTRIBUTES, scope=ldap3.BASE))

    def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        """Check ``password`` by binding as the user; None when the directory has no such user.

        A disabled account comes back with ``active=False`` (its password is not tried). An empty
        password is refused here: LDAP would take it as an unauthenticated bind and succeed.
        """
        if not password:
            raise InvalidCredentialsError(WRONG_CREDENTIALS)
        identity = self.lookup(username)
        if identity is None or not identity.active:
            return identity
        if not self._password_ok(identity.external_id, password):
            raise InvalidCredentialsError(WRONG_CREDENTIALS)
        return identity

    def iter_users(self) -> Iterator[ExternalIdentity]:
        """Every user under ``user_base`` matching ``user_filter``, with their groups."""
        s = self.settings
        with self._service() as conn:
            disabled = self._disabled_dns(conn)
            lookup = GroupIndex.load(s, self._searcher(conn))
            users = self._search(
                conn, s.user_base, ldap_filter(s.user_filter), self._user_attributes()
            )
            for dn, attributes in users:
                if not first_value(attributes, s.login_attribute):
                    continue  # nothing to sign in with
                active = normalize_dn(dn) not in disabled
                yield self._identity(dn, attributes, lookup, active=active, fallback="")

    def test_connection(self, username: str | None = None) -> LdapTestReport:
        """Bind, count users (and disabled ones) and groups; optionally look ``username`` up."""
        s = self.settings
        started = time.monotonic()
        with self._service() as conn:
            users = self._count(conn, s.user_base, s.user_filter)
            disabled = len(self._disabled_dns(conn))
            groups = self._count(conn, s.group_base, s.group_filter)
        user = self.lookup(username) if username else None
        return LdapTestReport(
            url=self.url,
            bound_as=s.bind_dn or "anonymous",
            tls=self.tls_mode,
            users=users,
            disabled_users=disabled,
            groups=groups,
            elapsed_ms=round((time.monotonic() - started) * 1000),
            user=user,
        )


def _close(conn: ldap3.Connection) -> None:
    """Unbind, and close the socket ldap3 leaves open when opening the connection failed."""
    with suppress(Exception):  # a broken connection: nothing left to say to the server
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with suppress(OSError):
            sock.close()


# --- the sync -------------------------------------------------------------------------------------


def sync_directory(
    session: Session, directory: LdapDirectory, *, actor: Actor | None = None
) -> LdapSyncResult:
    """Make Stockade's LDAP users and their groups agree with the directory.

    The whole directory is read before anything is written. Users it no longer returns are
    disabled; memberships of groups it no longer returns are dropped. A directory that returns no
    user at all while Stockade has active LDAP users is taken for a misconfiguration: nothing is
    changed and ``ldap:empty`` is raised.
    """
    identities = list(directory.iter_users())
    result = LdapSyncResult(users=len(identities))
    if not identities and _has_active_users(session):
        raise UnavailableError(
            f"the directory at {directory.url} returned no users (check ldap.user_base and "
            "ldap.user_filter); no account was disabled",
            code="ldap:empty",
        )
    service = IdentityService(session)
    seen_users: set[str] = set()
    seen_groups: set[str] = set()
    names: set[str] = set()
    for identity in identities:
        seen_users.add(identity.external_id)
        seen_groups.update(g.external_id for g in identity.groups)
        name = safe_username(identity.username)
        if name in names:  # two entries with one login name: only the first is imported
            result.skipped.append(identity.username)
            continue
        names.add(name)
        try:  # the name check comes before any write, so the session stays clean
            service.upsert(identity, group_roles=directory.group_roles, result=result)
        except InvalidCredentialsError:  # a local (or OIDC) account holds the name
            result.skipped.append(identity.username)
    service.disable_missing(SOURCE, seen_users, result)
    service.drop_memberships_of_missing_groups(SOURCE, seen_groups)
    result.groups = len(seen_groups)
    AuditLog(session).record("ldap.sync", actor or SYSTEM, None, details=_summary(result))
    return result


def _has_active_users(session: Session) -> bool:
    query = select(User.id).where(User.source == SOURCE, User.is_active.is_(True)).limit(1)
    return session.scalar(query) is not None


def _summary(result: LdapSyncResult) -> dict[str, object]:
    return {
        "users": result.users,
        "created": len(result.created),
        "updated": len(result.updated),
        "disabled": len(result.disabled),
        "skipped": len(result.skipped),
        "groups": result.groups,
        "disabled_users": result.disabled[:100],
        "skipped_users": result.skipped[:100],
    }


def run_ldap_sync(
    factory: sessionmaker[Session], settings: LdapSettings, *, actor: Actor | None = None
) -> LdapSyncResult:
    """One sync in one transaction; a failed sync is audited (outcome ``failure``) and raised."""
    try:
        directory = LdapDirectory(settings)
        with transaction(factory) as session:
            return sync_directory(session, directory, actor=actor)
    except StockadeError as exc:
        with transaction(factory) as session:
            AuditLog(session).record(
                "ldap.sync",
                actor or SYSTEM,
                None,
                outcome="failure",
                details={"reason": exc.code, "detail": exc.detail},
            )
        raise
