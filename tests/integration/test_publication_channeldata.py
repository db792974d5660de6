"""Publication intents kept in the database, not in a publisher's memory (issue 16, item 3).

channeldata.json is asked for in the transaction that switches a subdir's index in: a publisher
that dies after that commit leaves the rebuild to any other (a new process, another replica), and
of several publishers one builds it. A subdir's ``requested_at`` is when its first unpublished
request was made: the publication latency is measured from it, by whichever process publishes.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.principal import Principal
from stockade.channels import publication
from stockade.channels.models import Channel, SubdirIndex
from stockade.channels.publication import PublicationService
from stockade.channels.publishing import request_publication
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.metrics import metrics
from stockade.db.engine import transaction
from stockade.storage.interfaces import BlobStore
from stockade.web.metrics import QueueCollector
from tests.factories.packages import PackageSpec, build
from tests.integration.conftest import add_package, index_row, make_channel


class Killed(BaseException):
    """The process ends here (nothing after it runs, as with kill -9)."""


def publisher(container: Container) -> PublicationService:
    """A publisher of a new process: nothing remembered from the container's."""
    return PublicationService(
        container.factory, container.blobs, read_factory=container.read_factory
    )


def channeldata_names(container: Container, channel: str) -> set[str]:
    with container.read_factory() as session:
        sha = session.scalar(select(Channel.channeldata_sha256).where(Channel.name == channel))
    assert sha is not None
    return set(orjson.loads(container.blobs.read_bytes(sha))["packages"])


def channel_row(container: Container, channel: str) -> Channel:
    with container.read_factory() as session:
        row = session.scalar(select(Channel).where(Channel.name == channel))
        assert row is not None
        return row


def published_once(container: Container, admin: Principal, tmp_path: Path, channel: str) -> None:
    """A channel serving ``first``, with its channeldata.json built (and its rate limit over)."""
    make_channel(container, admin, channel)
    add_package(container, admin, channel, build(tmp_path, PackageSpec(name="first")))
    container.publisher.run_pending()
    assert channeldata_names(container, channel) == {"first"}
    assert channel_row(container, channel).channeldata_requested_at is None
    past_rate_limit(container, channel)


def past_rate_limit(container: Container, channel: str) -> None:
    """As if the last build were long ago (after a build that took t, the next waits 5 t)."""
    with transaction(container.factory) as session:
        session.execute(
            update(Channel).where(Channel.name == channel).values(channeldata_next_at=None)
        )


def test_a_publisher_killed_before_the_channeldata_rebuild_leaves_it_to_a_new_one(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    published_once(container, admin, tmp_path, "killed")
    add_package(container, admin, "killed", build(tmp_path, PackageSpec(name="second")))

    def die(channel_id: int, subdir: str) -> None:
        raise Killed  # the index is switched in (committed); the process dies

    dying = PublicationService(
        container.factory, container.blobs, read_factory=container.read_factory, on_published=die
    )
    with pytest.raises(Killed):
        dying.run_pending()
    assert index_row(container, "killed", "noarch").record_count == 2
    assert channeldata_names(container, "killed") == {"first"}  # stale: the rebuild never ran
    assert channel_row(container, "killed").channeldata_requested_at is not None

    assert publisher(container).run_pending() == 0  # a new process: no index left to publish
    assert channeldata_names(container, "killed") == {"first", "second"}
    assert channel_row(container, "killed").channeldata_requested_at is None


def test_of_two_publishers_one_rebuilds_the_channeldata(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published_once(container, admin, tmp_path, "twice")
    add_package(container, admin, "twice", build(tmp_path, PackageSpec(name="second")))
    assert publisher(container).publish(index_row(container, "twice", "noarch").id) is not None
    builds: list[int] = []
    real = publication.build_channeldata

    def slow_build(reads: sessionmaker[Session], blobs: BlobStore, channel_id: int) -> str:
        builds.append(threading.get_ident())
        time.sleep(0.3)  # both publishers look while this one builds
        return real(reads, blobs, channel_id)

    monkeypatch.setattr(publication, "build_channeldata", slow_build)
    replicas = [publisher(container), publisher(container)]
    start = threading.Barrier(2)

    def run(replica: PublicationService) -> None:
        start.wait()
        replica.publish_due_channeldata()

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(builds) == 1
    assert channeldata_names(container, "twice") == {"first", "second"}
    row = channel_row(container, "twice")
    assert row.channeldata_requested_at is None and row.channeldata_lease_owner is None
    for replica in replicas:  # built: nothing left for either
        replica.publish_due_channeldata()
    assert len(builds) == 1


def test_an_index_switched_in_during_a_build_is_built_next(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build in progress may have read the records before that switch: the request stays
    (also when that build outlived its lease: it still finishes, as nobody else took it)."""
    published_once(container, admin, tmp_path, "during")
    add_package(container, admin, "during", build(tmp_path, PackageSpec(name="second")))
    other = publisher(container)
    other.publish(index_row(container, "during", "noarch").id)
    real = publication.build_channeldata

    def build_then_switch(reads: sessionmaker[Session], blobs: BlobStore, channel_id: int) -> str:
        sha = real(reads, blobs, channel_id)
        _expire_lease(container, "during")  # a slow build, not a dead one: still counts
        add_package(container, admin, "during", build(tmp_path, PackageSpec(name="third")))
        assert other.publish(index_row(container, "during", "noarch").id) is not None
        return sha

    monkeypatch.setattr(publication, "build_channeldata", build_then_switch)
    publisher(container).publish_due_channeldata()
    monkeypatch.undo()
    assert channeldata_names(container, "during") == {"first", "second"}
    assert channel_row(container, "during").channeldata_requested_at is not None
    past_rate_limit(container, "during")
    publisher(container).publish_due_channeldata()
    assert channeldata_names(container, "during") == {"first", "second", "third"}


def latency_observed() -> tuple[float, float]:
    """(count, sum) of the publication latency histogram of this process."""
    registry = CollectorRegistry()
    registry.register(metrics().publication_latency)
    count = registry.get_sample_value("stockade_publication_latency_seconds_count")
    total = registry.get_sample_value("stockade_publication_latency_seconds_sum")
    return count or 0.0, total or 0.0


def _request(container: Container, channel_id: int) -> None:
    with transaction(container.factory) as session:
        request_publication(session, channel_id, "noarch")


def test_publication_latency_is_measured_from_the_first_request(
    container: Container, admin: Principal
) -> None:
    make_channel(container, admin, "latency")
    container.publisher.run_pending()
    channel_id = index_row(container, "latency", "noarch").channel_id
    assert index_row(container, "latency", "noarch").requested_at is None  # nothing pending
    _request(container, channel_id)
    first = index_row(container, "latency", "noarch").requested_at
    assert first is not None and utcnow() - first < timedelta(seconds=30)
    _request(container, channel_id)  # already pending: the first request's time stays
    assert index_row(container, "latency", "noarch").requested_at == first
    # As if asked for 100 s ago by another process (no publisher saw it then).
    with transaction(container.factory) as session:
        session.execute(
            update(SubdirIndex)
            .where(SubdirIndex.channel_id == channel_id)
            .values(requested_at=first - timedelta(seconds=100))
        )
    ages = {
        s.labels["queue"]: s.value
        for family in QueueCollector(container.read_factory).collect()
        if family.name == "stockade_job_queue_oldest_age_seconds"
        for s in family.samples
    }
    assert 100 <= ages["publications"] < 160
    count, total = latency_observed()
    assert publisher(container).run_pending() == 1
    after_count, after_total = latency_observed()
    assert after_count == count + 1
    assert 100 <= after_total - total < 160
    assert index_row(container, "latency", "noarch").requested_at is None  # published


def test_a_build_left_by_a_dead_publisher_is_taken_once_its_lease_runs_out(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published_once(container, admin, tmp_path, "leased")
    add_package(container, admin, "leased", build(tmp_path, PackageSpec(name="second")))
    publisher(container).publish(index_row(container, "leased", "noarch").id)

    def die(*args: object) -> str:
        raise Killed  # dies while building: the lease is held, nothing else written

    monkeypatch.setattr(publication, "build_channeldata", die)
    with pytest.raises(Killed):
        publisher(container).publish_due_channeldata()
    monkeypatch.undo()
    publisher(container).publish_due_channeldata()  # leased: not taken yet
    assert channeldata_names(container, "leased") == {"first"}
    _expire_lease(container, "leased")
    publisher(container).publish_due_channeldata()
    assert channeldata_names(container, "leased") == {"first", "second"}


def _expire_lease(container: Container, channel: str) -> None:
    with transaction(container.factory) as session:
        session.execute(
            update(Channel)
            .where(Channel.name == channel)
            .values(channeldata_lease_until=utcnow() - timedelta(seconds=1))
        )


def test_one_build_apart_at_a_time_per_publisher(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    """Each build apart is a process holding a channel's records: a publisher runs one at a time
    and leaves the other slow channels asked for, built by a later pass."""
    channels = ("apart-a", "apart-b")
    for channel in channels:
        (tmp_path / channel).mkdir()
        published_once(container, admin, tmp_path / channel, channel)
    for channel in channels:
        add_package(container, admin, channel, build(tmp_path / channel, PackageSpec(name="more")))
    for index_id in container.publisher.pending():  # the new indexes, not their channeldata
        container.publisher.publish(index_id)
    for channel in channels:
        past_rate_limit(container, channel)
    replica = publisher(container)
    replica.channeldata_apart_ms = 0  # every build apart
    entered: list[int] = []
    release = threading.Event()

    def apart(channel_id: int) -> str:  # the process's work, held until the test lets it go
        entered.append(channel_id)
        assert release.wait(30)
        return publication.build_channeldata(container.read_factory, container.blobs, channel_id)

    replica.channeldata_apart = apart
    replica.publish_due_channeldata()
    deadline = time.monotonic() + 10
    while not entered and time.monotonic() < deadline:
        time.sleep(0.01)
    replica.publish_due_channeldata()  # the first still builds: the second waits
    assert len(entered) == 1
    release.set()
    deadline = time.monotonic() + 10
    while len(entered) < 2 and time.monotonic() < deadline:
        replica.publish_due_channeldata()
        time.sleep(0.05)
    assert len(entered) == 2
    for channel in channels:
        deadline = time.monotonic() + 10
        while channel_row(container, channel).channeldata_requested_at is not None:
            assert time.monotonic() < deadline, f"{channel}'s channeldata.json never finished"
            time.sleep(0.05)
        assert channeldata_names(container, channel) == {"first", "more"}
