"""A new mirror's source is checked before anything is written, and a mirror creation that fails,
for any reason, leaves no channel behind (issue 12, item 12; SPEC §5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stockade.auth.errors import AccessDeniedError
from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.channels.models import Channel
from stockade.channels.privacy import PrivacyLooserThanParentError
from stockade.channels.service import ChannelService
from stockade.container import Container
from stockade.core.errors import StockadeError
from stockade.core.outbound import OutboundPolicy
from stockade.db.engine import transaction
from stockade.mirroring.errors import InvalidMirrorError, MirrorExistsError, SourceCheckError
from stockade.mirroring.models import Mirror
from stockade.mirroring.service import MirrorService, MirrorSpec
from tests.support.upstream import LOOPBACK, Upstream


def _recipes(testdata: Path) -> Path:
    return (testdata / "channels" / "test-recipes").resolve()


def _create(
    container: Container,
    principal: Principal,
    name: str,
    spec: MirrorSpec,
    *,
    outbound: OutboundPolicy | None = LOOPBACK,
    **kwargs: object,
) -> Mirror:
    with transaction(container.factory) as session:
        service = MirrorService(session, container.secrets, outbound)
        mirror = service.create(principal, name, spec, **kwargs)  # type: ignore[arg-type]
        session.expunge(mirror)
        return mirror


def _state(container: Container) -> tuple[list[str], list[str]]:
    with container.factory() as session:
        channels = sorted(session.scalars(select(Channel.name)).all())
        mirrors = sorted(session.scalars(select(Mirror.name)).all())
    return channels, mirrors


def _refused(
    container: Container,
    principal: Principal,
    name: str,
    spec: MirrorSpec,
    error: type[StockadeError],
    **kwargs: object,
) -> StockadeError:
    """Creating fails with ``error`` and changes nothing: no channel, no mirror."""
    before = _state(container)
    with pytest.raises(error) as caught:
        _create(container, principal, name, spec, **kwargs)  # type: ignore[arg-type]
    assert _state(container) == before
    return caught.value


# ------------------------------------------------------------------------------- file://


def test_a_missing_folder_is_refused_and_nothing_is_created(
    container: Container, admin: Principal
) -> None:
    spec = MirrorSpec(source="file:///nonexistent", subdirs=["noarch"])
    error = _refused(container, admin, "ghost", spec, SourceCheckError)
    assert error.code == "mirror:source-check"
    assert error.extra["field"] == "source"
    assert "file:///nonexistent: no such folder on the server" in error.detail
    assert "--no-check" in error.detail


def test_a_folder_that_is_no_channel_is_refused(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    spec = MirrorSpec(source=(tmp_path / "empty").as_uri())
    error = _refused(container, admin, "not-a-channel", spec, SourceCheckError)
    assert "no repodata.json for linux-64, noarch" in error.detail
    assert "it has none: is it a channel?" in error.detail


def test_a_subdir_the_channel_lacks_is_named(
    container: Container, admin: Principal, testdata: Path
) -> None:
    """test-recipes has noarch and *-fake subdirs, not linux-64 (a run would fail on it)."""
    spec = MirrorSpec(source=_recipes(testdata).as_uri(), subdirs=["noarch", "linux-64"])
    error = _refused(container, admin, "recipes", spec, SourceCheckError)
    assert "no repodata.json for linux-64" in error.detail
    assert "it has: linux-fake, noarch, osx-fake, win-fake" in error.detail


def test_a_real_channel_folder_passes(
    container: Container, admin: Principal, testdata: Path
) -> None:
    spec = MirrorSpec(source=_recipes(testdata).as_uri(), subdirs=["noarch", "linux-fake"])
    mirror = _create(container, admin, "recipes", spec)
    assert mirror.subdirs == ["noarch", "linux-fake"]
    channels, mirrors = _state(container)
    assert "recipes" in channels and mirrors == ["recipes"]


def test_no_check_accepts_a_source_offline_on_purpose(
    container: Container, admin: Principal
) -> None:
    spec = MirrorSpec(source="file:///nonexistent", subdirs=["noarch"])
    _create(container, admin, "ghost", spec, verify_source=False)
    channels, mirrors = _state(container)
    assert "ghost" in channels and mirrors == ["ghost"]


# ------------------------------------------------------------------------------- http(s)


def test_an_http_channel_is_checked_through_the_guard(
    container: Container, admin: Principal, testdata: Path, tmp_path: Path
) -> None:
    root = tmp_path / "up"
    shutil.copytree(_recipes(testdata), root)
    with Upstream(root) as up:
        spec = MirrorSpec(source=up.url, subdirs=["noarch", "linux-64"])
        error = _refused(container, admin, "web", spec, SourceCheckError)
        assert f"{up.url}: no repodata.json for linux-64" in error.detail
        # the repodata files of each subdir, nothing else (the log lags the answers a little)
        assert {r.path for r in up.requests} <= {
            "noarch/repodata.json.zst",  # 404: the .json is asked for next
            "noarch/repodata.json",
            "linux-64/repodata.json.zst",
            "linux-64/repodata.json",
        }
        _create(container, admin, "web", MirrorSpec(source=up.url, subdirs=["noarch"]))
        # the strict default policy refuses loopback: the check says so, and nothing is created
        spec = MirrorSpec(source=up.url, subdirs=["noarch"])
        error = _refused(container, admin, "web-2", spec, SourceCheckError, outbound=None)
        assert "refused by the server's outbound policy" in error.detail


def test_an_http_source_that_refuses_access_or_is_gone(
    container: Container, admin: Principal, testdata: Path, tmp_path: Path
) -> None:
    root = tmp_path / "up"
    shutil.copytree(_recipes(testdata), root)
    with Upstream(root, require_token="s3cret-upstream") as up:
        spec = MirrorSpec(source=up.url, subdirs=["noarch"])
        error = _refused(container, admin, "locked", spec, SourceCheckError)
        assert "access refused (HTTP 401)" in error.detail and "token" in error.detail
        spec = MirrorSpec(source=up.url, subdirs=["noarch"], token="s3cret-upstream")
        _create(container, admin, "locked", spec)
        url = up.url
    spec = MirrorSpec(source=url, subdirs=["noarch"])  # the server has stopped
    error = _refused(container, admin, "gone", spec, SourceCheckError)
    assert "cannot be reached" in error.detail
    assert "s3cret" not in error.detail


# ------------------------------------------------------------------- no channel left behind


def test_every_failed_creation_leaves_no_channel(
    container: Container, admin: Principal, testdata: Path
) -> None:
    good = _recipes(testdata).as_uri()
    _create(container, admin, "taken", MirrorSpec(source=good, subdirs=["noarch"]))
    with transaction(container.factory) as session:
        ChannelService(session).create(admin, "team", privacy="private")
    cases: list[tuple[str, MirrorSpec, type[StockadeError], dict[str, object]]] = [
        ("bad-source", MirrorSpec(source="ftp://example.org/c"), InvalidMirrorError, {}),
        ("bad-mode", MirrorSpec(source=good, mode="eager"), InvalidMirrorError, {}),
        ("bad-schedule", MirrorSpec(source=good, schedule="61 * * * *"), InvalidMirrorError, {}),
        ("bad-subdirs", MirrorSpec(source=good, subdirs=["../etc"]), InvalidMirrorError, {}),
        ("bad-companion", MirrorSpec(source=good, companions=["nope"]), StockadeError, {}),
        ("check-fails", MirrorSpec(source="file:///nonexistent"), SourceCheckError, {}),
        # name clash: the mirror's name is taken (its channel would be new)
        ("taken", MirrorSpec(source=good), MirrorExistsError, {"channel": "fresh"}),
        # a public subchannel of a private channel: refused after the source was checked
        (
            "looser",
            MirrorSpec(source=good, subdirs=["noarch"]),
            PrivacyLooserThanParentError,
            {"channel": "team/open", "privacy": "public"},
        ),
    ]
    for name, spec, error, kwargs in cases:
        _refused(container, admin, name, spec, error, **kwargs)
    channels, mirrors = _state(container)
    assert mirrors == ["taken"]
    assert not {"bad-source", "check-fails", "fresh", "team/open", "looser"} & set(channels)


def test_rights_come_before_the_check(
    container: Container, admin: Principal, testdata: Path
) -> None:
    """Somebody who may not manage mirrors of the channel, or create the subchannel, learns
    nothing of what the server can reach: refused before any request to the source."""
    with transaction(container.factory) as session:
        ChannelService(session).create(admin, "vault", privacy="private")
        users = UserService(session)
        principal = users.principal_for(
            users.create_user("nobody", "correct-horse-battery"), via="password"
        )
    with Upstream(_recipes(testdata)) as up:
        spec = MirrorSpec(source=up.url, subdirs=["noarch"])
        _refused(container, principal, "probe", spec, StockadeError, channel="vault")
        _refused(container, principal, "probe", spec, StockadeError, channel="vault/sub")
        assert up.requests == []
        file_spec = MirrorSpec(source=_recipes(testdata).as_uri(), subdirs=["noarch"])
        error = _refused(container, principal, "disk", file_spec, AccessDeniedError)
        assert error.code == "mirror:admin-only"  # a file:// source: before the disk is read


def test_a_duplicate_found_by_the_database_rolls_the_channel_back(
    container: Container, admin: Principal, testdata: Path
) -> None:
    """The mirror row is added in a savepoint after its new channel was flushed: a duplicate
    name found only by the unique constraint (a concurrent creation) rolls both back."""
    good = _recipes(testdata).as_uri()
    with container.factory() as session:
        before = session.scalar(select(func.count(Channel.id)))

    def create_twice() -> None:
        with transaction(container.factory) as session:
            service = MirrorService(session, container.secrets)
            spec = MirrorSpec(source=good, subdirs=["noarch"])
            service.create(admin, "twin", spec)
            service.find = lambda name: None  # type: ignore[method-assign]  # as if concurrent
            service.create(admin, "twin", spec, channel="twin-2")

    with pytest.raises(MirrorExistsError):
        create_twice()
    with container.factory() as session:
        assert session.scalar(select(func.count(Channel.id))) == before
