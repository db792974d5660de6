"""Private channels behind the documented nginx front (auth_request) vs nginx static, same run.

Issue 18, target 2: with a token (``Authorization: Bearer`` and the ``/t/TOKEN/`` URL form), a full
GET and a conditional GET answered 304 of a private channel's ~1 MB ``repodata.json.zst`` and of a
small package file, through:

- ``nginx static``: nginx serving the same bytes from disk, no credentials, no access log (the
  reference);
- ``nginx static, logged``: the same with an access log written as the front writes its own
  (``buffer=64k flush=1s``, one line per request): the documented front logs every request, as
  any deployed static server would; its ratio to this reference is printed beside the first;
- ``auth_request``: ``deploy/nginx/stockade.conf`` as documented (docs/deployment-nginx.md), in
  front of Stockade (uvicorn, ``--workers 2``, unix socket, ``STOCKADE_X_ACCEL_REDIRECT``);
- ``X-Accel`` (before): ``benchmarks/nginx/x-accel.conf``, where Stockade decides and answers every
  credentialed request (the 0.66x / 0.13x of the issue).

Rounds are interleaved (every target and case once per round; the machine's noise hits all); the
figure is the median of the rounds, the ratio is to nginx static's median in the same run. Besides
req/s, the Stockade server's CPU time (utime + stime of its process tree, from /proc) per 1,000
requests shows how much of the work still reaches Python. Before measuring, every target is checked
to answer what it should (200 with the same bytes, 304), and the auth_request front to send the
file itself (no Stockade ``X-Request-Id``).

    .venv/bin/python benchmarks/bench_private_nginx.py            # 5 rounds of 4 s, ~6 minutes
    .venv/bin/python benchmarks/bench_private_nginx.py --quick    # 2 rounds of 1 s
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import (  # noqa: E402
    ADMIN_PASSWORD,
    WrkResult,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    ensure_tools,
    free_port,
    machine,
    nginx,
    package_names,
    render,
    stockade_server,
    synthetic_packages,
    synthetic_record,
    wrk,
)
from tests.support.nginx_front import modules_dir, nginx_front  # noqa: E402

INDEX_CHANNEL = "bench-private"  # private; noarch points at a ~1 MB repodata.json.zst
PACKAGE_CHANNEL = "bench-private-pkgs"  # private; one small package uploaded
RECORDS = 9_000
CASES = ("repodata.json.zst GET", "repodata.json.zst 304", "package GET", "package 304")
TARGET_RATIO = 0.8
PID = "nginx.pid"  # in each nginx's prefix (benchmarks/nginx/*.conf)
READER = "bench-reader"
READER_PASSWORD = "bench-reader-password"


@dataclass
class Target:
    label: str
    base: str
    form: str  # "none" | "bearer" | "url"
    nginx_pid: Path  # nginx's pid file: its CPU time per request
    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # case -> Stockade CPU s per run
    nginx_cpu: dict[str, list[float]] = field(default_factory=dict)  # case -> nginx CPU s


def _index_blob(data_dir: Path) -> str:
    """The private channel and its noarch index (generated once, kept in the data folder)."""
    marker = data_dir / "private-nginx.json"
    if marker.is_file():
        return str(json.loads(marker.read_text())["zst"])
    from sqlalchemy import delete

    from stockade.channels.models import Channel, SubdirIndex
    from stockade.conda.repodata import build_repodata_json, compress_zst, encode_record
    from stockade.container import Container
    from stockade.core.clock import utcnow
    from stockade.db.engine import transaction
    from stockade.db.migrate import upgrade
    from stockade.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    upgrade(settings.db_url)
    container = Container.build(settings)
    pkgs = synthetic_packages(RECORDS, package_names(3_500), "noarch")
    pairs = [
        (p.filename, encode_record(synthetic_record(p, 1_700_000_000_000 + i)))
        for i, p in enumerate(pkgs)
    ]
    raw = build_repodata_json("noarch", (), pairs, ())
    zst = compress_zst(raw, 19)
    shas = {"json": container.blobs.put_bytes(raw), "zst": container.blobs.put_bytes(zst)}
    with transaction(container.factory) as session:
        session.execute(delete(Channel).where(Channel.name == INDEX_CHANNEL))
        channel = Channel(name=INDEX_CHANNEL, privacy="private")
        session.add(channel)
        session.flush()
        session.add(
            SubdirIndex(
                channel_id=channel.id,
                subdir="noarch",
                requested_rev=1,
                published_rev=1,
                repodata_sha256=shas["json"],
                repodata_zst_sha256=shas["zst"],
                record_count=RECORDS,
                published_at=utcnow(),
            )
        )
    container.close()
    marker.write_text(json.dumps(shas))
    return shas["zst"]


def _reader_token(base: str) -> str:
    """A plain user with read on both channels, and a token of theirs (set up through nginx)."""
    admin = httpx.Client(base_url=base, auth=("admin", ADMIN_PASSWORD), timeout=60)
    with admin:
        admin.post("/api/v1/users", json={"username": READER, "password": READER_PASSWORD})
        if admin.get(f"/api/v1/channels/{PACKAGE_CHANNEL}").status_code == 404:
            r = admin.post("/api/v1/channels", json={"name": PACKAGE_CHANNEL, "privacy": "private"})
            r.raise_for_status()
        for channel in (INDEX_CHANNEL, PACKAGE_CHANNEL):
            admin.put(
                f"/api/v1/channels/{channel}/members", json={"level": "read", "user": READER}
            ).raise_for_status()
    issued = httpx.post(
        f"{base}/api/v1/tokens",
        json={"name": f"bench-{time.time_ns()}", "expires_in_days": 1},
        auth=(READER, READER_PASSWORD),
        timeout=60,
    )
    issued.raise_for_status()
    return str(issued.json()["token"])


def _package(base: str, token: str) -> tuple[str, bytes]:
    """A ~4 KB package in the private package channel, served: its file name and bytes."""
    index = {
        "name": "bench-private-pkg",
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "subdir": "noarch",
        "noarch": "generic",
        "depends": [],
    }
    data = conda_bytes(index, {"share/data.bin": os.urandom(3_000)})
    filename = "bench-private-pkg-1.0-0.conda"
    path = f"/conda/{PACKAGE_CHANNEL}/noarch/{filename}"
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=60) as http:
        existing = http.get(path, headers=auth)
        if existing.status_code == 200:
            return filename, existing.content
        files = [("files", (filename, data, "application/octet-stream"))]
        http.post(
            f"/api/v1/channels/{PACKAGE_CHANNEL}/files",
            files=files,
            auth=("admin", ADMIN_PASSWORD),
        ).raise_for_status()
        deadline = time.monotonic() + 120
        while http.head(path, headers=auth).status_code != 200:
            if time.monotonic() > deadline:
                sys.exit(f"{path} was not served within 120 s")
            time.sleep(0.2)
    return filename, data


def _static_root(data_dir: Path, zst_sha: str, filename: str, package: bytes) -> Path:
    root = bench_dir("private-nginx", "static")
    sha = hashlib.sha256(package).hexdigest()
    for channel, name, blob in (
        (INDEX_CHANNEL, "repodata.json.zst", zst_sha),
        (PACKAGE_CHANNEL, filename, sha),
    ):
        target = root / "conda" / channel / "noarch" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        os.link(data_dir / "blobs" / blob[:2] / blob[2:4] / blob, target)
    return root


def _tree_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        stack.extend(int(c) for c in children)
    return total / tick


@dataclass
class Setup:
    token: str
    filename: str
    etags: dict[str, str]  # case kind ("repodata" | "package") -> Stockade's ETag (sha256)
    sizes: dict[str, int]
    seen: dict[tuple[str, str], str] = field(default_factory=dict)  # (target, kind) -> ETag


def _url(target: Target, setup: Setup, kind: str) -> tuple[str, list[str]]:
    path = (
        f"/conda/{INDEX_CHANNEL}/noarch/repodata.json.zst"
        if kind == "repodata"
        else f"/conda/{PACKAGE_CHANNEL}/noarch/{setup.filename}"
    )
    if target.form == "url":
        return f"{target.base}/t/{setup.token}{path}", []
    if target.form == "bearer":
        return f"{target.base}{path}", [f"Authorization: Bearer {setup.token}"]
    return f"{target.base}{path}", []


def _check(targets: list[Target], setup: Setup) -> None:
    """Every target answers what it should before anything is measured."""
    with httpx.Client(timeout=60) as http:
        for target in targets:
            for kind in ("repodata", "package"):
                url, header_lines = _url(target, setup, kind)
                headers = dict(h.split(": ", 1) for h in header_lines)
                full = http.get(url, headers=headers)
                etag = full.headers.get("etag", "")
                setup.seen[target.label, kind] = etag  # nginx static has its own (mtime-size)
                cond = http.get(url, headers={**headers, "If-None-Match": etag})
                ok = (
                    full.status_code == 200
                    and len(full.content) == setup.sizes[kind]
                    and cond.status_code == 304
                    and (target.form == "none" or etag == setup.etags[kind])
                )
                if target.form != "none" and "auth_request" in target.label:
                    ok = ok and _front_sends_itself(http, url, headers)
                print(
                    f"  {'ok  ' if ok else 'FAIL'} {target.label:<28} {kind}: {full.status_code}"
                    f" {len(full.content)} B, conditional {cond.status_code}"
                )
                if not ok:
                    sys.exit("a target does not answer as it should: nothing measured")


def _front_sends_itself(http: httpx.Client, url: str, headers: dict[str, str]) -> bool:
    """nginx sends the file itself (no Stockade request id). Right after the upload the package
    may still wait for its scan verdict: Stockade then answers itself, and nginx keeps that
    decision for 2 s (``proxy_cache_valid``), so this waits up to 15 s for the front to take it."""
    deadline = time.monotonic() + 15
    while True:
        if "x-request-id" not in http.get(url, headers=headers).headers:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _measure(
    targets: list[Target], setup: Setup, server_pid: int, args: argparse.Namespace
) -> None:
    for round_no in range(args.rounds):
        for case in CASES:
            kind = "repodata" if case.startswith("repodata") else "package"
            for target in targets:
                url, headers = _url(target, setup, kind)
                if case.endswith("304"):
                    headers = [*headers, f"If-None-Match: {setup.seen[target.label, kind]}"]
                nginx_pid = int(target.nginx_pid.read_text())
                before, nginx_before = _tree_cpu_s(server_pid), _tree_cpu_s(nginx_pid)
                result = wrk(
                    url, duration=args.duration, connections=args.connections, headers=headers
                )
                cpu = _tree_cpu_s(server_pid) - before
                target.runs.setdefault(case, []).append(result)
                target.cpu.setdefault(case, []).append(cpu)
                target.nginx_cpu.setdefault(case, []).append(_tree_cpu_s(nginx_pid) - nginx_before)
                print(
                    f"  [{round_no + 1}/{args.rounds}] {target.label:<28} {case:<22}"
                    f" {result.requests_per_s:>9,.0f} req/s  p99 {result.latency_p99_ms:6.2f} ms"
                    f"  stockade CPU {cpu:5.2f} s"
                    f"{'  non-2xx/3xx ' + str(result.non_2xx) if result.non_2xx else ''}",
                    flush=True,
                )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _summary(targets: list[Target], setup: Setup, args: argparse.Namespace, cmd: str) -> None:
    banner(
        f"summary: median of {args.rounds} interleaved rounds; ratio to nginx static without an"
        " access log, and to nginx static logging as the front does"
    )
    reference, logged = targets[0], targets[1]
    for case in CASES:
        base = _median([r.requests_per_s for r in reference.runs[case]])
        base_logged = _median([r.requests_per_s for r in logged.runs[case]])
        for target in targets:
            rps = _median([r.requests_per_s for r in target.runs[case]])
            requests = sum(r.requests_per_s * args.duration for r in target.runs[case])
            stockade_us = sum(target.cpu[case]) / requests * 1e6 if requests else 0.0
            nginx_us = sum(target.nginx_cpu[case]) / requests * 1e6 if requests else 0.0
            verdict = ""
            if "auth_request" in target.label:
                met = "MET" if rps / base >= TARGET_RATIO else "NOT met"
                met_logged = "MET" if rps / base_logged >= TARGET_RATIO else "NOT met"
                verdict = (
                    f"  {rps / base_logged:5.2f}x of logged  target >= {TARGET_RATIO}x: {met}"
                    f" ({met_logged} against the logged reference)"
                )
            print(
                f"  {target.label:<28} {case:<22} {rps:>9,.0f} req/s {rps / base:5.2f}x"
                f"  nginx CPU {nginx_us:5.1f} us/req  stockade CPU {stockade_us:6.1f} us/req"
                f"{verdict}"
            )
    print(f"\nload average at the end: {os.getloadavg()}")
    print("wrk commands (host, port and token vary):")
    for case in CASES:
        shown = targets[2].runs[case][0].command.replace(setup.token, "TOKEN")
        print(f"  {shown}")
    print(f"stockade server: {cmd}")
    print(f"reproduce: {command_line()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s instead of 5 of 4 s")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--log-level", default="info", help="Stockade's log level (info: default)")
    parser.add_argument("--skip-x-accel", action="store_true", help="no X-Accel (before) target")
    args = parser.parse_args()
    args.rounds = 2 if args.quick else 5
    args.duration = 1 if args.quick else 4
    ensure_tools("nginx", "wrk")
    _ensure_set_misc()
    banner("private channels: Stockade behind nginx (auth_request) vs nginx static")
    print(f"machine: {machine()}")
    print(f"load average at the start: {os.getloadavg()}")
    data_dir = bench_dir("private-nginx", "data")
    zst_sha = _index_blob(data_dir)
    socket_path = bench_dir("private-nginx") / "stockade.sock"
    env = {"STOCKADE_LOG_LEVEL": args.log_level, "STOCKADE_X_ACCEL_REDIRECT": "/_blobs/"}
    blobs = data_dir / "blobs"
    with ExitStack() as stack:
        server = stack.enter_context(
            stockade_server(data_dir, workers=args.workers, extra_env=env, uds=socket_path)
        )
        front = stack.enter_context(
            nginx_front(
                upstream=f"unix:{socket_path}",
                blobs=blobs,
                prefix=bench_dir("private-nginx", "auth-request"),
                port=free_port(),
            )
        )
        token = _reader_token(front.url)
        filename, package = _package(front.url, token)
        root = _static_root(data_dir, zst_sha, filename, package)
        static = bench_dir("private-nginx", "nginx-static")
        logged = bench_dir("private-nginx", "nginx-static-logged")
        targets = [
            Target("nginx static (no token)", _static(stack, root), "none", static / PID),
            Target("nginx static, logged", _static(stack, root, log=True), "none", logged / PID),
        ]
        targets += [
            Target("auth_request, Bearer", front.url, "bearer", front.prefix / PID),
            Target("auth_request, /t/TOKEN/", front.url, "url", front.prefix / PID),
        ]
        if not args.skip_x_accel:
            x_accel = _x_accel(stack, socket_path, blobs)
            pid = bench_dir("private-nginx", "x-accel") / PID
            targets.append(Target("X-Accel (before), Bearer", x_accel, "bearer", pid))
        zst = (blobs / zst_sha[:2] / zst_sha[2:4] / zst_sha).read_bytes()
        setup = Setup(
            token,
            filename,
            {
                "repodata": f'"{zst_sha}"',
                "package": f'"{hashlib.sha256(package).hexdigest()}"',
            },
            {"repodata": len(zst), "package": len(package)},
        )
        print(f"files: repodata.json.zst {len(zst) / 1e6:.2f} MB, {filename} {len(package):,} B")
        print("checks:")
        _check(targets, setup)
        for target in targets:  # warm every cache (bytes, page cache, nginx's answers)
            for kind in ("repodata", "package"):
                url, headers = _url(target, setup, kind)
                wrk(url, duration=1, connections=4, headers=headers)
        _measure(targets, setup, server.pid, args)
    _summary(targets, setup, args, server.command)


def _ensure_set_misc() -> None:
    """deploy/nginx/stockade.conf needs nginx's set-misc module (Debian package)."""
    if modules_dir() is not None:
        return
    package = "libnginx-mod-http-set-misc"
    if os.geteuid() != 0:
        sys.exit(f"nginx's set-misc module is missing: apt-get install -y {package}")
    print(f"installing {package} from Debian ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)


def _static(stack: ExitStack, root: Path, *, log: bool = False) -> str:
    """nginx static on ``root``; ``log``: with an access log written as the front's is."""
    import pwd

    workdir = bench_dir("private-nginx", "nginx-static-logged" if log else "nginx-static")
    port = free_port()
    user = pwd.getpwuid(os.geteuid()).pw_name
    conf = render(HERE / "nginx" / "static.conf", port=port, root=root, prefix=workdir, user=user)
    if log:
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        logged = f"access_log {workdir}/logs/access.log combined buffer=64k flush=1s;"
        assert conf.count("access_log off;") == 1
        conf = conf.replace("access_log off;", logged)
    stack.enter_context(nginx(conf, workdir))
    return f"http://127.0.0.1:{port}"


def _x_accel(stack: ExitStack, socket_path: Path, blobs: Path) -> str:
    import pwd

    prefix = bench_dir("private-nginx", "x-accel")
    shutil.rmtree(prefix / "cache", ignore_errors=True)
    port = free_port()
    conf = render(
        HERE / "nginx" / "x-accel.conf",
        port=port,
        upstream=f"unix:{socket_path}",
        blobs=f"{blobs.resolve()}/",
        prefix=prefix,
        user=pwd.getpwuid(os.geteuid()).pw_name,
    )
    stack.enter_context(nginx(conf, prefix))
    return f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    main()
