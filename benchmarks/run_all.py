"""Run every benchmark, one after the other (``make bench``).

    .venv/bin/python benchmarks/run_all.py            # full runs (~15 minutes; the first run also
                                                      # builds the 100,000-file reference channel)
    .venv/bin/python benchmarks/run_all.py --quick    # smaller inputs, shorter runs (~5 minutes)
    .venv/bin/python benchmarks/run_all.py --only serving

Each benchmark prints its figures and the command that reproduces it; docs/benchmarks.md records
the results. nginx and wrk are installed from Debian when missing (as root).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "publication": "bench_publication.py",
    "serving": "bench_serving.py",
    "upload": "bench_upload.py",
    "auth": "bench_auth.py",
    "mirror-download": "bench_mirror_download.py",
    "policy": "bench_policy.py",
    "mirror-nochange": "bench_mirror_nochange.py",
    "vuln-match": "bench_vuln_match.py",
    "scanning": "bench_scanning.py",
    "signing": "bench_signing.py",
    "airgap": "bench_airgap.py",
    "downloads": "bench_downloads.py",
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Stockade's benchmarks.")
    parser.add_argument("--quick", action="store_true", help="smaller inputs and shorter runs")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args()
    failed = []
    for name in args.only or list(BENCHMARKS):
        command = [sys.executable, str(HERE / BENCHMARKS[name])]
        if args.quick:
            command.append("--quick")
        started = time.perf_counter()
        result = subprocess.run(command, check=False)
        print(f"\n[{name}] exit {result.returncode} after {time.perf_counter() - started:.0f}s\n")
        if result.returncode:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
