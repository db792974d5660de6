"""A REAL OpenLDAP server (Debian's ``slapd``) for tests, with its own configuration and data.

::

    with run_slapd(tmp_path) as directory:          # ldap:// and ldaps:// on loopback ports
        directory.url, directory.ldaps_url, directory.ca_file, directory.wrong_ca_file
        directory.disable("dave"); directory.delete_user("bob"); directory.remove_member(...)

Each start writes a ``slapd.conf`` (``slapd -f``) into a temporary folder: an ``mdb`` database for
``dc=example,dc=org``, the ``memberof`` overlay (so users carry ``memberOf``, as in Active
Directory), TLS with a throw-away CA made by ``cryptography`` (``ldaps://`` and StartTLS on
``ldap://``), and access rules where only the root DN writes and passwords serve to bind only. The
seed (:data:`PEOPLE`, :data:`GROUPS`) is added over LDAP, so the overlay computes ``memberOf``:

- ``ou=people``: ``inetOrgPerson`` users with ``{SSHA}`` passwords, ``mail`` and ``cn``. A user
  is DISABLED by ``employeeType: disabled``; match it with ``disabled_filter =
  "(employeeType=disabled)"``.
- ``ou=groups``: ``groupOfNames``. ``staff`` has the group ``developers`` as a member (nesting),
  ``loop-a`` and ``loop-b`` are members of each other (a cycle).
- ``ou=services``: ``cn=stockade``, the service account Stockade binds as.

The binary is ``$STOCKADE_TEST_SLAPD`` (set by ``scripts/test-env``) or ``/usr/sbin/slapd``;
:func:`require_slapd` skips the test when neither exists.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

with warnings.catch_warnings():
    # ldap3 2.9.1 imports pyasn1's ``tagMap``/``typeMap``, deprecated since pyasn1 0.5
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ldap3")
    import ldap3

BASE = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root-secret-for-tests"
SERVICE_DN = f"cn=stockade,ou=services,{BASE}"
SERVICE_PASSWORD = "service-secret-for-tests"
PEOPLE_BASE = f"ou=people,{BASE}"
GROUPS_BASE = f"ou=groups,{BASE}"
DISABLED_FILTER = "(employeeType=disabled)"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
MODULE_DIR = Path("/usr/lib/ldap")
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Person:
    uid: str
    password: str
    cn: str
    mail: str
    disabled: bool = False

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE_BASE}"


PEOPLE: dict[str, Person] = {
    p.uid: p
    for p in (
        Person("alice", "alice-password-1", "Alice Archer", "alice@example.org"),
        Person("bob", "bob-password-1", "Bob Builder", "bob@example.org"),
        Person("carol", "carol-password-1", "Carol Cruz", "carol@example.org"),
        Person("dave", "dave-password-1", "Dave Disabled", "dave@example.org", disabled=True),
        Person("erin", "erin-password-1", "Erin Evans", "erin@example.org"),
        Person("frank", "frank-password-1", "Frank Fox", "frank@example.org"),
    )
}

# group -> members: "uid" for a person, "@name" for another group. Order matters: a group must
# exist before it is named as a member (the cycle is closed afterwards, see LOOPS).
GROUPS: dict[str, tuple[str, ...]] = {
    "developers": ("alice", "bob"),
    "admins": ("carol",),
    "staff": ("@developers", "erin"),
    "loop-a": ("frank",),
    "loop-b": ("@loop-a",),
}
LOOPS: tuple[tuple[str, str], ...] = (("loop-a", "@loop-b"),)


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS_BASE}"


def member_dn(member: str | Person) -> str:
    """A person (or the uid of a seeded one), or ``@name`` for a group."""
    if isinstance(member, Person):
        return member.dn
    return group_dn(member[1:]) if member.startswith("@") else PEOPLE[member].dn


def slapd_binary() -> str | None:
    candidate = os.environ.get("STOCKADE_TEST_SLAPD") or "/usr/sbin/slapd"
    return candidate if os.access(candidate, os.X_OK) else shutil.which("slapd")


def require_slapd() -> str:
    binary = slapd_binary()
    if binary is None:
        pytest.skip("slapd is not installed (run scripts/test-env as root: apt-get install slapd)")
    return binary


def ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


# --- certificates ------------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (issuer or (subject,))[0])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
    )
    if issuer is None:  # a CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_certificates(folder: Path) -> tuple[Path, Path, Path, Path]:
    """(ca, wrong_ca, server certificate, server key): the server's is for 127.0.0.1/localhost."""
    ca_key, wrong_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("Stockade Test CA", ca_key, None)
    wrong = _certificate("Some Other CA", wrong_key, None)
    server = _certificate("127.0.0.1", server_key, ("Stockade Test CA", ca_key))
    paths = (folder / "ca.pem", folder / "wrong-ca.pem", folder / "server.pem", folder / "key.pem")
    for path, cert in zip(paths, (ca, wrong, server), strict=False):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[3].write_bytes(_pem_key(server_key))
    paths[3].chmod(0o600)
    return paths


# --- the server --------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _config(folder: Path, certs: tuple[Path, Path, Path, Path]) -> str:
    includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
    return f"""\
{includes}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof
pidfile {folder / "slapd.pid"}
argsfile {folder / "slapd.args"}
TLSCACertificateFile {certs[0]}
TLSCertificateFile {certs[2]}
TLSCertificateKeyFile {certs[3]}

database mdb
maxsize 16777216
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ssha(ROOT_PASSWORD)}
directory {folder / "data"}
index objectClass,uid,member,memberOf,employeeType eq

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by * read
"""


@dataclass
class Slapd:
    folder: Path
    port: int
    ldaps_port: int
    ca_file: Path
    wrong_ca_file: Path
    process: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "slapd.log"

    def settings(self, **overrides: object) -> dict[str, object]:
        """``LdapSettings`` fields for this directory (service bind, OpenLDAP layout)."""
        values: dict[str, object] = {
            "url": self.url,
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "user_base": PEOPLE_BASE,
            "group_base": GROUPS_BASE,
            "disabled_filter": DISABLED_FILTER,
            "ca_file": self.ca_file,
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return values

    # -- administration as the root DN ----------------------------------------------------------

    @contextmanager
    def admin(self) -> Iterator[ldap3.Connection]:
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=5)
        conn = ldap3.Connection(server, ROOT_DN, ROOT_PASSWORD, receive_timeout=10)
        if not conn.bind():
            raise RuntimeError(f"cannot bind as the root DN: {conn.result}")
        try:
            yield conn
        finally:
            conn.unbind()

    def _check(self, conn: ldap3.Connection, ok: bool, what: str) -> None:
        if not ok:
            raise RuntimeError(f"{what} failed: {conn.result}")

    def add(self, dn: str, classes: list[str], attributes: Mapping[str, object]) -> None:
        with self.admin() as conn:
            self._check(conn, conn.add(dn, classes, dict(attributes)), f"add {dn}")

    def modify(self, dn: str, changes: Mapping[str, list[tuple[str, list[object]]]]) -> None:
        with self.admin() as conn:
            self._check(conn, conn.modify(dn, dict(changes)), f"modify {dn}")

    def delete(self, dn: str) -> None:
        with self.admin() as conn:
            self._check(conn, conn.delete(dn), f"delete {dn}")

    def add_person(self, person: Person) -> None:
        attributes: dict[str, object] = {
            "uid": person.uid,
            "cn": person.cn,
            "sn": person.cn.split()[-1],
            "mail": person.mail,
            "userPassword": ssha(person.password),
        }
        if person.disabled:
            attributes["employeeType"] = "disabled"
        self.add(person.dn, ["inetOrgPerson"], attributes)

    def add_group(self, name: str, members: tuple[str, ...]) -> None:
        self.add(
            group_dn(name), ["groupOfNames"], {"cn": name, "member": list(map(member_dn, members))}
        )

    def disable(self, user: str | Person) -> None:
        self.modify(member_dn(user), {"employeeType": [(ldap3.MODIFY_REPLACE, ["disabled"])]})

    def delete_user(self, user: str | Person) -> None:
        self.delete(member_dn(user))

    def add_member(self, group: str, member: str | Person) -> None:
        self.modify(group_dn(group), {"member": [(ldap3.MODIFY_ADD, [member_dn(member)])]})

    def remove_member(self, group: str, member: str | Person) -> None:
        self.modify(group_dn(group), {"member": [(ldap3.MODIFY_DELETE, [member_dn(member)])]})

    def seed(self) -> None:
        org = {"o": "Example", "dc": "example"}
        self.add(BASE, ["dcObject", "organization"], org)
        for ou in ("people", "groups", "services"):
            self.add(f"ou={ou},{BASE}", ["organizationalUnit"], {"ou": ou})
        self.add(
            SERVICE_DN,
            ["organizationalRole", "simpleSecurityObject"],
            {"cn": "stockade", "userPassword": ssha(SERVICE_PASSWORD)},
        )
        for person in PEOPLE.values():
            self.add_person(person)
        for name, members in GROUPS.items():
            self.add_group(name, members)
        for name, member in LOOPS:
            self.add_member(name, member)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, binary: str) -> None:
        (self.folder / "data").mkdir(exist_ok=True)
        listen = f"{self.url}/ {self.ldaps_url}/"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-f", str(self.folder / "slapd.conf"), "-h", listen, "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"slapd did not start:\n{tail}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        for port in (self.port, self.ldaps_port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@contextmanager
def run_slapd(folder: Path) -> Iterator[Slapd]:
    """Start a seeded slapd in ``folder`` (created); stop it on exit. Skips without slapd."""
    binary = require_slapd()
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(folder)
    (folder / "slapd.conf").write_text(_config(folder, certs))
    for attempt in range(3):  # the free ports may be taken between choosing and binding
        port, ldaps_port = _free_ports(2)
        directory = Slapd(folder, port, ldaps_port, ca_file=certs[0], wrong_ca_file=certs[1])
        try:
            directory.start(binary)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        directory.seed()
        yield directory
    finally:
        directory.stop()
