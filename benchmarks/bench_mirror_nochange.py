"""A no-change mirror run of a 600,000-record upstream subdir (issue 4: target under 2 s).

The upstream is conda-forge-sized synthetic ``linux-64`` repodata (the generator of
``bench_policy.py``, about 380 MB of JSON, served as ``repodata.json.zst`` by nginx on loopback;
nginx answers ``If-None-Match`` with 304). A passive mirror with the realistic 10-rule policy of
``bench_policy.py`` is run once (timed too: fetch, parse, evaluate, write 600k rows), then again
with nothing changed upstream, in the policies or in the channel: that second run is the figure.

    .venv/bin/python benchmarks/bench_mirror_nochange.py [--records 600000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import getpass
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import banner, bench_dir, command_line, free_port, machine, nginx, render  # noqa: E402
from bench_policy import ensure_input  # noqa: E402

TARGET_S = 2.0


def upstream_folder(records: int) -> Path:
    """``linux-64/repodata.json.zst`` (+ an empty ``noarch``) of the synthetic upstream."""
    source, _extras = ensure_input(records)
    root = bench_dir("mirror-nochange", f"upstream-{records}")
    target = root / "linux-64" / "repodata.json.zst"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"  compressing {source.name} ...", flush=True)
        with source.open("rb") as src, (target.with_suffix(".tmp")).open("wb") as dst:
            zstandard.ZstdCompressor(level=3, threads=-1).copy_stream(src, dst)
        target.with_suffix(".tmp").replace(target)
    noarch = root / "noarch"
    noarch.mkdir(exist_ok=True)
    (noarch / "repodata.json").write_bytes(
        b'{"info":{"subdir":"noarch"},"packages":{},"packages.conda":{},"repodata_version":1}'
    )
    return root


def the_policy() -> dict[str, Any]:
    """The 10-rule policy of bench_policy.py, in the API's JSON shape."""
    return {
        "platforms": ["linux-64", "noarch"],
        "licenses": ["gpl3", "agpl"],
        "licenses_mode": "not_in",
        "exclude_specs": ["python <3.8", "openssl <3", "nodejs <18", "*-dbg"],
        "date_from": "2019-01-01T00:00:00+00:00",
        "cooldown_days": 7,
        "cve_score": {"threshold": 9.0, "operator": ">="},
        "uncurated_cves": True,
        "keep_latest": 3,
        "exceptions": ["ca-certificates", "openssl >=3.0.0", "tzdata"],
    }


def run_once(container: Any, admin: Any) -> tuple[float, Any]:
    from stockade.db.engine import transaction
    from stockade.mirroring.runs import RunService

    with transaction(container.factory) as session:
        run_id = RunService(session, container.secrets).request(admin, "upstream").id
    started = time.perf_counter()
    outcome = container.mirror_sync().execute(run_id)
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="60,000 records, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.records, args.rounds = 60_000, 3

    from stockade.auth.service import UserService
    from stockade.container import Container
    from stockade.db.engine import transaction
    from stockade.db.migrate import upgrade
    from stockade.mirroring.service import MirrorService, MirrorSpec
    from stockade.policies.service import PolicyService
    from stockade.settings import load_settings

    banner(f"no-change mirror run, {args.records:,}-record upstream subdir")
    print(machine())
    root = upstream_folder(args.records)
    workdir = bench_dir("mirror-nochange", "nginx")
    data_dir = bench_dir("mirror-nochange", f"data-{os.getpid()}")
    port = free_port()
    user = getpass.getuser()
    conf = render(HERE / "nginx" / "static.conf", port=port, root=root, prefix=workdir, user=user)
    with nginx(conf, workdir):
        settings = load_settings(data_dir=data_dir, admin_password="bench-admin-password")
        upgrade(settings.db_url)
        container = Container.build(settings)
        container.bootstrap()
        with transaction(container.factory) as session:
            users = UserService(session)
            admin = users.principal_for(users.get_by_name("admin"), via="password")
        with transaction(container.factory) as session:
            spec = MirrorSpec(
                source=f"http://127.0.0.1:{port}", mode="passive", subdirs=["linux-64", "noarch"]
            )
            MirrorService(session, container.secrets).create(admin, "upstream", spec)
            PolicyService(session).create(admin, "corporate", the_policy())
            PolicyService(session).assign(admin, "corporate", channel="upstream")
        first, outcome = run_once(container, admin)
        counts = outcome.counts if outcome else {}
        print(
            f"first run: {first:.1f} s ({outcome.state if outcome else '?'}: "
            f"{counts.get('kept')} of {counts.get('upstream')} kept, {counts.get('added')} added)"
        )
        times = []
        for _ in range(args.rounds):
            took, outcome = run_once(container, admin)
            if outcome is None or outcome.summary != "unchanged":
                raise SystemExit(f"the second run was not a no-change run: {outcome}")
            times.append(took)
        container.close()
    median = statistics.median(times)
    print(
        f"no-change run: median {median * 1000:.0f} ms over {args.rounds} rounds "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); target < {TARGET_S:.0f} s: "
        f"{'met' if median < TARGET_S else 'MISSED'}"
    )
    print(f"reproduce with: {command_line()}")


if __name__ == "__main__":
    main()
