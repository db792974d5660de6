"""Values from outside fit the bounded columns they are written to, on PostgreSQL too.

SQLite ignores a ``String(N)``'s length; PostgreSQL refuses a longer value (``value too long for
type character varying(N)``): a valid request was refused (the API's handler of database errors
answers 422 "values the database cannot store"), or a background job failed at every attempt.
Each test feeds one such value by the way it really arrives (a directory entry, an OIDC subject, a
forwarded address, the audit record of a patch, a mirror's settings, an upstream's headers, a
feed's records and headers, a package's metadata, a name built for many subdirs) and checks that
it is refused with a 4xx problem when a person typed it, or cut or left out when it is
descriptive data from elsewhere. tests/functional/test_bounded_inputs.py has the HTTP side.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from stockade.audit.models import AuditEvent
from stockade.auth.errors import InvalidCredentialsError, OidcError
from stockade.auth.identity import ExternalGroup, ExternalIdentity, IdentityService
from stockade.auth.models import ApiToken, GroupMember, User, WebSession
from stockade.auth.oidc import identity_from_claims
from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.auth.sessions import SessionService
from stockade.auth.tokens import TokenService, touch_token
from stockade.channels.intake import ScanReason, admit_rows
from stockade.channels.models import Artifact, Channel, PackageContent
from stockade.channels.patching import PatchService
from stockade.channels.scanstate import ArtifactSource
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.mirroring.errors import InvalidMirrorError
from stockade.mirroring.models import Mirror, MirrorSubdirState, RunState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.search.index import refresh_names
from stockade.search.models import SearchDocument
from stockade.settings import OidcSettings, OutboundSettings, load_settings
from stockade.vulns.errors import FeedError
from stockade.vulns.feedsync import FeedService, FeedSync
from stockade.vulns.matcher import Matcher
from stockade.vulns.models import NameMapEntry, VulnFeed, VulnTarget
from stockade.vulns.models import Vulnerability as VulnRow
from tests.conftest import PG_URL, TESTDATA, backends
from tests.integration.conftest import make_channel
from tests.support import upstream as upstream_module
from tests.support.server import fresh_database
from tests.support.upstream import Upstream

#: What uvicorn makes the client address of a request whose X-Forwarded-For a trusted proxy (by
#: default: loopback) passed on: any text the client sent.
FORWARDED = "203.0.113.7, " + "spoofed-" * 12


@pytest.fixture(scope="module", params=backends())
def container(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """One database per backend for the module (each test names what it makes)."""
    data_dir = tmp_path_factory.mktemp(f"bounded-{request.param}")
    with fresh_database(str(request.param), data_dir, PG_URL, migrated=True) as url:
        built = Container.build(load_settings(data_dir=data_dir, database_url=url))
        built.bootstrap()
        yield built
        built.close()


# ------------------------------------------------------------------------- identity providers


def test_directory_email_and_display_name_are_cut(container: Container) -> None:
    """LDAP attributes have no length limit; the account keeps what its columns hold."""
    identity = ExternalIdentity(
        source="ldap",
        external_id="uid=verbose,ou=people,dc=example,dc=org",
        username="verbose",
        email="e" * 400 + "@example.org",
        display_name="D" * 300,
    )
    with transaction(container.factory) as session:
        IdentityService(session).upsert(identity)
    with container.read_factory() as session:
        user = session.scalars(select(User).where(User.username == "verbose")).one()
    assert user.email == identity.email[:320] and user.display_name == "D" * 256


def test_an_external_id_longer_than_its_column_is_refused(container: Container) -> None:
    """A DN (or issuer|subject) of more than 512 characters cannot be told apart from another once
    cut: the sign-in is refused (a sync skips the entry); a group with such a DN is left out."""
    deep = "uid=deep," + ",".join(f"ou=level-{i:03d}-of-a-deep-tree" for i in range(25))
    refused = ExternalIdentity(source="ldap", external_id=deep, username="deep")
    group = ExternalGroup(external_id="cn=team," + deep, name="deep-team")
    member = ExternalIdentity(
        source="ldap", external_id="uid=member,dc=example", username="member", groups=(group,)
    )
    with pytest.raises(InvalidCredentialsError, match="longer than"), container.factory() as s:
        IdentityService(s).upsert(refused)
    with transaction(container.factory) as session:
        user = IdentityService(session).upsert(member)
        memberships = session.scalars(select(GroupMember).where(GroupMember.user_id == user.id))
        assert memberships.all() == []


def test_an_oidc_subject_longer_than_the_standard_allows_is_refused() -> None:
    """OpenID Connect Core: ``sub`` MUST NOT exceed 255 ASCII characters."""
    settings = OidcSettings(issuer="https://id.example", client_id="stockade")
    kept = identity_from_claims(settings, "https://id.example", {"sub": "s" * 255})
    assert kept.external_id == "https://id.example|" + "s" * 255
    with pytest.raises(OidcError, match="255"):
        identity_from_claims(settings, "https://id.example", {"sub": "s" * 256})


# --------------------------------------------------------------------- client addresses


def test_a_forwarded_address_is_cut_on_sessions_and_tokens(container: Container) -> None:
    with transaction(container.factory) as session:
        user_id = UserService(session).get_by_name("admin").id
        started = SessionService(session, hours=1).start(user_id, ip=FORWARDED, user_agent="x")
        issued = TokenService(session, max_days=30).create(user_id, "forwarded", None)
    with transaction(container.factory) as session:
        touch_token(session, issued.record.id, FORWARDED, utcnow())
    with container.read_factory() as session:
        assert session.get_one(WebSession, started.record.id).ip == FORWARDED[:64]
        assert session.get_one(ApiToken, issued.record.id).last_used_ip == FORWARDED[:64]


# -------------------------------------------------------------------------- repodata patches


def _deepest_channel(container: Container, admin: Principal) -> str:
    """A channel with the longest name there can be: four segments of 64 characters."""
    name = ""
    for letter in "wxyz":
        name = f"{name}/{letter * 64}".lstrip("/")
        with container.read_factory() as session:
            if session.scalar(select(Channel.id).where(Channel.name == name)) is None:
                make_channel(container, admin, name)
    return name


def test_a_patch_is_audited_under_the_longest_channel_name(
    container: Container, admin: Principal
) -> None:
    """The audit event names channel/subdir/filename: over 512 characters here, it is cut."""
    channel = _deepest_channel(container, admin)
    filename = "p" * 400 + "-1.0-0.conda"
    with transaction(container.factory) as session:
        PatchService(session).set(admin, channel, "noarch", filename, revoked=True)
    with container.read_factory() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "patch.create")
        ).one()
    assert event.target_name == f"{channel}/noarch/{filename}"[:512]


# ---------------------------------------------------------------------------------- mirrors


def test_a_mirror_subdir_longer_than_its_column_is_refused(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """Its runs failed at every attempt (the subdir is a column of every record); one saved
    before the check fails its run naming the subdir."""
    longest, too_long = "linux-" + "a" * 58, "linux-" + "a" * 59
    for subdir in (longest, too_long):
        shutil.copytree(TESTDATA / "channels" / "test-recipes" / "noarch", tmp_path / subdir)
    refused = MirrorSpec(source=tmp_path.as_uri(), subdirs=["noarch", too_long])
    with pytest.raises(InvalidMirrorError, match="64") as raised, container.factory() as session:
        MirrorService(session, container.secrets).create(admin, "odd", refused, verify_source=False)
    assert raised.value.extra["field"] == "subdirs"
    with transaction(container.factory) as session:
        spec = MirrorSpec(source=tmp_path.as_uri(), subdirs=[longest])
        MirrorService(session, container.secrets).create(admin, "odd", spec)
        session.execute(update(Mirror).where(Mirror.name == "odd").values(subdirs=[too_long]))
        run_id = RunService(session, container.secrets).request(admin, "odd").id
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None and outcome.state == RunState.FAILED
    assert outcome.summary == f"not a subdir name: {too_long!r}"


def test_upstream_validators_that_do_not_fit_are_not_kept(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream's ETag and Last-Modified are sent back as they were, or not at all."""
    monkeypatch.setattr(upstream_module, "etag_of", lambda _path: '"' + "e" * 600 + '"')
    monkeypatch.setattr(upstream_module, "formatdate", lambda *_a, **_k: "Mon, " + "m" * 200)
    root = tmp_path / "up"
    shutil.copytree(TESTDATA / "channels" / "test-recipes" / "noarch", root / "noarch")
    container.settings.outbound = OutboundSettings(allow_loopback=True)  # the test upstream
    policy = container.settings.outbound.policy()
    with Upstream(root) as up:
        with transaction(container.factory) as session:
            spec = MirrorSpec(source=up.url, mode="passive", subdirs=["noarch"], schedule="")
            mirror_id = (
                MirrorService(session, container.secrets, policy).create(admin, "loud", spec).id
            )
            run_id = RunService(session, container.secrets).request(admin, "loud").id
        outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome
    with container.read_factory() as session:
        state = session.scalars(
            select(MirrorSubdirState).where(MirrorSubdirState.mirror_id == mirror_id)
        ).one()
    assert (state.etag, state.last_modified, state.raw_sha256 is not None) == (None, None, True)


# ------------------------------------------------------------------------ vulnerability feeds


def _osv(vuln_id: str, *, aliases: tuple[str, ...] = (), package: str = "requests") -> bytes:
    affected = {
        "package": {"ecosystem": "PyPI", "name": package},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}],
    }
    record = {"id": vuln_id, "aliases": list(aliases), "modified": "2024-01-02T00:00:00Z"}
    return orjson.dumps({**record, "affected": [affected]})


def _feed(container: Container, admin: Principal, name: str, url: str, fmt: str) -> int:
    with transaction(container.factory) as session:
        return FeedService(session).create(admin, name, url, fmt).id


def test_feed_records_keep_to_their_columns(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """An id over 128 characters fails its document (named); an alias that long (once upper-cased,
    as the alias index keeps it) is left out; a package name no conda package can have targets
    nothing. The others are stored."""
    folder = tmp_path / "osv"
    folder.mkdir()
    (folder / "long-id.json").write_bytes(_osv("PYSEC-" + "9" * 200))
    long_aliases = ("CVE-2024-1", "A" * 200, "\u00df" * 100)  # ß upper-cased is SS
    (folder / "long-alias.json").write_bytes(_osv("PYSEC-1", aliases=long_aliases))
    (folder / "long-name.json").write_bytes(_osv("PYSEC-2", package="n" * 300))
    feed = _feed(container, admin, "verbose-osv", folder.as_uri(), "osv")
    counts = FeedSync(container.factory).sync_feed(feed)
    assert (counts.new, counts.failed) == (2, 1)
    assert "long-id.json" in counts.errors[0] and "128" in counts.errors[0]
    with container.read_factory() as session:
        rows = {r.vuln_id: r for r in session.scalars(select(VulnRow))}
        targets = set(session.scalars(select(VulnTarget.conda_name)))
    assert rows["PYSEC-1"].aliases == ["CVE-2024-1"]
    assert "PYSEC-2" in rows and not any(len(t) > 256 for t in targets)


def test_feed_validators_that_do_not_fit_are_not_kept(
    container: Container, admin: Principal
) -> None:
    body = (TESTDATA / "vulns" / "cve-json-5" / "CVE-2022-3996.json").read_bytes()
    loud = {"ETag": '"' + "e" * 600 + '"', "Last-Modified": "Mon, " + "m" * 200}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers=loud)

    feed = _feed(container, admin, "loud-cna", "https://feeds.example/cna.json", "cve5")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert FeedSync(container.factory, client=client).sync_feed(feed).new == 1
    with container.read_factory() as session:
        row = session.get_one(VulnFeed, feed)
    assert (row.etag, row.last_modified, row.last_status) == (None, None, "ok")


def test_a_kev_id_longer_than_its_column_fails_the_sync_by_name(
    container: Container, admin: Principal
) -> None:
    catalogue = {"vulnerabilities": [{"cveID": "CVE-2024-" + "1" * 200, "dateAdded": "x"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=orjson.dumps(catalogue))

    feed = _feed(container, admin, "kev-odd", "https://feeds.example/kev.json", "kev")
    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(FeedError, match="cveID"),
    ):
        FeedSync(container.factory, client=client).sync_feed(feed)
    with container.read_factory() as session:
        assert session.get_one(VulnFeed, feed).last_status == "failed"


# ------------------------------------------------------------------------- package metadata


def _admit(container: Container, channel: str, items: list[tuple[str, str]]) -> list[int]:
    """Records ``(name, subdir)`` admitted as a passive mirror's are (listed, servable)."""
    rows: list[dict[str, Any]] = []
    for name, subdir in items:
        filename = f"{name}-1.0-0.conda"
        digest = hashlib.sha256(f"{subdir}/{filename}".encode()).hexdigest()
        rows.append(
            {
                "subdir": subdir, "filename": filename, "name": name, "version": "1.0",
                "build": "0", "format": "conda", "sha256": digest, "md5": digest[:32],
                "size": 1, "record_json": b"{}", "indexed_timestamp": 0,
                "source": ArtifactSource.MIRROR,
            }
        )  # fmt: skip
    with transaction(container.factory) as session:
        target = session.scalars(select(Channel).where(Channel.name == channel)).one()
        rows = [{**r, "channel_id": target.id} for r in rows]
        return admit_rows(session, target, rows, stored=False, reason=ScanReason.MIRROR)


def test_purls_of_a_package_longer_than_the_name_map_holds_are_not_learned(
    container: Container, admin: Principal
) -> None:
    make_channel(container, admin, "learning")
    (artifact_id,) = _admit(container, "learning", [("learner", "noarch")])
    purls = ["pkg:pypi/" + "l" * 600, "pkg:pypi/learner-dist"]
    with transaction(container.factory) as session:
        sha = session.scalars(select(Artifact.sha256).where(Artifact.id == artifact_id)).one()
        session.add(PackageContent(sha256=sha, index_json={"name": "learner", "purls": purls}))
    with transaction(container.factory) as session:
        Matcher(session).match_artifacts([artifact_id])
    with container.read_factory() as session:
        learned = session.scalars(
            select(NameMapEntry.identifier).where(NameMapEntry.conda_name == "learner")
        ).all()
    assert learned == ["pkg:pypi/learner-dist"]


def test_the_platforms_of_a_search_hit_are_cut_to_whole_subdirs(
    container: Container, admin: Principal
) -> None:
    """A name built for 40 subdirs of 32 characters: the publication that indexed it failed."""
    make_channel(container, admin, "everywhere")
    subdirs = [f"os{i:02d}-" + "a" * 27 for i in range(40)]
    _admit(container, "everywhere", [("anywhere", s) for s in subdirs])
    with transaction(container.factory) as session:
        channel_id = session.scalars(select(Channel.id).where(Channel.name == "everywhere")).one()
        refresh_names(session, channel_id, ["anywhere"])
    with container.read_factory() as session:
        doc = session.scalars(select(SearchDocument).where(SearchDocument.name == "anywhere")).one()
    assert doc.subdirs.split() == subdirs[: len(doc.subdirs.split())]
    assert 1024 - 33 < len(doc.subdirs) <= 1024 and doc.build_count == 40
