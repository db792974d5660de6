"""The fault suite (issue 16, SPEC §11): kill -9 any one process of a running cluster at a random
moment of a burst of work, start it again, let the cluster converge, and check that nothing was
lost, half published or done twice.

The cluster (:mod:`tests.support.cluster`: PostgreSQL, Redis, two ``stockade serve`` replicas
behind a round-robin balancer, two ``stockade worker`` processes) stays up for the whole module;
each trial kills and restarts one process. A trial is one test, its randomness seeded:

    STOCKADE_FAULT_TRIALS=50 make fault                    # the full run (CI runs 1)
    STOCKADE_FAULT_SEED=1234 STOCKADE_FAULT_TRIALS=1 ...   # replay the trial of seed 1234

Each trial: a new channel (scanned: uploads are held until their verdict) and a new mirror of a
local-folder upstream; uploads of generated packages with unique names and of one real package
(tests/data/packages), each in its own request, spread over about a second; the mirror's run;
and, at a random delay, SIGKILL of one process (a replica, a worker or Redis), restarted a moment
later. Then, once the cluster has converged (every process up, every revision published, every
scan done, every run finished, the broker's queue empty), the invariants of
:mod:`tests.fault.invariants` hold.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, TESTDATA
from tests.factories.packages import PackageSpec, build_conda, build_tar_bz2, file
from tests.fault.invariants import (
    Burst,
    check_channels,
    check_mirror,
    check_no_duplicates,
    check_uploads,
    mirror_runs,
    pending_work,
    read_while_running,
)
from tests.support.cluster import KINDS, Cluster, Kind
from tests.support.mirror_runs import FINAL, RecordPool, create_mirror, served_records, start_run

pytestmark = [
    pytest.mark.functional,
    pytest.mark.slow,
    pytest.mark.xdist_group("fault-cluster"),  # one cluster, on one xdist worker
    pytest.mark.skipif(not PG_URL, reason="the fault suite needs PostgreSQL: STOCKADE_TEST_PG_URL"),
]

# CI runs 1 trial (its time budget; the kind killed follows the seed); make fault runs 50.
TRIALS = int(os.environ.get("STOCKADE_FAULT_TRIALS", "1"))
BASE_SEED = int(os.environ.get("STOCKADE_FAULT_SEED") or random.SystemRandom().randrange(10**6))
CONVERGE_S = 120.0
REAL = ["mock-2.0.0-py37_1000.conda", "xtensor-io-0.10.3-hb585cf6_0.tar.bz2"]
REAL += ["flask-0.11.1-py_0.tar.bz2", "fly-2.5.2-0.tar.bz2", "test-package-0.2-0.tar.bz2"]
UPSTREAM_RECORDS = 16


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """A local-folder upstream channel (real r linux-64 records, generated files)."""
    pool = RecordPool.build(tmp_path_factory.mktemp("upstream"), count=UPSTREAM_RECORDS)
    return pool.root.as_uri(), pool.publish(pool.names)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_one_process_at_random(
    fault_cluster: Cluster, upstream: tuple[str, dict[str, str]], tmp_path: Path, trial: int
) -> None:
    seed = BASE_SEED + trial
    print(f"trial seed {seed}: replay with STOCKADE_FAULT_SEED={seed} STOCKADE_FAULT_TRIALS=1")
    try:
        _trial(fault_cluster, upstream, tmp_path, random.Random(seed), KINDS[seed % len(KINDS)])
    except Exception as error:
        raise AssertionError(
            f"trial of seed {seed} failed (replay: STOCKADE_FAULT_SEED={seed} "
            f"STOCKADE_FAULT_TRIALS=1 make fault): {error}\n{fault_cluster.logs()}"
        ) from error


def _trial(
    cluster: Cluster,
    upstream: tuple[str, dict[str, str]],
    tmp_path: Path,
    rng: random.Random,
    kind: Kind,
) -> None:
    source, records = upstream
    with _client(cluster) as client:
        burst = _prepare(client, source, tmp_path, rng)
        victim = rng.choice(cluster.names(kind))
        kill_at = rng.uniform(0.0, 3.0)
        read = _burst_and_converge(cluster, client, burst, tmp_path, rng, victim, kill_at)
        runs = [(r["state"], r["attempt"]) for r in mirror_runs(cluster.db_url, burst.mirror)]
        print(
            f"killed {victim} at {kill_at:.2f}s; acknowledged {len(burst.acknowledged)} of "
            f"{len(burst.sent)} uploads, refused {burst.refused}; runs {runs}; "
            f"{read} indexes read meanwhile"
        )
        check_uploads(client, cluster.db_url, burst)
        check_channels(client, [burst.channel, burst.mirror])
        served = served_records(client, burst.mirror)
        check_mirror(cluster.db_url, burst, records, served)
    check_no_duplicates(cluster.db_url)


def _burst_and_converge(
    cluster: Cluster,
    client: httpx.Client,
    burst: Burst,
    tmp_path: Path,
    rng: random.Random,
    victim: str,
    kill_at: float,
) -> int:
    """The burst, then convergence, while a client reads the trial's indexes (and every file
    they list) over and over: none may be served broken. Returns the indexes read."""
    places = [(burst.channel, "noarch"), (burst.channel, "linux-64"), (burst.mirror, "linux-64")]
    done = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as watch, _client(cluster) as reader_client:
        reader = watch.submit(read_while_running, reader_client, places, done)
        try:
            _run_burst(cluster, burst, tmp_path, rng, victim, kill_at)
            answered_5xx = {n: s for n, s in burst.refused.items() if s.startswith("5")}
            assert not answered_5xx, f"uploads answered with a server error: {answered_5xx}"
            _converge(cluster, client, burst)
        finally:
            done.set()
        read, broken = reader.result()
    assert not broken, f"a client was served a broken index: {broken[:3]}"
    return read


def _client(cluster: Cluster) -> httpx.Client:
    headers = {"authorization": f"Bearer {cluster.admin_token}"}
    # as conda does: a download may redirect to the object store (presigned URL)
    return httpx.Client(base_url=cluster.url, headers=headers, timeout=60, follow_redirects=True)


def _prepare(client: httpx.Client, source: str, tmp_path: Path, rng: random.Random) -> Burst:
    tag = uuid.uuid4().hex[:8]
    channel = f"fault-{tag}"
    answer = client.post("/api/v1/channels", json={"name": channel, "privacy": "public"})
    assert answer.status_code == 201, answer.text
    mirror = f"fault-mirror-{tag}"
    create_mirror(client, mirror, source, subdirs=["linux-64"], concurrency=4)
    folder = tmp_path / "packages"
    folder.mkdir()
    for i in range(rng.randint(3, 6)):
        payload = (file(f"lib/fault-{tag}-{i}.txt", rng.randbytes(rng.randint(10, 50_000))),)
        spec = PackageSpec(name=f"fault-{tag}-{i}", version=f"1.{i}", payload=payload)
        (build_conda if i % 2 else build_tar_bz2)(folder, spec)
    shutil.copy(TESTDATA / "packages" / rng.choice(REAL), folder)
    sent = {p.name: _sha256(p) for p in sorted(folder.iterdir())}
    return Burst(channel=channel, mirror=mirror, sent=sent)


def _run_burst(
    cluster: Cluster,
    burst: Burst,
    tmp_path: Path,
    rng: random.Random,
    victim: str,
    kill_at: float,
) -> None:
    """Uploads and a mirror run started over about a second (scans, publications and the run
    follow); the victim killed within the first three seconds."""
    folder = tmp_path / "packages"
    down_for = rng.uniform(0.0, 0.5)
    starts = {name: rng.uniform(0.0, 1.0) for name in burst.sent}
    run_at = rng.uniform(0.0, 1.0)
    with ThreadPoolExecutor(max_workers=len(starts) + 2) as pool:
        uploads = {
            name: pool.submit(_upload, cluster, burst.channel, folder / name, delay)
            for name, delay in starts.items()
        }
        run = pool.submit(_start_run, cluster, burst.mirror, run_at)
        killer = pool.submit(_kill, cluster, victim, kill_at, down_for)
        killer.result()
        for name, future in uploads.items():
            _record(burst, name, future)
        run_id = run.result()
        if run_id is not None:
            burst.run_ids.append(run_id)


def _record(burst: Burst, name: str, future: Future[httpx.Response | str]) -> None:
    outcome = future.result()
    if isinstance(outcome, httpx.Response) and outcome.is_success:
        burst.acknowledged[name] = burst.sent[name]
    else:
        burst.refused[name] = outcome if isinstance(outcome, str) else str(outcome.status_code)


def _upload(cluster: Cluster, channel: str, path: Path, delay: float) -> httpx.Response | str:
    time.sleep(delay)
    try:
        with _client(cluster) as client:
            files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
            return client.post(f"/api/v1/channels/{channel}/files", files=files)
    except httpx.TransportError as error:  # the balancer lost the replica mid-answer
        return f"{type(error).__name__}: {error}"


def _start_run(cluster: Cluster, mirror: str, delay: float) -> int | None:
    time.sleep(delay)
    try:
        with _client(cluster) as client:
            answer = client.post(f"/api/v1/mirrors/{mirror}/runs")
    except httpx.TransportError:
        return None
    return int(answer.json()["id"]) if answer.status_code == 202 else None


def _kill(cluster: Cluster, victim: str, at: float, down_for: float) -> None:
    time.sleep(at)
    cluster.kill(victim)
    time.sleep(down_for)
    cluster.start(victim)


def _converge(cluster: Cluster, client: httpx.Client, burst: Burst) -> None:
    """Until every process is up and the trial's work is done; a run that failed (the kill hit
    it) is retried once, as an operator or the schedule would."""
    cluster.ensure_running()
    deadline = time.monotonic() + CONVERGE_S
    retried = False
    while True:
        runs = mirror_runs(cluster.db_url, burst.mirror)
        active = [r for r in runs if r["state"] not in FINAL]
        if not active and (not runs or runs[-1]["state"] != "completed") and not retried:
            retried = True
            start_run(client, burst.mirror)
            continue
        waiting = _waiting(cluster, burst, active)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster did not converge in {CONVERGE_S}s: {waiting}")
        time.sleep(0.1)


def _waiting(cluster: Cluster, burst: Burst, active: list[dict[str, Any]]) -> list[str]:
    waiting = pending_work(cluster.db_url, [burst.channel, burst.mirror])
    waiting += [f"run {r['id']} {r['state']}" for r in active]
    if queued := cluster.redis.queued():
        waiting.append(f"{queued} queued jobs")
    return waiting


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
