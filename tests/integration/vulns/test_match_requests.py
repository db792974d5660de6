"""Matching new artifacts is never lost, and done once: the intent row written at admission is
taken by the queued job or, if that job was lost or died, by the match-request loop."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, MatchRequest
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.handoff import hand_off
from stockade.db.engine import transaction
from stockade.mirroring.models import RunState
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.vulns.match_requests import match_pending
from stockade.vulns.matcher import MatchCounts, Matcher
from stockade.vulns.tasks import match_artifacts, match_left_behind
from tests.integration.vulns.support import (
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
    sync,
)

OLD = ("PYSEC-2021-76", "aiohttp", "3.7.2", "0")


def _advised(container: Container, admin: Principal, tmp_path: Path) -> int:
    """A channel id, with the aiohttp advisories synced (none matched yet)."""
    feed = add_feed(container, admin, "pypa", osv_folder(tmp_path, "aiohttp").as_uri(), "osv")
    sync(container, feed)
    return channel_id(container, admin)


def _requests(container: Container) -> int:
    with container.factory() as session:
        return session.scalar(select(func.count()).select_from(MatchRequest)) or 0


def _age(container: Container, *, leases: bool = False) -> None:
    """Requests made a minute ago (past the settle time); ``leases``: their leases ran out."""
    past = utcnow() - timedelta(minutes=1)
    values = {"requested_at": past, **({"leased_until": past} if leases else {})}
    with transaction(container.factory) as session:
        session.execute(update(MatchRequest).values(**values))


def test_broker_down_at_admission_the_loop_matches(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    channel = _advised(container, admin, tmp_path)
    ids = add_artifacts(container, channel, [OLD[1:]], match=False)

    def broker_down(_ids: list[int]) -> None:
        raise ConnectionError("redis is down")

    assert hand_off(broker_down, ids, "matching of artifacts") is False
    assert OLD not in matches(container) and _requests(container) == 1
    assert match_left_behind(container) == 0  # young: left to its queued job a few seconds
    _age(container)
    assert match_left_behind(container) == 1
    assert OLD in matches(container) and _requests(container) == 0
    assert match_left_behind(container) == 0


def test_a_job_dying_midway_is_redone_once_by_the_loop(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = _advised(container, admin, tmp_path)
    ids = add_artifacts(container, channel, [OLD[1:]], match=False)
    real = Matcher.match_artifacts
    calls: list[Sequence[int]] = []

    def dies_once(self: Matcher, artifact_ids: Sequence[int]) -> MatchCounts:
        calls.append(list(artifact_ids))
        counts = real(self, artifact_ids)  # written, not committed
        if len(calls) == 1:
            raise RuntimeError("worker died before commit")
        return counts

    monkeypatch.setattr(Matcher, "match_artifacts", dies_once)
    with pytest.raises(RuntimeError):
        match_artifacts(container, ids)
    assert OLD not in matches(container) and _requests(container) == 1
    _age(container)
    assert match_left_behind(container) == 0  # its lease still holds (the worker may live)
    _age(container, leases=True)
    assert match_left_behind(container) == 1
    assert OLD in matches(container) and _requests(container) == 0
    assert match_left_behind(container) == 0
    assert match_artifacts(container, ids).added == 0  # the job queued again: nothing to do
    assert calls == [ids, ids]


def test_two_loops_match_each_request_once(
    container: Container, admin: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = _advised(container, admin, tmp_path)
    items = [("aiohttp", f"3.7.{n}", "0") for n in range(3)]
    items += [("other", f"1.{n}", "0") for n in range(17)]
    ids = add_artifacts(container, channel, items, match=False)
    _age(container)
    real = Matcher.match_artifacts
    matched: list[int] = []
    lock = threading.Lock()

    def recorded(self: Matcher, artifact_ids: Sequence[int]) -> MatchCounts:
        with lock:
            matched.extend(artifact_ids)
        return real(self, artifact_ids)

    monkeypatch.setattr(Matcher, "match_artifacts", recorded)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            start.wait()
            while match_pending(container.factory, None, batch=3):
                pass
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(matched) == sorted(ids)  # each once
    assert _requests(container) == 0
    assert OLD in matches(container)


def test_a_mirror_run_asks_for_the_matching_of_what_it_admitted(
    container: Container, admin: Principal, testdata: Path
) -> None:
    source = (testdata / "channels" / "test-recipes").resolve().as_uri()
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).create(
            admin, "recipes", MirrorSpec(source=source, mode="passive", subdirs=["noarch"])
        )
        run_id = int(RunService(session, container.secrets).request(admin, "recipes").id)
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None and outcome.state == RunState.COMPLETED
    with container.factory() as session:
        admitted = set(session.scalars(select(Artifact.id).where(Artifact.mirror_id.is_not(None))))
        requested = set(session.scalars(select(MatchRequest.artifact_id)))
    assert admitted and requested == admitted
