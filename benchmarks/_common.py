"""Shared pieces of the benchmarks: synthetic records, tiny real packages, servers, wrk, nginx, RSS.

Benchmarks are not tests: they print figures and the command that reproduces them. Everything runs
on loopback (127.0.0.1); work files go under ``$STOCKADE_BENCH_DIR`` (default
``/tmp/stockade-bench``) and are reused between runs where that is safe (generated inputs).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import zstandard

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ADMIN_PASSWORD = "bench-admin-password"
TIMESTAMP_MS = 1_700_000_000_000


def bench_dir(*parts: str) -> Path:
    base = Path(os.environ.get("STOCKADE_BENCH_DIR", "/tmp/stockade-bench"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_line() -> str:
    """How this script was invoked, for the 'reproduce with' line."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return ".venv/bin/python " + " ".join(shlex.quote(a) for a in [shown, *sys.argv[1:]])


def banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def machine() -> str:
    model = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} cores ({model}), {mem_kb / 1024**2:.0f} GiB RAM, Linux {os.uname().release}"


# --------------------------------------------------------------------------- synthetic records

# fmt: off
_WORDS = (
    "py", "lib", "r", "perl", "xorg", "gst", "font", "ruby", "go", "rust", "node", "jupyter",
    "sphinx", "pytest", "aws", "azure", "google", "numpy", "scipy", "arrow", "proto", "grpc",
    "cuda", "opencv", "qt", "gtk", "zlib", "ssl", "curl", "xml", "yaml", "json", "toml", "http",
    "async", "data", "ml", "geo", "bio", "astro", "image", "audio", "video", "plot", "cli",
    "tools", "core", "utils", "test", "ext", "plugin",
)
# fmt: on


def package_names(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct plausible package names (lower case, CEP 26 safe)."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        parts = rng.sample(_WORDS, rng.choice((1, 2, 2, 3)))
        name = "-".join(parts)
        if rng.random() < 0.3:
            name += str(rng.randint(1, 9))
        names.add(name)
    return sorted(names)


@dataclass(frozen=True)
class SyntheticPackage:
    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    depends: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.conda"

    def index(self) -> dict[str, Any]:
        noarch = self.subdir == "noarch"
        index: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "license": "BSD-3-Clause",
            "license_family": "BSD",
            "subdir": self.subdir,
            "timestamp": TIMESTAMP_MS,
        }
        if noarch:
            index["noarch"] = "python"
        else:
            index["arch"] = "x86_64"
            index["platform"] = "linux"
        if self.build_number % 3 == 0:
            index["constrains"] = [f"{self.name}-doc {self.version}.*"]
        return index


def synthetic_packages(
    count: int, names: Sequence[str], subdir: str, seed: int = 11
) -> list[SyntheticPackage]:
    """``count`` packages spread over ``names`` (several versions and builds per name)."""
    rng = random.Random(f"{seed}-{subdir}")
    out: list[SyntheticPackage] = []
    for i in range(count):
        name = names[i % len(names)]
        k = i // len(names)
        version = f"{1 + k // 6}.{k % 6}.{rng.randint(0, 20)}"
        py = rng.choice(("310", "311", "312", "313"))
        build_number = k % 4
        build = f"py{py}h{rng.getrandbits(28):07x}_{build_number}"
        deps = [
            f"python >=3.{py[1:]},<3.{int(py[1:]) + 1}.0a0",
            f"python_abi 3.{py[1:]}.* *_cp{py}",
        ]
        deps += [f"{d} >=1.{rng.randint(0, 9)}" for d in rng.sample(names, rng.randint(1, 5))]
        if subdir != "noarch":
            deps += ["libgcc >=13", "libstdcxx >=13"]
        out.append(SyntheticPackage(name, version, build, build_number, subdir, tuple(deps)))
    return out


def synthetic_record(pkg: SyntheticPackage, indexed_ms: int) -> dict[str, Any]:
    """A repodata record as the upload path builds it: index.json plus computed hashes."""
    digest = hashlib.sha256(pkg.filename.encode()).digest()
    record = pkg.index()
    record.update(
        md5=hashlib.md5(digest, usedforsecurity=False).hexdigest(),
        sha256=digest.hex(),
        size=10_000 + int.from_bytes(digest[:3], "big"),
        indexed_timestamp=indexed_ms,
    )
    return record


# --------------------------------------------------------------------------- real tiny packages


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = TIMESTAMP_MS // 1000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def conda_bytes(index: dict[str, Any], payload: dict[str, bytes] | None = None) -> bytes:
    """A small valid ``.conda``: zip of metadata.json, info-*.tar.zst and pkg-*.tar.zst."""
    payload = payload if payload is not None else {"share/demo/README": b"demo\n"}
    stem = f"{index['name']}-{index['version']}-{index['build']}"
    paths = {
        "paths": [
            {
                "_path": p,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(d).hexdigest(),
                "size_in_bytes": len(d),
            }
            for p, d in payload.items()
        ],
        "paths_version": 1,
    }
    info = {
        "info/index.json": json.dumps(index, sort_keys=True).encode(),
        "info/paths.json": json.dumps(paths).encode(),
        "info/about.json": json.dumps({"summary": f"{index['name']} for benchmarks"}).encode(),
    }
    cctx = zstandard.ZstdCompressor(level=1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", b'{"conda_pkg_format_version": 2}')
        zf.writestr(f"pkg-{stem}.tar.zst", cctx.compress(_tar(payload)))
        zf.writestr(f"info-{stem}.tar.zst", cctx.compress(_tar(info)))
    return buf.getvalue()


def write_big_conda(path: Path, name: str, size: int) -> None:
    """A ``.conda`` whose pkg member holds ``size`` incompressible bytes, written in a stream.

    The payload is one file of random bytes; its zstd frame is written chunk by chunk so memory
    stays small however large ``size`` is.
    """
    index = {
        "name": name,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "depends": [],
        "license": "MIT",
        "subdir": "noarch",
        "timestamp": TIMESTAMP_MS,
    }
    stem = f"{name}-1.0-0"
    chunk = 4 << 20
    rng = random.Random(5)
    digest = hashlib.sha256()
    tmp = path.with_suffix(".payload")
    with tmp.open("wb") as raw:
        left = size
        while left:
            block = rng.randbytes(min(chunk, left))
            digest.update(block)
            raw.write(block)
            left -= len(block)
    member = "lib/big.bin"
    paths = {
        "paths": [
            {
                "_path": member,
                "path_type": "hardlink",
                "sha256": digest.hexdigest(),
                "size_in_bytes": size,
            }
        ],
        "paths_version": 1,
    }
    info = {
        "info/index.json": json.dumps(index).encode(),
        "info/paths.json": json.dumps(paths).encode(),
    }
    cctx = zstandard.ZstdCompressor(level=1)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("metadata.json", b'{"conda_pkg_format_version": 2}')
        with (
            zf.open(f"pkg-{stem}.tar.zst", "w", force_zip64=True) as out,
            cctx.stream_writer(out, closefd=False) as zst,
            tmp.open("rb") as src,
            tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            tinfo = tarfile.TarInfo(member)
            tinfo.size = size
            tinfo.mtime = TIMESTAMP_MS // 1000
            tar.addfile(tinfo, src)
        zf.writestr(f"info-{stem}.tar.zst", cctx.compress(_tar(info)))
    tmp.unlink()


# --------------------------------------------------------------------------- processes, RSS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        out.extend(int(k) for k in kids)
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        stack.extend(_children(current))
    return total / 1024


class RssSampler:
    """Samples the RSS of a process tree in a thread; ``peak`` and ``samples`` afterwards."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(tree_rss_mb(self.pid))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(tree_rss_mb(self.pid))

    @property
    def peak(self) -> float:
        return max(self.samples) if self.samples else 0.0

    @property
    def first(self) -> float:
        return self.samples[0] if self.samples else 0.0


@dataclass
class StockadeServer:
    url: str
    pid: int
    data_dir: Path
    command: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def token(self) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/tokens",
            json={"name": f"bench-{time.time_ns()}", "expires_in_days": 1},
            auth=("admin", ADMIN_PASSWORD),
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["token"])


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STOCKADE_DATA_DIR=str(data_dir),
        STOCKADE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        STOCKADE_LOG_LEVEL="warning",
    )
    env.update(extra)
    return env


def prepare_data_dir(data_dir: Path, env: dict[str, str]) -> None:
    """Migrate and create the first admin, as ``stockade serve`` does before serving."""
    code = (
        "from stockade.settings import load_settings\n"
        "from stockade.db.migrate import upgrade\n"
        "from stockade.container import Container\n"
        "s = load_settings(); upgrade(s.db_url); c = Container.build(s); c.bootstrap(); c.close()\n"
    )
    subprocess.run([PYTHON, "-c", code], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


@contextmanager
def stockade_server(
    data_dir: Path,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    uds: Path | None = None,
) -> Iterator[StockadeServer]:
    """A real Stockade server in a subprocess: uvicorn (uvloop, httptools) with the app factory.

    With ``uds`` it listens on that unix socket instead of a TCP port (``url`` is then only
    meaningful through a proxy or an httpx transport bound to the socket).
    """
    env = server_env(data_dir, **(extra_env or {}))
    prepare_data_dir(data_dir, env)
    port = port or free_port()
    listen = ["--uds", str(uds)] if uds else ["--host", "127.0.0.1", "--port", str(port)]
    if uds:
        uds.unlink(missing_ok=True)
    args = [
        PYTHON, "-m", "uvicorn", "stockade.asgi:app", "--factory", *listen,
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    log = data_dir / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    shown_env = " ".join(f"{k}={v}" for k, v in sorted((extra_env or {}).items()))
    command = (
        f"STOCKADE_DATA_DIR={data_dir} {shown_env} .venv/bin/python -m uvicorn stockade.asgi:app"
        f" --factory {' '.join(listen)} --workers {workers} --loop uvloop --http httptools"
        " --no-access-log"
    ).replace("  ", " ")
    transport = httpx.HTTPTransport(uds=str(uds)) if uds else None
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log}")
            try:
                with httpx.Client(transport=transport, timeout=1) as probe:
                    if probe.get(f"{url}/healthz").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log}")
            time.sleep(0.1)
        if workers > 1:
            time.sleep(1.5)  # let every worker finish starting
        yield StockadeServer(
            url=url, pid=proc.pid, data_dir=data_dir, command=command, log=log, env=env
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --------------------------------------------------------------------------- tools: wrk, nginx


def ensure_tools(*tools: str) -> None:
    """Install nginx / wrk from Debian when missing (the benchmark machine is ours, as root)."""
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")
    print(f"installing {' '.join(missing)} from Debian ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


@dataclass
class WrkResult:
    requests_per_s: float
    transfer_mb_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    non_2xx: int
    errors: str
    command: str


_UNITS = {"B": 1 / 1024**2, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    duration: float,
    connections: int = 16,
    threads: int = 2,
    headers: Sequence[str] = (),
    timeout: str = "30s",
) -> WrkResult:
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        f"--timeout={timeout}",
        "--latency",
    ]
    for header in headers:
        args += ["-H", header]
    args.append(url)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mb = float(tr.group(1)) * _UNITS.get(tr.group(2), 1.0) if tr else 0.0
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return WrkResult(
        requests_per_s=rps,
        transfer_mb_s=mb,
        latency_p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        latency_p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=errors.group(0) if errors else "",
        command=" ".join(shlex.quote(a) for a in args),
    )


@contextmanager
def nginx(config_text: str, workdir: Path) -> Iterator[Path]:
    """Run nginx in the foreground with ``config_text`` (a complete nginx.conf)."""
    ensure_tools("nginx")
    conf = workdir / "nginx.conf"
    conf.write_text(config_text)
    (workdir / "logs").mkdir(exist_ok=True)
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(
        [binary, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "logs" / "stderr.log").open("wb"),
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"nginx failed: {(workdir / 'logs' / 'stderr.log').read_text()}")
        yield conf
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def render(template: Path, **values: object) -> str:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    return text


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"
