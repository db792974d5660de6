"""Big work in a process of its own: a mirror run (``mirroring/placement.py`` says which) or a
slow ``channeldata.json`` build (``channels.publication``).

The process is this interpreter started again on this module (``python -m``). It reads the
settings from its stdin, as a pickle: secrets included, never in its arguments or environment. It
builds its own container and does the work as a thread of the worker would. A run's lease,
heartbeat, progress and logs all go through the database, so the API and ``mirror run --follow``
show it live; a channeldata build sends back its sha256 through a pipe of its own, and the
publisher that started it records it. Log lines go where the server's go (it inherits stdout and
stderr).

It stops with the worker, on SIGTERM: a run lets go of its lease at its next safe point (the
next worker resumes it), a channeldata build just ends (its lease runs out for another):
- a graceful stop of the worker passes SIGTERM on;
- the kernel sends it SIGTERM when the thread that started it ends (``PR_SET_PDEATHSIG``): a
  worker that stops before its job threads are done, or a killed server, leaves no process behind
  holding the run;
- it runs in a session of its own: a Ctrl-C at the server's terminal reaches it only through the
  server's stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from typing import NoReturn

from stockade.channels.publication_channeldata import build_channeldata
from stockade.container import Container
from stockade.core.context import Origin, origin
from stockade.core.logging import configure_logging
from stockade.mirroring.placement import NOT_OURS, ApartExit
from stockade.settings import Settings

_MODULE = "stockade.jobs.apart"
#: What a process started on this module does (its first argument).
MIRROR_RUN, CHANNELDATA = "mirror-run", "channeldata"
_PR_SET_PDEATHSIG = 1
#: Seconds a run's process has after SIGTERM to let go before it is killed.
STOP_GRACE_S = 30.0


def run_apart(
    settings: Settings, run_id: int, stop: threading.Event, *, grace_s: float = STOP_GRACE_S
) -> ApartExit:
    """Execute the run in a process of its own and wait for it; how that process ended."""
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, this module, two integers
        [sys.executable, "-m", _MODULE, MIRROR_RUN, str(run_id), str(os.getpid())],
        stdin=subprocess.PIPE,
        close_fds=True,
        start_new_session=True,
    )
    _send_settings(proc, settings)
    deadline: float | None = None
    while True:
        # wait4, not Popen.wait: the resource usage of this process alone (its peak RSS)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return ApartExit(proc.returncode, usage.ru_maxrss * 1024)
        if deadline is None and stop.is_set():
            proc.terminate()
            deadline = time.monotonic() + grace_s
        elif deadline is not None and time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.1)


def build_channeldata_apart(settings: Settings, channel_id: int) -> str:
    """Build the channel's ``channeldata.json`` (a blob) in a process of its own; its sha256.

    The caller holds the build's lease and records the result (``channels.publication``); the
    process only reads the channel and writes the blob. Its answer comes through a pipe of its
    own (its stdout and stderr are the server's log)."""
    answer, write = os.pipe()
    args = [CHANNELDATA, str(channel_id), str(os.getpid()), str(write)]
    try:
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, this module, integers
            [sys.executable, "-m", _MODULE, *args],
            stdin=subprocess.PIPE,
            pass_fds=(write,),
            close_fds=True,
            start_new_session=True,
        )
    finally:
        os.close(write)
    _send_settings(proc, settings)
    with os.fdopen(answer, "rb") as out:
        sha = out.read(65)
    status = proc.wait()
    if status != 0 or len(sha) != 64:
        raise ChannelDataApartError(f"its process ended with status {status}")
    return sha.decode("ascii")


class ChannelDataApartError(RuntimeError):
    """The process that built a channeldata.json failed (its log says why)."""


def _send_settings(proc: subprocess.Popen[bytes], settings: Settings) -> None:
    assert proc.stdin is not None
    try:
        with proc.stdin:
            proc.stdin.write(pickle.dumps(settings))
    except OSError:  # it ended before reading: its status says why
        pass


def _stop_on_sigterm() -> threading.Event:
    """An event set on SIGTERM, by a thread that waits for the signal (blocked in every other
    thread). Not by a handler: the parent's SIGTERM and the kernel's can come together, and
    ``Event.set`` re-entered from a handler deadlocks on the event's own lock."""
    stopping = threading.Event()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # before any thread starts

    def wait() -> None:
        signal.sigwait({signal.SIGTERM})
        stopping.set()

    threading.Thread(target=wait, name="stockade-apart-stop", daemon=True).start()
    return stopping


def _stop_with_parent(parent: int) -> None:
    """SIGTERM when the thread that started this process ends (Linux); at once if it already has."""
    name = ctypes.util.find_library("c")
    if name is not None:
        # not Linux: no such call, and the graceful stop still reaches it
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _young_collections_only() -> None:
    """No full collection of the cyclic garbage collector in this process (it lives for one run).

    A run's parse of a big upstream is millions of containers that live until the run ends and
    form no cycles. A full collection walks all of them: 2 s of a 600,000-record first run's
    switching transaction, which held the write lock twice as long as the run in the worker's
    process. Young objects are still collected; what survives them is freed at exit."""
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, 2**31 - 1)


def main(argv: list[str]) -> NoReturn:
    kind, target, parent = argv[0], int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A run lets go of its lease on SIGTERM; a channeldata build just ends (another publisher
    # takes its lease once it runs out).
    stopping = _stop_on_sigterm() if kind == MIRROR_RUN else threading.Event()
    _stop_with_parent(parent)
    settings: Settings = pickle.load(sys.stdin.buffer)  # noqa: S301 - from our own parent
    configure_logging(settings.log_level, settings.log_format)
    container = Container.build(settings)
    _young_collections_only()
    try:
        if kind == CHANNELDATA:
            sha = build_channeldata(container.read_factory, container.blobs, target)
            os.write(int(argv[3]), sha.encode("ascii"))
            status = 0
        else:
            status = _mirror_run(container, target, stopping)
    finally:
        container.engine.dispose()
    finish(status)


def _mirror_run(container: Container, run_id: int, stopping: threading.Event) -> int:
    sync = container.mirror_sync()
    sync.shutdown = stopping  # a stop asked before the run began is seen at its first step
    sync.keep_for_exit = []  # not freed: this process ends with the run
    with origin(Origin(channel="job")):
        outcome = sync.execute(run_id)
    return 0 if outcome is not None else NOT_OURS


def finish(status: int) -> NoReturn:
    """End the process now, without freeing what the run kept (``MirrorSync.keep_for_exit``):
    everything is in the database, and the system takes the memory back at once."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
