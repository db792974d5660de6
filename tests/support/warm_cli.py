"""The ``stockade`` command, imported once: a fork server and a tiny ``stockade`` shim for PATH.

Importing the CLI takes a second or more (SQLAlchemy models, settings); a test that runs fifty
documented commands through ``bash`` would spend most of its time there. :func:`start` runs one
process that imports ``stockade.cli.main`` (the entry point ``pyproject.toml`` installs as
``stockade``) and forks a child per command; the shim it writes hands the child its arguments,
folder, environment and its own stdin, stdout and stderr, and exits with the child's status. Each
command still runs in a fresh process, as the real script does, and answers prompts from stdin.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHIM = """#!{python} -S
import json, os, socket, struct, sys, time
conn = socket.socket(socket.AF_UNIX)
deadline = time.monotonic() + 60  # the fork server may still be importing the CLI
while True:
    try:
        conn.connect({path!r})
        break
    except (FileNotFoundError, ConnectionRefusedError):
        if os.path.exists({path!r} + ".failed"):
            sys.exit(open({path!r} + ".failed").read())
        if time.monotonic() > deadline:
            sys.exit("stockade shim: the fork server did not start")
        time.sleep(0.05)
request = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
conn.shutdown(socket.SHUT_WR)
data = b""
while len(data) < 4:
    chunk = conn.recv(4 - len(data))
    if not chunk:
        sys.exit("stockade shim: the fork server went away")
    data += chunk
sys.exit(struct.unpack("!i", data)[0])
"""


@contextmanager
def start(folder: Path, env: dict[str, str], root: Path) -> Iterator[Path]:
    """Serve from ``folder`` (``root``: the project, for ``tests.support``); yield the folder
    holding the ``stockade`` shim (put it first on PATH)."""
    path = folder / "cli.sock"
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "stockade"
    shim.write_text(SHIM.format(python=sys.executable, path=str(path)))
    shim.chmod(0o755)
    server = subprocess.Popen(
        [sys.executable, "-c", f"from tests.support.warm_cli import serve; serve({str(path)!r})"],
        env=env,
        cwd=root,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no terminal: getpass reads from the command's stdin
    )
    try:
        yield bin_dir  # the shim waits for the socket: the import overlaps the caller's setup
    finally:
        server.terminate()
        server.wait(10)


def serve(path: str) -> None:
    """Import the CLI, then run each request in a forked child."""
    try:
        from stockade.cli.main import load_all, main  # imported once, before forking: the point

        load_all()  # the subcommands' modules too (the entry point imports them on demand)
    except BaseException:
        Path(path + ".failed").write_text(traceback.format_exc())  # the shims fail at once
        raise

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)
    listener.listen()
    while True:
        conn, _ = listener.accept()
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            while chunk := conn.recv(1 << 20):
                message += chunk
            pid = os.fork()
            if pid == 0:
                listener.close()
                _child(json.loads(message), fds, main)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(pid, 0)
            conn.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))


def _child(request: dict[str, object], fds: list[int], main: object) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update(dict(request["env"]))  # type: ignore[call-overload]
        sys.argv = ["stockade", *request["argv"]]  # type: ignore[misc]
        try:
            main()  # type: ignore[operator]
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        except BaseException:  # as the real script would: a traceback and status 1
            traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
