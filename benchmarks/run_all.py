"""Run the benchmarks, one after the other (``make bench``, ``make bench-quick``).

    .venv/bin/python benchmarks/run_all.py              # every benchmark, full size (~1 hour;
                                                        # the first run also builds the
                                                        # 100,000-file reference channel)
    .venv/bin/python benchmarks/run_all.py --quick      # the QUICK set, small inputs (< 5 min)
    .venv/bin/python benchmarks/run_all.py --only serving --only startup [--quick]

``--quick`` runs the comparisons that a change on the hot paths should be checked against the
same day (issue 18): serving (repodata), package files, private channels behind nginx, download
recording, ingest, publication and startup, each with its own ``--quick`` (fewer, shorter rounds,
smaller inputs), each still beside its reference in the same run. A benchmark that is not in this
checkout is skipped. Each prints its figures and the command that reproduces it; at the end a
summary gives each one's exit status and duration. docs/benchmarks.md records the results. nginx
and wrk are installed from Debian when missing (as root).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "publication": "bench_publication.py",
    "serving": "bench_serving.py",
    "package-files": "bench_package_files.py",
    "private-nginx": "bench_private_nginx.py",
    "upload": "bench_upload.py",
    "ingest": "bench_ingest.py",
    "startup": "bench_startup.py",
    "auth": "bench_auth.py",
    "mirror-download": "bench_mirror_download.py",
    "mirror-scale": "bench_mirror_scale.py",
    "policy": "bench_policy.py",
    "mirror-nochange": "bench_mirror_nochange.py",
    "vuln-match": "bench_vuln_match.py",
    "scanning": "bench_scanning.py",
    "signing": "bench_signing.py",
    "airgap": "bench_airgap.py",
    "downloads": "bench_downloads.py",
    "search": "bench_search.py",
    "replicas": "bench_replicas.py",
}
# what `make bench-quick` runs, in this order, with the arguments that keep the whole under
# 5 minutes once the inputs exist (the first run also generates them): the repodata and
# package-file serving paths (nginx + X-Accel is left to the private-channel benchmark), download
# recording, ingest, publication (one measured upload, smaller other subdirs, three live uploads
# 3 s apart) and startup (one round)
QUICK_PUBLICATION_LIVE = ("--live-rounds", "3", "--settle", "3", "--skip-rattler")
QUICK: dict[str, tuple[str, ...]] = {
    "serving": ("--quick", "--skip-accel"),
    "package-files": ("--quick",),
    "private-nginx": ("--quick", "--skip-x-accel"),
    "downloads": ("--quick",),
    "ingest": ("--quick",),
    # the floor (serialize + zstd) is target 4's reference; index_fs (issue 2's) only in the full run
    "publication": (*("--quick", "--repeat", "1", "--other", "2500"), *QUICK_PUBLICATION_LIVE),
    "startup": ("--quick", "--rounds", "1"),
}
QUICK_BUDGET_S = 300
# benchmarks without a --quick of their own
NO_QUICK_FLAG = frozenset({"mirror-scale"})


def available(names: list[str]) -> list[str]:
    return [n for n in names if (HERE / BENCHMARKS[n]).exists()]


def run(name: str, *, quick: bool) -> tuple[int, float]:
    command = [sys.executable, str(HERE / BENCHMARKS[name])]
    if quick and name in QUICK:
        command += QUICK[name]
    elif quick and name not in NO_QUICK_FLAG:
        command.append("--quick")
    print(f"\n##### {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, check=False)
    seconds = time.perf_counter() - started
    print(f"\n[{name}] exit {result.returncode} after {seconds:.0f}s\n", flush=True)
    return result.returncode, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Stockade's benchmarks.")
    parser.add_argument(
        "--quick", action="store_true", help="the QUICK set (or --only's), small inputs"
    )
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args()
    names = args.only or list(QUICK if args.quick else BENCHMARKS)
    chosen = available(names)
    skipped = sorted(set(names) - set(chosen))
    load_before = os.getloadavg()
    results = {name: run(name, quick=args.quick) for name in chosen}
    total = sum(seconds for _code, seconds in results.values())
    print("\n##### summary")
    for name, (code, seconds) in results.items():
        print(f"  {name:18s} {'ok' if code == 0 else f'exit {code}':8s} {seconds:6.0f}s")
    if skipped:
        print(f"  not in this checkout: {', '.join(skipped)}")
    print(f"  total {total:.0f}s; load average before {load_before}, after {os.getloadavg()}")
    if args.quick and not args.only and total > QUICK_BUDGET_S:
        print(f"  note: over the {QUICK_BUDGET_S}s a quick run should take (a busy machine?)")
    failed = [name for name, (code, _seconds) in results.items() if code]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
