"""Cost of authentication and access checks on conda index requests (issue 3's benchmark).

Two channels serve the same ~1 MB ``noarch/repodata.json.zst``: ``auth-public`` (public) and
``auth-private`` (private; a non-admin user has a ``read`` grant on it and a resource token for
it). In one run, interleaved round by round, wrk measures against the same Stockade server:

- anonymous full GETs of the public file vs full GETs of the private file with the token in the
  URL (``/t/TOKEN/conda/…``) and in an ``Authorization: Bearer`` header;
- the same as conditional GETs answered 304 (small answers: the check's share is largest).

Target: the token and permission check costs under 10% of requests/s (authenticated >= 0.9x
anonymous). Stockade logs every request (``info``), as it does by default.

    .venv/bin/python benchmarks/bench_auth.py            # 5 rounds of 4 s
    .venv/bin/python benchmarks/bench_auth.py --quick    # 2 rounds of 3 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_PASSWORD,
    banner,
    bench_dir,
    command_line,
    ensure_tools,
    machine,
    package_names,
    stockade_server,
    synthetic_packages,
    synthetic_record,
    wrk,
)

PUBLIC, PRIVATE = "auth-public", "auth-private"
SUBDIR = "noarch"
RECORDS = 9_000
TARGET = 0.9


def _build(data_dir: Path) -> None:
    """Both channels, pointing at one set of index blobs (publication is measured elsewhere)."""
    from sqlalchemy import select

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
    with transaction(container.factory) as session:
        if session.scalar(select(Channel.id).where(Channel.name == PRIVATE)):
            return
    pkgs = synthetic_packages(RECORDS, package_names(3_500), SUBDIR)
    pairs = [
        (p.filename, encode_record(synthetic_record(p, 1_700_000_000_000 + i)))
        for i, p in enumerate(pkgs)
    ]
    body = build_repodata_json(SUBDIR, (), pairs, ())
    json_sha = container.blobs.put_bytes(body)
    zst = compress_zst(body, 19)
    zst_sha = container.blobs.put_bytes(zst)
    with transaction(container.factory) as session:
        for name, privacy in ((PUBLIC, "public"), (PRIVATE, "private")):
            channel = Channel(name=name, privacy=privacy)
            session.add(channel)
            session.flush()
            session.add(
                SubdirIndex(
                    channel_id=channel.id,
                    subdir=SUBDIR,
                    requested_rev=1,
                    published_rev=1,
                    repodata_sha256=json_sha,
                    repodata_zst_sha256=zst_sha,
                    record_count=RECORDS,
                    published_at=utcnow(),
                )
            )
    container.close()


def _reader_token(url: str) -> str:
    """A user with a read grant on the private channel, and a resource token for it."""
    admin = httpx.Client(base_url=f"{url}/api/v1", auth=("admin", ADMIN_PASSWORD), timeout=30)
    name = f"reader{time.time_ns()}"
    admin.post("/users", json={"username": name, "password": "reader-password"}).raise_for_status()
    admin.put(
        f"/channels/{PRIVATE}/members", json={"user": name, "level": "read"}
    ).raise_for_status()
    response = httpx.post(
        f"{url}/api/v1/tokens",
        json={"name": "bench", "kind": "resource", "resources": {PRIVATE: "read"}},
        auth=(name, "reader-password"),
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    rounds, duration = (2, 3) if args.quick else (5, 4)
    ensure_tools("wrk")
    banner("authentication cost on index requests")
    print(f"machine: {machine()}")
    data_dir = bench_dir("auth", "data")
    _build(data_dir)
    env = {"STOCKADE_LOG_LEVEL": "info"}
    with stockade_server(data_dir, workers=args.workers, extra_env=env) as server:
        token = _reader_token(server.url)
        path = f"{SUBDIR}/repodata.json.zst"
        public = f"{server.url}/conda/{PUBLIC}/{path}"
        in_url = f"{server.url}/t/{token}/conda/{PRIVATE}/{path}"
        private = f"{server.url}/conda/{PRIVATE}/{path}"
        bearer = f"Authorization: Bearer {token}"
        assert httpx.get(private).status_code == 401
        assert httpx.get(in_url).status_code == 200
        etag = httpx.head(public).headers["etag"]
        assert httpx.head(in_url).headers["etag"] == etag
        cases: dict[str, tuple[str, list[str]]] = {
            "anonymous, public: full GET": (public, []),
            "token in URL, private: full GET": (in_url, []),
            "Bearer header, private: full GET": (private, [bearer]),
            "anonymous, public: 304": (public, [f"If-None-Match: {etag}"]),
            "token in URL, private: 304": (in_url, [f"If-None-Match: {etag}"]),
            "Bearer header, private: 304": (private, [bearer, f"If-None-Match: {etag}"]),
        }
        for url, headers in cases.values():
            wrk(url, duration=1, connections=4, headers=headers)  # warm caches
        runs: dict[str, list[float]] = {label: [] for label in cases}
        for round_no in range(rounds):
            for label, (url, headers) in cases.items():
                result = wrk(url, duration=duration, connections=args.connections, headers=headers)
                bad = result.non_2xx if "304" not in label else 0
                assert not bad, f"{label}: {bad} non-2xx answers"
                runs[label].append(result.requests_per_s)
                print(
                    f"  [{round_no + 1}/{rounds}] {label:<36} {result.requests_per_s:>9,.0f} req/s"
                    f"  p50 {result.latency_p50_ms:.2f} ms",
                    flush=True,
                )
        command = server.command
    medians = {label: statistics.median(v) for label, v in runs.items()}
    print()
    print(f"reproduce: {command_line()}")
    print(f"server: {command} (STOCKADE_LOG_LEVEL=info)")
    print()
    print("| case | requests/s (median) | vs anonymous public | target |")
    print("|---|---|---|---|")
    for label, value in medians.items():
        kind = "304" if "304" in label else "full GET"
        base = medians[f"anonymous, public: {kind}"]
        ratio = value / base
        verdict = (
            ""
            if label.startswith("anonymous")
            else (f"≥ {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'}")
        )
        print(f"| {label} | {value:,.0f} | {ratio:.2f}x | {verdict} |")


if __name__ == "__main__":
    main()
