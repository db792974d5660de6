"""``stockade serve --workers 2``: the supervisor never loads the application (issue 18 target 6;
it held ~130 MiB of modules it does not use), the first start still migrates and announces the
first admin once, a second start serves, and ``--port`` reaches the worker processes.

Whether a process loaded the application is read from its memory map: the application's
compiled extensions (py-rattler, yara) are mapped by every worker and by no lean supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.process import STOCKADE
from tests.support.server import ADMIN_PASSWORD, free_port

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.one_backend]

APP_EXTENSIONS = ("rattler.abi3.so", "yara")


def mapped_app_extensions(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in APP_EXTENSIONS if name in maps}


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


@contextmanager
def serving(data_dir: Path, port: int, out: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env.update(STOCKADE_DATA_DIR=str(data_dir), STOCKADE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    with out.open("ab") as log:
        proc = subprocess.Popen(
            [str(STOCKADE), "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180  # a loaded 2-core machine: three processes import
        while True:
            assert proc.poll() is None, out.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _workers_ready(proc: subprocess.Popen[bytes]) -> list[int]:
    """The worker processes once both have loaded the application."""
    deadline = time.monotonic() + 120
    while True:
        loaded = [pid for pid in children(proc.pid) if mapped_app_extensions(pid)]
        if len(loaded) >= 2 or time.monotonic() > deadline:
            return loaded
        time.sleep(0.2)


def test_supervisor_stays_lean_and_workers_serve(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    out = tmp_path / "out.txt"
    with serving(data_dir, port, out) as proc:
        assert len(_workers_ready(proc)) == 2
        assert mapped_app_extensions(proc.pid) == set()  # the supervisor
        # the workers read --port from the environment: their base URL names it
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/tokens", timeout=30)
        assert answer.status_code == 401
        conda = httpx.get(f"http://127.0.0.1:{port}/conda/main/noarch/repodata.json", timeout=30)
        assert conda.status_code in (200, 401, 404)
    first = out.read_text()
    assert first.count("First start.") == 1
    assert "with the password from STOCKADE_ADMIN_PASSWORD" in first
    assert ADMIN_PASSWORD not in first
    assert first.count(f"Stockade serving on http://127.0.0.1:{port}") == 1

    second = tmp_path / "second.txt"
    with serving(data_dir, port, second) as proc:
        assert mapped_app_extensions(proc.pid) == set()
        signed_in = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/tokens",
            json={"name": "lean", "expires_in_days": 1},
            auth=("admin", ADMIN_PASSWORD),
            timeout=60,
        )
        assert signed_in.status_code in (200, 201), signed_in.text
        # The supervisor killed outright: its workers stop by themselves (they went on serving
        # on the inherited socket, orphans that held the port and the database).
        workers = _workers_ready(proc)
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 90
        while any(running(pid) for pid in workers):
            assert time.monotonic() < deadline, f"orphaned workers still running: {workers}"
            time.sleep(0.2)
    assert "First start." not in second.read_text()


def test_a_failed_preparation_stops_the_start(tmp_path: Path) -> None:
    """The child that migrates fails (a database URL it cannot open): the command exits non-zero
    with the reason, and no worker is started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env.update(
        STOCKADE_DATA_DIR=str(tmp_path / "data"),
        STOCKADE_DATABASE_URL=f"sqlite:///{blocker}/stockade.db",
    )
    done = subprocess.run(
        [str(STOCKADE), "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode != 0
    assert "Stockade serving on" not in done.stdout
