"""Sizing figures of docs/deployment.md: database bytes per record, and the RSS of a replica.

    .venv/bin/python benchmarks/bench_sizing.py db --records 20000 [--paths 50]
    .venv/bin/python benchmarks/bench_sizing.py db --records 20000 --pg-url postgresql://…/empty_db
    .venv/bin/python benchmarks/bench_sizing.py rss --records 100000

``db``: N synthetic conda-forge-like records (bench_publication's rows: an ``artifacts`` row, a
``package_contents`` row with ``--paths`` listed files, a scan verdict each) into a fresh SQLite
database, or into the empty PostgreSQL database ``--pg-url`` names; bytes per record over the
empty migrated database. ``rss``: a ``stockade serve`` with the runtime publishes the subdir, a
second with ``STOCKADE_EMBEDDED_WORKER=false`` serves it; its RSS idle and after serving
``repodata.json``, ``.zst`` and the shard index three times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_publication as bp
from _common import bench_dir, command_line

STOCKADE = str(Path(sys.executable).parent / "stockade")


def _with_paths(count: int) -> None:
    """bench_publication's rows with ``count`` listed files per package."""
    original = bp._rows

    def rows(pkgs: list[Any], channel_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        artifacts, contents = original(pkgs, channel_id)
        for row, pkg in zip(contents, pkgs, strict=True):
            module = pkg.name.replace("-", "_")
            row["paths_json"] = [
                {
                    "_path": f"lib/python3.12/site-packages/{module}/module_{k}.py",
                    "path_type": "hardlink",
                    "sha256": os.urandom(32).hex(),
                    "size_in_bytes": 1234,
                }
                for k in range(count)
            ]
        return artifacts, contents

    bp._rows = rows  # type: ignore[assignment]


def _database(args: argparse.Namespace) -> None:
    from sqlalchemy import create_engine, text

    from stockade.db.migrate import upgrade

    _with_paths(args.paths)
    if args.pg_url:
        os.environ["STOCKADE_DATABASE_URL"] = args.pg_url
    container, _channel = bp._build_database(bench_dir("sizing-db"), args.records)
    url = container.settings.db_url
    container.close()
    if args.pg_url:
        with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        base = 0  # the empty database's own size is small against N records
    else:
        with create_engine(url).connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        size = Path(url.removeprefix("sqlite:///")).stat().st_size
        empty = bench_dir("sizing-empty") / "empty.db"
        empty.unlink(missing_ok=True)
        upgrade(f"sqlite:///{empty}")
        base = empty.stat().st_size
    kind = "PostgreSQL" if args.pg_url else "SQLite"
    per = (size - base) / args.records
    print(
        f"{kind}: {args.records:,} records, {args.paths} paths each: {size:,} B, {per:,.0f} B/record"
    )


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait(url: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no 200 from {url}")


def _replica(args: argparse.Namespace) -> None:
    data = bench_dir("sizing-rss")
    container, _channel = bp._build_database(data, args.records)
    container.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env |= {"STOCKADE_DATA_DIR": str(data), "STOCKADE_ADMIN_PASSWORD": bp.ADMIN_PASSWORD}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    index = f"/conda/{bp.CHANNEL}/{bp.SUBDIR}/"
    with subprocess.Popen([STOCKADE, "serve", "--port", "8711"], env=env, **quiet) as publisher:
        try:
            _wait(f"http://127.0.0.1:8711{index}repodata.json")
            replica_env = env | {"STOCKADE_EMBEDDED_WORKER": "false"}
            cmd = [STOCKADE, "serve", "--port", "8712"]
            with subprocess.Popen(cmd, env=replica_env, **quiet) as replica:
                try:
                    _measure(replica.pid, f"http://127.0.0.1:8712{index}", args.records)
                    print(f"process with the runtime: {_rss(publisher.pid):.0f} MiB")
                finally:
                    replica.terminate()
        finally:
            publisher.terminate()


def _measure(pid: int, url: str, records: int) -> None:
    _wait(url.split("/conda/", maxsplit=1)[0] + "/readyz")  # idle: nothing served yet
    time.sleep(3)
    idle = _rss(pid)
    sizes = {}
    for name in ("repodata.json", "repodata.json.zst", "repodata_shards.msgpack.zst"):
        for _ in range(3):
            answer = httpx.get(url + name, timeout=120)
        sizes[name] = len(answer.content)
    time.sleep(2)
    print(
        f"replica, {records:,} records: RSS idle {idle:.0f} MiB, after {_rss(pid):.0f} MiB {sizes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["db", "rss"])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--paths", type=int, default=0, help="listed files per package (db)")
    parser.add_argument("--pg-url", help="an empty PostgreSQL database (db); default SQLite")
    args = parser.parse_args()
    print(command_line())
    _database(args) if args.what == "db" else _replica(args)


if __name__ == "__main__":
    main()
