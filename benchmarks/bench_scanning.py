"""Scanning benchmark (issue 13): scan throughput against a plain read, and the latency a scan adds.

1. Throughput. The real engine (``stockade.scanning.engine.scan_archive``) with every shipped
   scanner (``builtin_scanners(ScanningSettings(), [])``: link scripts, Python hooks, names, YARA;
   no clamd) over (a) every real package of ``tests/data`` and (b) a synthetic channel of 1,000
   ``.conda`` packages built here once (``tests/factories/packages.build_conda``; Python modules of
   a few KB, an ``__init__.py``, a post-link script, and in four packages out of ten a binary of
   100 KB to 2 MB of random-ish bytes). The reference, in the same run, is a plain read of the
   same archives through the same engine code path: ``scan_archive`` with one scanner that wants
   every member and finds nothing, so every member is decompressed, walked and read into bytes,
   exactly as the engine hands it to the scanners. ``scan_archive(path, subject, [])`` (walk and
   decompress without reading members out) is shown too. MB/s of archive bytes and of unpacked
   member bytes; target: the scan within 3x of the plain read. The scan without each scanner in
   turn runs in the same rounds: the difference is what that scanner costs. Every pass runs in
   each round, interleaved (order reversed every other round); medians.
2. Upload latency. A small package uploaded by HTTP PUT to a live ``stockade serve`` until it is
   listed in its channel's ``repodata.json`` (client polling every 10 ms), into a channel with the
   default ``scan_uploads: hold`` (served once the scan says clean) and into one set to
   ``serve-first``, alternately; median of N rounds. The difference is the latency scanning adds;
   target: under 1 s.

    .venv/bin/python benchmarks/bench_scanning.py            # 1,000 packages x 3 rounds, 15 uploads
    .venv/bin/python benchmarks/bench_scanning.py --quick    # 150 packages x 1 round, 5 uploads
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _common import banner, bench_dir, command_line, machine, stockade_server  # noqa: E402
from tests.factories.packages import PackageSpec, build_conda, file  # noqa: E402

from stockade.scanning.engine import ScanReport, scan_archive  # noqa: E402
from stockade.scanning.interfaces import Finding, Member, Scanner, ScanSubject  # noqa: E402
from stockade.scanning.registry import builtin_scanners  # noqa: E402
from stockade.settings import ScanningSettings  # noqa: E402

SYNTHETIC = 1_000
TARGET_RATIO = 3.0
TARGET_ADDED_S = 1.0

# --------------------------------------------------------------------------- the packages

_WORDS = (
    "data", "frame", "index", "value", "parse", "load", "dump", "config", "client", "server",
    "request", "response", "cache", "stream", "token", "record", "batch", "schema", "field",
    "column", "table", "query", "result", "error", "retry", "timeout", "path", "file", "buffer",
    "reader", "writer", "encode", "decode", "merge", "split", "filter", "sort", "group", "count",
    "total", "limit", "offset",
)  # fmt: skip


def _python_module(rng: random.Random, target: int) -> bytes:
    """Plausible Python source of about ``target`` bytes (imports, classes, functions)."""
    lines = [
        '"""' + " ".join(rng.choices(_WORDS, k=12)) + '."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    lines += [f"import {m}" for m in rng.sample(["os", "re", "json", "logging", "typing", "io"], 3)]
    size = sum(len(line) for line in lines)
    while size < target:
        name = "_".join(rng.choices(_WORDS, k=2))
        block = [
            "",
            "",
            f"def {name}({', '.join(rng.sample(_WORDS, 2))}, *, limit: int = {rng.randint(1, 99)}):",
            f'    """{" ".join(rng.choices(_WORDS, k=8)).capitalize()}."""',
            f"    out = [{rng.choice(_WORDS)} for _ in range(limit)]",
            f"    if len(out) > {rng.randint(2, 50)}:",
            f"        raise ValueError({' '.join(rng.choices(_WORDS, k=4))!r})",
            "    return {k: v for k, v in enumerate(out)}",
        ]
        lines += block
        size += sum(len(line) + 1 for line in block)
    return ("\n".join(lines) + "\n").encode()


def _binary(rng: random.Random, size: int) -> bytes:
    """Random-ish bytes like a shared library: code-like noise, zero padding, symbol strings."""
    parts = [b"\x7fELF\x02\x01\x01" + bytes(57)]
    total = 64
    while total < size:
        kind = rng.random()
        if kind < 0.6:
            chunk = rng.randbytes(4096)
        elif kind < 0.8:
            chunk = bytes(4096)
        else:
            chunk = b"\0".join(
                f"_ZN{w}{rng.randint(0, 9999)}E".encode() for w in rng.choices(_WORDS, k=300)
            )
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)[:size]


_POST_LINK = """#!/bin/bash
# {name}: register the plugin with the host application
set -e
mkdir -p "$PREFIX/etc/{name}"
echo "{name} {version} installed" >> "$PREFIX/.messages.txt"
if [ -x "$PREFIX/bin/python" ]; then
    "$PREFIX/bin/python" -c "import {module}" 2>/dev/null || true
fi
cp "$PREFIX/share/{name}/defaults.conf" "$PREFIX/etc/{name}/config.conf"
"""


def synthetic_spec(index: int, *, binaries: bool = True) -> PackageSpec:
    """The ``index``-th package of the synthetic channel (deterministic)."""
    rng = random.Random(f"scan-{index}")
    name = f"bench-{'-'.join(rng.sample(_WORDS, 2))}-{index}"
    module = name.replace("-", "_")
    version = f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
    site = f"lib/python3.11/site-packages/{module}"
    payload = [
        file(
            f"{site}/__init__.py",
            f'"""{name}."""\n\nfrom .core import *\n\n__version__ = "{version}"\n'.encode(),
        ),
        file(
            f"bin/.{name}-post-link.sh",
            _POST_LINK.format(name=name, version=version, module=module).encode(),
            mode=0o755,
        ),
        file(f"share/{name}/defaults.conf", b"[main]\nenabled = true\n"),
    ]
    for i in range(rng.randint(4, 16)):
        payload.append(
            file(
                f"{site}/{rng.choice(_WORDS)}_{i}.py", _python_module(rng, rng.randint(1500, 12000))
            )
        )
    if binaries and rng.random() < 0.4:
        size = int(100_000 * 20 ** rng.random())  # 100 KB to 2 MB, log-uniform
        payload.append(
            file(
                f"{site}/_speedups.cpython-311-x86_64-linux-gnu.so", _binary(rng, size), mode=0o755
            )
        )
    if rng.random() < 0.05:
        payload.append(
            file(f"lib/python3.11/site-packages/{module}.pth", f"import {module}\n".encode())
        )
    return PackageSpec(
        name=name,
        version=version,
        build="py311_0",
        subdir="linux-64",
        depends=("python >=3.11,<3.12.0a0", "libgcc >=13"),
        payload=tuple(payload),
        about={"summary": f"{name} for the scanning benchmark", "license": "MIT"},
    )


def synthetic_channel(count: int) -> list[Path]:
    """The first ``count`` packages of the synthetic channel, built once under the bench dir."""
    folder = bench_dir("scanning", "channel", "linux-64")
    out, built, started = [], 0, time.perf_counter()
    for index in range(count):
        existing = sorted(folder.glob(f"*-{index}-*.conda"))
        if existing:
            out.append(existing[0])
            continue
        out.append(build_conda(folder, synthetic_spec(index)))
        built += 1
    if built:
        print(
            f"  built {built} synthetic packages in {time.perf_counter() - started:.0f}s ({folder})"
        )
    return out


def real_packages() -> list[Path]:
    data = ROOT / "tests" / "data"
    found = [*data.glob("packages/*"), *data.glob("channels/*/*/*")]
    return sorted(p for p in found if p.name.endswith((".conda", ".tar.bz2")))


# --------------------------------------------------------------------------- throughput


class ReadEverything:
    """The plain read: wants every member (so the engine reads its bytes), finds nothing."""

    name = "read"
    version = "0"

    def wants(self, path: str) -> bool:
        return True

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        return ()

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        return ()


@dataclass
class Archive:
    path: Path
    subject: ScanSubject


def archives(paths: Sequence[Path]) -> list[Archive]:
    out = []
    for path in paths:
        data = path.read_bytes()  # also warms the page cache for every pass
        name = path.name.rsplit("-", 2)[0]
        subject = ScanSubject(path.name, hashlib.sha256(data).hexdigest(), len(data), name, "", {})
        out.append(Archive(path, subject))
    return out


@dataclass
class Pass:
    seconds: float
    unpacked: int
    findings: int
    errors: int


def one_pass(items: Sequence[Archive], scanners: Sequence[Scanner]) -> Pass:
    reports: list[ScanReport] = []
    started = time.perf_counter()
    for item in items:
        reports.append(scan_archive(item.path, item.subject, scanners))
    elapsed = time.perf_counter() - started
    return Pass(
        elapsed,
        sum(r.bytes_read for r in reports),
        sum(len(r.findings) for r in reports),
        sum(1 for r in reports if r.errors),
    )


WALK, READ, SCAN = "walk only (no scanner)", "plain read", "scan"


def passes(scanners: Sequence[Scanner]) -> dict[str, Sequence[Scanner]]:
    """The passes of one round: the references, the scan, and the scan without each scanner."""
    out: dict[str, Sequence[Scanner]] = {WALK: [], READ: [ReadEverything()], SCAN: scanners}
    for left_out in scanners:
        out[f"scan without {left_out.name}"] = [s for s in scanners if s is not left_out]
    return out


@dataclass
class Throughput:
    label: str
    packages: int
    archive_bytes: int
    unpacked: int
    seconds: dict[str, float]  # median per pass
    findings: int
    errors: int

    @property
    def ratio(self) -> float:
        return self.seconds[SCAN] / self.seconds[READ]


def throughput(
    label: str, items: Sequence[Archive], scanners: Sequence[Scanner], rounds: int
) -> Throughput:
    """Every pass of :func:`passes`, ``rounds`` times interleaved (order reversed every other
    round, so that no pass always runs first); medians."""
    kinds = passes(scanners)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    last: dict[str, Pass] = {}
    for number in range(rounds):
        order = list(kinds) if number % 2 == 0 else list(reversed(kinds))
        for kind in order:
            last[kind] = one_pass(items, kinds[kind])
            times[kind].append(last[kind].seconds)
    return Throughput(
        label,
        len(items),
        sum(item.subject.size for item in items),
        last[READ].unpacked,
        {kind: statistics.median(values) for kind, values in times.items()},
        last[SCAN].findings,
        last[SCAN].errors,
    )


def show(t: Throughput) -> None:
    mb, unpacked = t.archive_bytes / 1e6, t.unpacked / 1e6
    print(f"  {t.label}: {t.packages} packages, {mb:.1f} MB archives, {unpacked:.1f} MB unpacked")
    for kind, seconds in t.seconds.items():
        extra = ""
        if kind.startswith("scan without"):
            extra = (
                f"  ({t.seconds[SCAN] - seconds:+.2f}s with it; {seconds / t.seconds[READ]:.2f}x)"
            )
        print(
            f"    {kind:<26} {seconds:7.2f}s = {mb / seconds:7.1f} MB/s archive, "
            f"{unpacked / seconds:7.1f} MB/s unpacked{extra}"
        )
    verdict = "met" if t.ratio <= TARGET_RATIO else "NOT met"
    print(
        f"    scan / plain read = {t.ratio:.2f}x (target <= {TARGET_RATIO:g}x: {verdict}); "
        f"{t.findings} findings, {t.errors} reports in error",
        flush=True,
    )


# --------------------------------------------------------------------------- upload latency


def _until_served(client: httpx.Client, url: str, filename: str, since: float) -> float:
    etag = ""
    while True:
        response = client.get(url, headers={"if-none-match": etag} if etag else {})
        if response.status_code == 200:
            etag = response.headers.get("etag", "")
            if filename in response.json().get("packages.conda", {}):
                return time.perf_counter() - since
        if time.perf_counter() - since > 120:
            raise RuntimeError(f"{filename} was not served within 120 s")
        time.sleep(0.01)


def upload_latency(rounds: int) -> tuple[dict[str, list[float]], str]:
    data_dir = bench_dir("scanning", "server")
    shutil.rmtree(data_dir)  # a fresh server every run
    workdir = bench_dir("scanning", "uploads")
    results: dict[str, list[float]] = {"hold": [], "serve-first": []}
    with stockade_server(data_dir, workers=1) as server:
        headers = {"authorization": f"Bearer {server.token()}"}
        with httpx.Client(timeout=60, headers=headers) as client:
            for mode in results:
                client.post(
                    f"{server.url}/api/v1/channels", json={"name": mode, "privacy": "public"}
                ).raise_for_status()
                if mode != "hold":
                    client.patch(
                        f"{server.url}/api/v1/channels/{mode}", json={"scan_uploads": mode}
                    ).raise_for_status()
            for number in range(rounds + 1):  # round 0 warms the process up and is not counted
                modes = list(results) if number % 2 else list(reversed(results))
                for mode in modes:
                    spec = synthetic_spec(10_000 + number, binaries=False)
                    path = build_conda(workdir, spec)
                    started = time.perf_counter()
                    client.put(
                        f"{server.url}/api/v1/channels/{mode}/files/{path.name}",
                        content=path.read_bytes(),
                    ).raise_for_status()
                    url = f"{server.url}/conda/{mode}/linux-64/repodata.json"
                    seconds = _until_served(client, url, path.name, started)
                    if number:
                        results[mode].append(seconds)
        command = server.command
    return results, command


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="150 packages, 1 round, 5 uploads")
    parser.add_argument("--packages", type=int, help=f"synthetic packages (default {SYNTHETIC:,})")
    parser.add_argument("--rounds", type=int, help="throughput rounds (median)")
    parser.add_argument("--uploads", type=int, help="upload rounds per mode (median)")
    args = parser.parse_args()
    count = args.packages or (150 if args.quick else SYNTHETIC)
    rounds = args.rounds or (1 if args.quick else 3)
    uploads = args.uploads or (5 if args.quick else 15)
    banner("scanning: throughput against a plain read; latency added to an upload")
    print(f"machine: {machine()}")
    from stockade.core.logging import configure_logging

    configure_logging("warning")
    scanners = builtin_scanners(ScanningSettings(), [])
    print(f"  scanners: {', '.join(s.name for s in scanners)}")
    real = archives(real_packages())
    synthetic = archives(synthetic_channel(count))
    one_pass([*real[:3], *synthetic[:3]], scanners)  # warm up: compiled rules, the names index
    results = [
        throughput("real packages (tests/data)", real, scanners, rounds),
        throughput(f"synthetic channel ({count:,} .conda)", synthetic, scanners, rounds),
    ]
    for result in results:
        show(result)
    latency, server_command = upload_latency(uploads)
    hold, first = statistics.median(latency["hold"]), statistics.median(latency["serve-first"])
    added = hold - first
    banner("summary")
    for t in results:
        scan, read = t.seconds[SCAN], t.seconds[READ]
        print(
            f"  {t.label}: scan {t.archive_bytes / 1e6 / scan:.1f} MB/s archive "
            f"({t.unpacked / 1e6 / scan:.1f} MB/s unpacked), plain read "
            f"{t.archive_bytes / 1e6 / read:.1f} MB/s ({t.unpacked / 1e6 / read:.1f}); "
            f"ratio {t.ratio:.2f}x (target <= {TARGET_RATIO:g}x)"
        )
    spread = {m: f"{min(v):.2f}-{max(v):.2f}" for m, v in latency.items()}
    print(
        f"  upload -> served in repodata.json, median of {uploads}: hold {hold:.2f}s "
        f"({spread['hold']}), serve-first {first:.2f}s ({spread['serve-first']}); "
        f"added by scanning {added:.2f}s (target < {TARGET_ADDED_S:g}s: "
        f"{'met' if added < TARGET_ADDED_S else 'NOT met'})"
    )
    print(f"stockade server: {server_command}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
