"""Publication from rows: coalescing, incremental shards, frozen channels, crash recovery."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, update

from stockade.auth.principal import Principal
from stockade.channels.locks import PublicationLocks
from stockade.channels.models import Channel, SubdirShard
from stockade.channels.publication import PublicationService
from stockade.conda.shards import read_shard_index
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from tests.factories.packages import PackageSpec, build
from tests.integration.conftest import add_package, index_row, make_channel


def published_names(container: Container, channel: str, subdir: str = "noarch") -> set[str]:
    row = index_row(container, channel, subdir)
    assert row.repodata_sha256 is not None
    return set(orjson.loads(container.blobs.read_bytes(row.repodata_sha256))["packages.conda"])


def current_shards(container: Container, channel: str, subdir: str = "noarch") -> dict[str, str]:
    row = index_row(container, channel, subdir)
    with container.read_factory() as session:
        shards = session.scalars(
            select(SubdirShard).where(
                SubdirShard.subdir_index_id == row.id, SubdirShard.retired_at.is_(None)
            )
        ).all()
        return {s.name: s.shard_sha256 for s in shards}


def test_a_burst_coalesces_into_one_publication(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, "burst")
    for i in range(10):
        add_package(container, admin, "burst", build(tmp_path, PackageSpec(name=f"pkg{i}")))
    assert container.publisher.run_pending() == 1
    row = index_row(container, "burst", "noarch")
    # channel creation and the 10 verdicts (each made its upload servable); under "hold until
    # clean" an upload changes nothing served, so it asks for no publication of its own
    assert row.published_rev == row.requested_rev == 11
    assert published_names(container, "burst") == {f"pkg{i}-1.0-0.conda" for i in range(10)}
    assert container.publisher.run_pending() == 0  # nothing left to do


def test_only_changed_shards_are_rebuilt(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, "incremental")
    for name in ("alpha", "beta", "gamma"):
        add_package(container, admin, "incremental", build(tmp_path, PackageSpec(name=name)))
    container.publisher.run_pending()
    before = current_shards(container, "incremental")
    add_package(
        container, admin, "incremental", build(tmp_path, PackageSpec(name="beta", version="2.0"))
    )
    container.publisher.run_pending()
    after = current_shards(container, "incremental")
    assert after["alpha"] == before["alpha"] and after["gamma"] == before["gamma"]
    assert after["beta"] != before["beta"]
    row = index_row(container, "incremental", "noarch")
    assert row.shard_index_sha256 is not None
    index = read_shard_index(container.blobs.read_bytes(row.shard_index_sha256))
    assert {k: v.hex() for k, v in index["shards"].items()} == after


def test_other_subdirs_are_not_republished(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, "multi")
    add_package(
        container, admin, "multi", build(tmp_path, PackageSpec(name="a", subdir="linux-64"))
    )
    add_package(container, admin, "multi", build(tmp_path, PackageSpec(name="b")))
    container.publisher.run_pending()
    linux = index_row(container, "multi", "linux-64")
    add_package(container, admin, "multi", build(tmp_path, PackageSpec(name="c")))
    container.publisher.run_pending()
    again = index_row(container, "multi", "linux-64")
    assert (again.published_rev, again.published_at) == (linux.published_rev, linux.published_at)
    assert published_names(container, "multi") == {"b-1.0-0.conda", "c-1.0-0.conda"}


def test_frozen_channel_publishes_nothing(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, "cold")
    container.publisher.run_pending()
    with transaction(container.factory) as session:
        session.execute(update(Channel).where(Channel.name == "cold").values(frozen=True))
    add_package(container, admin, "cold", build(tmp_path, PackageSpec(name="x")))
    assert container.publisher.run_pending() == 0
    assert published_names(container, "cold") == set()


def test_a_crashed_publisher_leaves_the_old_index_and_frees_the_subdir(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_channel(container, admin, "crash")
    add_package(container, admin, "crash", build(tmp_path, PackageSpec(name="one")))
    container.publisher.run_pending()
    add_package(container, admin, "crash", build(tmp_path, PackageSpec(name="two")))
    other = PublicationService(container.factory, container.blobs)

    def die(*_args: object) -> None:
        raise SystemExit("killed between building blobs and switching")

    monkeypatch.setattr(other, "_switch", die)
    row = index_row(container, "crash", "noarch")
    with pytest.raises(SystemExit):
        other.publish(row.id)
    assert published_names(container, "crash") == {"one-1.0-0.conda"}  # the old state, whole
    assert container.publisher.run_pending() == 1  # nothing to wait out
    assert published_names(container, "crash") == {"one-1.0-0.conda", "two-1.0-0.conda"}


def test_a_subdir_being_published_elsewhere_is_skipped(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, "busy")
    row = index_row(container, "busy", "noarch")
    elsewhere = PublicationLocks(container.engine)
    with elsewhere.hold(row.id) as held:
        assert held
        assert container.publisher.publish(row.id) is None
    assert container.publisher.publish(row.id) is not None


def channeldata_names(container: Container, channel: str) -> set[str]:
    with container.read_factory() as session:
        sha = session.scalar(select(Channel.channeldata_sha256).where(Channel.name == channel))
    assert sha is not None
    return set(orjson.loads(container.blobs.read_bytes(sha))["packages"])


def _rate_limit(container: Container, channel_id: int, next_at: datetime) -> None:
    """A channeldata.json build that took 30 s, next allowed at ``next_at``."""
    with transaction(container.factory) as session:
        session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(channeldata_build_ms=30_000, channeldata_next_at=next_at)
        )


def test_channeldata_follows_but_never_delays_the_index(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    make_channel(container, admin, "cdata")
    add_package(container, admin, "cdata", build(tmp_path, PackageSpec(name="first")))
    container.publisher.run_pending()
    assert channeldata_names(container, "cdata") == {"first"}
    channel_id = index_row(container, "cdata", "noarch").channel_id
    # Pretend the last build was slow and just now: the next one waits, the index does not.
    _rate_limit(container, channel_id, utcnow() + timedelta(seconds=150))
    add_package(container, admin, "cdata", build(tmp_path, PackageSpec(name="second")))
    container.publisher.run_pending()
    assert published_names(container, "cdata") == {"first-1.0-0.conda", "second-1.0-0.conda"}
    assert channeldata_names(container, "cdata") == {"first"}
    _rate_limit(container, channel_id, utcnow() - timedelta(seconds=1))
    container.publisher.run_pending()  # nothing to index; the due channeldata is built
    assert channeldata_names(container, "cdata") == {"first", "second"}
