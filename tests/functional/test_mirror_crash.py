"""A mirror run killed mid-way resumes as the same run and leaves no half-published channel.

SPEC §5: "A run that crashed resumes without downloading completed files again"; §12: "a crash in
[…] a mirror run […] leaves no half-published state". The server is a real ``stockade serve``
subprocess (:mod:`tests.support.process`), SIGKILLed while an active run downloads from a slow
upstream, or ended at the crash point ``mirror:before-commit`` (``core/faults.py``: the run's
artifact rows are written in its final transaction, not yet committed). After the restart the
housekeeper finds the run's heartbeat stale and hands the run to the queue again: the same run id
completes as attempt 2, and

- until then, the channel serves what it served before the run (nothing, or the previous run's
  result), never a mix;
- no package file whose body the upstream sent before the kill is asked for again;
- afterwards every record of the index is the upstream's, downloads with its sha256, and the
  ``repodata.json``, ``.zst`` and shards agree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_URL
from tests.support.mirror_runs import (
    SUBDIR,
    RecordPool,
    blob_shas,
    check_served_exactly,
    create_mirror,
    get_run,
    log_length,
    package_downloads,
    package_requests,
    run_logs,
    served_records,
    start_run,
    wait_for,
    wait_run,
)
from tests.support.process import ServerProcess, server_process
from tests.support.published import artifact_rows, staged_rows, subdir_rows
from tests.support.server import fresh_database
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.xdist_group("mirror-crash")]

KILLED = 137  # what core/faults.py exits with, like a SIGKILLed process
DELAY_S = 0.4  # the upstream pauses this long after each package body: 60 files take seconds
CONCURRENCY = 4
BASE_ENV = {"STOCKADE_MIRROR__HEARTBEAT_S": "0.5"}
# After a restart: a run without a heartbeat for 2 s is taken over, looked for twice a second.
RESUME_ENV = {"STOCKADE_MIRROR__STALE_AFTER_S": "2", "STOCKADE_MIRROR__SCHEDULER_POLL_S": "0.5"}


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (
        fresh_database(backend, data_dir, PG_URL) as db_url,
        server_process(data_dir, db_url, start=False, **BASE_ENV) as live,
    ):
        yield live


def _mirror(server: ServerProcess, upstream: Upstream) -> str:
    name = f"mc-{uuid.uuid4().hex[:10]}"
    with server.client() as client:
        create_mirror(client, name, upstream.url, concurrency=CONCURRENCY)
    return name


def _complete_run(server: ServerProcess, mirror: str, expected: dict[str, str]) -> None:
    """Run the mirror to completion; the channel then serves exactly ``expected``."""
    with server.client() as client:
        run = wait_run(client, start_run(client, mirror), alive=server.assert_alive)
        assert run["state"] == "completed", run
    server.wait_published(mirror)
    with server.client() as client:
        assert served_records(client, mirror) == expected


def _assert_old_or_new(
    server: ServerProcess, mirror: str, old: dict[str, str], new: dict[str, str]
) -> None:
    with server.client() as client:
        served = served_records(client, mirror)
    assert served in (old, new), (
        f"a mix is served: {len(set(served) & set(new))} new records, "
        f"{len(set(served) & set(old))} old ones, {len(served)} in all"
    )


def _resumed(server: ServerProcess, run_id: int, *, first_logged: bool) -> dict[str, object]:
    """After a restart with a short stale time: the same run ends, as a later attempt.

    ``first_logged``: the first attempt lived long enough to save its log (lines are saved with
    each heartbeat; a crash loses those not saved yet)."""
    with server.client() as client:
        run = wait_run(client, run_id, alive=server.assert_alive)
        assert run["state"] == "completed", run
        assert run["attempt"] == 2, run
        assert run["id"] == run_id
        messages = [line["message"] for line in run_logs(client, run_id)]
    if first_logged:
        assert any(m.startswith("attempt 1 on ") for m in messages), messages
    assert any(m.startswith("attempt 2 on ") for m in messages), messages
    return run


# -- 1. SIGKILL while the files download -----------------------------------------------------------


# One backend (CI time): what this checks, resuming downloads without fetching twice, is the
# downloader's and the blob store's; the database's side of a kill is checked on both backends by
# test_crash_before_commit_shows_nothing_until_resumed and tests/integration/mirroring.
@pytest.mark.one_backend
@pytest.mark.parametrize("scenario", ["first-run", "later-run"])
def test_kill_mid_download_resumes_without_refetching(
    server: ServerProcess, tmp_path: Path, scenario: str
) -> None:
    pool = RecordPool.build(tmp_path / "up", count=70)
    with Upstream(pool.root) as upstream:
        server.start()
        mirror = _mirror(server, upstream)
        old: dict[str, str] = {}
        if scenario == "later-run":
            old = pool.publish(pool.names[:30])
            _complete_run(server, mirror, old)
            new = pool.publish(pool.names[10:])  # 20 records stay, 10 go, 40 arrive
        else:
            new = pool.publish(pool.names[:60])
            with server.client() as client:
                assert served_records(client, mirror) == {}
        old_rows = artifact_rows(server.db_url, mirror)
        assert old_rows == old
        to_fetch = set(new) - set(old)
        upstream.chunk_delay_s = DELAY_S
        run_start = log_length(upstream)
        with server.client() as client:
            run_id = start_run(client, mirror)
        wait_for(
            lambda: len(package_downloads(upstream, run_start)) >= 12,
            "a dozen files to be downloaded",
            alive=server.assert_alive,
        )
        _assert_old_or_new(server, mirror, old, old)  # still the old index, mid-run
        before_kill = log_length(upstream)
        server.kill()
        sent_before = set(package_downloads(upstream, run_start, before_kill))
        assert 0 < len(sent_before) < len(to_fetch), "the kill did not land mid-download"
        assert sent_before <= to_fetch
        # Nothing of the run is in the database: the rows switch in the run's last transaction.
        assert artifact_rows(server.db_url, mirror) == old_rows
        # Let bodies in flight at the kill end, so the log after this point is the restart's.
        time.sleep(DELAY_S + 0.5)
        restart_at = log_length(upstream)
        stored = blob_shas(server.data_dir)
        assert {new[f] for f in sent_before} <= stored, "files sent before the kill were lost"

        server.start(**RESUME_ENV)
        _assert_old_or_new(server, mirror, old, new)
        run = _resumed(server, run_id, first_logged=True)

    again = set(package_requests(upstream, restart_at))
    assert not again & sent_before, f"fetched again after the restart: {sorted(again)[:5]}"
    assert not again & set(old), "records the channel already had were downloaded"
    fetched = set(package_downloads(upstream, run_start))
    # A body the server had read whole when it was killed may not be logged as sent (the
    # upstream's last write failed on the reset connection): its blob was stored before the kill.
    unlogged = to_fetch - fetched
    assert all(new[f] in stored for f in unlogged), f"never fetched: {sorted(unlogged)[:5]}"
    counts = run["counts"]
    assert isinstance(counts, dict)
    assert counts["files_present"] >= len(sent_before)
    assert counts["files_present"] + counts["files_downloaded"] == len(to_fetch)
    assert counts.get("failed_files", 0) == 0
    check_served_exactly(server, mirror, new)


# -- 2. a crash between "rows written" and "committed" ---------------------------------------------


# One backend (CI time): the kill point is in the run's own code and the commit is all or
# nothing on either database; on PostgreSQL, mirror runs are killed at random in the cluster
# fault suite (tests/fault), and staged batches resumed after a death are checked on both
# backends in tests/integration/mirroring/test_staged_batches.py.
@pytest.mark.one_backend
def test_crash_before_commit_shows_nothing_until_resumed(
    server: ServerProcess, tmp_path: Path
) -> None:
    pool = RecordPool.build(tmp_path / "up", count=50)
    with Upstream(pool.root) as upstream:
        server.start()
        mirror = _mirror(server, upstream)
        old = pool.publish(pool.names[:20])
        _complete_run(server, mirror, old)
        old_index = {r["subdir"]: r["repodata_sha256"] for r in subdir_rows(server.db_url, mirror)}

        server.restart(crash_at="mirror:before-commit")
        new = pool.publish(pool.names[5:])  # 15 stay, 5 go, 30 arrive
        with server.client() as client:
            run_id = start_run(client, mirror)
        assert server.wait_exit() == KILLED, server.log_tail()
        assert artifact_rows(server.db_url, mirror) == old
        index = {r["subdir"]: r["repodata_sha256"] for r in subdir_rows(server.db_url, mirror)}
        assert index == old_index
        # Every file of the run was stored before the crash: none is fetched again.
        assert {new[f] for f in set(new) - set(old)} <= blob_shas(server.data_dir)
        restart_at = log_length(upstream)

        # A restart that does not take the run over yet (its heartbeat is not stale for a
        # minute): the channel serves the previous run's result, the run still looks running.
        server.start()
        with server.client() as client:
            assert served_records(client, mirror) == old
            run = get_run(client, run_id)
        assert run["state"] == "running" and run["attempt"] == 1, run
        assert artifact_rows(server.db_url, mirror) == old

        server.restart(**RESUME_ENV)
        _assert_old_or_new(server, mirror, old, new)
        _resumed(server, run_id, first_logged=False)
        assert package_requests(upstream, restart_at) == [], "files were fetched again"
    check_served_exactly(server, mirror, new)
    assert SUBDIR in {r["subdir"] for r in subdir_rows(server.db_url, mirror)}


# -- 3. a kill between two batches of staged rows --------------------------------------------------


# One backend (CI time): staged batches resumed after a death are checked on both backends in
# tests/integration/mirroring/test_staged_batches.py; this adds a real SIGKILL.
@pytest.mark.one_backend
def test_kill_between_batches_resumes_without_writing_twice(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A run writes its new rows in batches, each committed (issue 18): killed after the second,
    the channel still serves the previous result; the next attempt keeps the rows already
    staged (same ids) and the channel ends with each record once."""
    batch = {"STOCKADE_MIRROR__STAGE_BATCH": "10"}
    pool = RecordPool.build(tmp_path / "up", count=50)
    with Upstream(pool.root) as upstream:
        server.start(**batch)
        mirror = _mirror(server, upstream)
        old = pool.publish(pool.names[:10])
        _complete_run(server, mirror, old)

        server.restart(crash_at="mirror:after-batch@2", **batch)
        new = pool.publish(pool.names[5:])  # 5 stay, 5 go, 40 arrive: 4 batches
        with server.client() as client:
            run_id = start_run(client, mirror)
        assert server.wait_exit() == KILLED, server.log_tail()
        staged = staged_rows(server.db_url, mirror)
        assert len(staged) == 20, "the kill did not land after the second batch"
        assert set(staged) <= set(new) - set(old)
        assert artifact_rows(server.db_url, mirror) == old

        server.start(**batch)  # not taken over yet: the channel serves the previous result
        with server.client() as client:
            assert served_records(client, mirror) == old
        server.restart(**RESUME_ENV, **batch)
        _assert_old_or_new(server, mirror, old, new)
        _resumed(server, run_id, first_logged=False)
    assert staged_rows(server.db_url, mirror) == {}
    final = {a["filename"]: a["id"] for a in server.artifacts(mirror)}
    assert {fn: final[fn] for fn in staged} == staged, "rows staged before the kill were rewritten"
    check_served_exactly(server, mirror, new)
