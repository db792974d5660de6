"""Search benchmark (issue 17): p95 of a query mix over 600,000 records / 24,000 names, on SQLite
and PostgreSQL, side by side with a plain ``LIKE '%q%'`` over the same rows.

Input (generated once per database and generator version, then reused): three channels holding
``--records`` artifact rows (default 600,000) of ``--names`` package names (default 24,000,
``_common.package_names``), 25 builds per name on average (heavy-tailed), four subdirs, licences
from a list of 12, a summary per name of 5-9 words (a few hundred word vocabulary, ``toolkit``
among them), downloads for one name in ten. The index is built by the real path
(``search.index.refresh_names``, as a publication does) and its build time printed.

Measured: ``SearchService.search`` as the API calls it (a new session per query, the admin
principal, 20 hits) for a mix of query kinds -- exact name, prefix (3-6 characters), a typo (one
character dropped or changed), one summary word, two summary words, a word with a subdir and a
licence filter -- and, for the same texts, the floor: ``SELECT DISTINCT channel_id, name FROM
artifacts WHERE servable AND channel_id IN (...) AND (name LIKE '%q%' OR summary LIKE '%q%')
LIMIT 20`` (no ranking, no typo tolerance). p50/p95/p99 per kind and over the whole mix.

    .venv/bin/python benchmarks/bench_search.py                       # both databases
    .venv/bin/python benchmarks/bench_search.py --databases sqlite --queries 50
    .venv/bin/python benchmarks/bench_search.py --quick               # 60,000 records / 2,400 names

PostgreSQL: ``--pg-url`` (default ``$STOCKADE_TEST_PG_URL``); a database ``stockade_bench_search``
is created next to it (the role needs CREATEDB).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import banner, bench_dir, command_line, machine, package_names

from stockade.audit.downloads_models import DownloadDaily
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel
from stockade.db.engine import make_engine, make_session_factory, transaction
from stockade.db.migrate import upgrade
from stockade.search.index import refresh_downloads, refresh_names
from stockade.search.query import parse_filters
from stockade.search.service import SearchService

GENERATOR_VERSION = "2"
CHANNELS = ("forge", "internal", "bio")
SUBDIRS = ("linux-64", "noarch", "osx-arm64", "win-64")
LICENSES = ("MIT", "BSD-3-Clause", "Apache-2.0", "GPL-3.0-only", "LGPL-2.1-or-later", "MPL-2.0",
            "ISC", "Zlib", "BSD-2-Clause", "PSF-2.0", "Unlicense", "EPL-2.0")  # fmt: skip
ADMIN = Principal(user_id=None, username="bench", kind="user", roles=frozenset({"admin"}))


def vocabulary(rng: random.Random) -> list[str]:
    syllables = ["ra", "to", "mi", "ke", "lu", "sa", "no", "vi", "de", "pa", "gu", "zen", "tor",
                 "lex", "gram", "form", "plot", "data", "graph", "stat"]  # fmt: skip
    words = {"toolkit", "library", "bindings", "parser", "client", "server", "fast", "array"}
    while len(words) < 400:
        words.add("".join(rng.sample(syllables, rng.choice((2, 3)))))
    return sorted(words)


def generate(factory: sessionmaker[Session], records: int, names: int) -> dict[str, Any]:
    """Channels, artifacts and downloads; returns what the queries are drawn from."""
    rng = random.Random(17)
    words = vocabulary(rng)
    all_names = package_names(names, seed=17)
    summaries = {
        n: " ".join(rng.choices(words, k=rng.randint(5, 9))).capitalize() for n in all_names
    }
    weights = [1 / (i + 1) ** 0.6 for i in range(len(all_names))]
    scale = records / sum(weights)
    with transaction(factory) as session:
        ids = []
        for name in CHANNELS:
            channel = Channel(name=name, privacy="private" if name == "internal" else "public")
            session.add(channel)
            session.flush()
            ids.append(channel.id)
    rows: list[dict[str, Any]] = []
    made = 0
    for i, name in enumerate(all_names):
        count = max(1, round(weights[i] * scale)) if i < len(all_names) - 1 else records - made
        count = max(1, min(count, records - made - (len(all_names) - i - 1)))
        channel = ids[0] if i % 10 else ids[1 + (i // 10) % 2]
        for b in range(count):
            made += 1
            filename = f"{name}-{b // 4}.{b % 4}-h{b:05d}_0.conda"
            sha = hashlib.sha256(f"{channel}/{filename}".encode()).hexdigest()
            rows.append({
                "channel_id": channel, "subdir": SUBDIRS[b % 4], "filename": filename,
                "name": name, "version": f"{b // 4}.{b % 4}", "build": f"h{b:05d}_0",
                "build_number": 0, "format": "conda", "sha256": sha, "md5": sha[:32],
                "size": 1000 + b, "record_json": b"{}", "indexed_timestamp": 0,
                "license": LICENSES[i % len(LICENSES)], "summary": summaries[name],
                "source": "mirror", "scan_status": "clean", "servable": True,
            })  # fmt: skip
            if len(rows) >= 20_000:
                _insert(factory, rows)
                rows = []
    _insert(factory, rows)
    with transaction(factory) as session:
        downloaded = all_names[::10]
        session.execute(insert(DownloadDaily), [
            {"day": date(2026, 12, 1), "channel_id": ids[0], "subdir": "linux-64",
             "filename": f"{n}.conda", "name": n, "count": rng.randint(1, 10_000), "bytes": 1}
            for n in downloaded
        ])  # fmt: skip
    return {"names": all_names, "words": words, "records": made}


def _insert(factory: sessionmaker[Session], rows: list[dict[str, Any]]) -> None:
    if rows:
        with transaction(factory) as session:
            session.execute(insert(Artifact), rows)


def build_index(factory: sessionmaker[Session]) -> float:
    started = time.perf_counter()
    with factory() as session:
        pairs = session.execute(select(Artifact.channel_id, Artifact.name).distinct()).all()
    by_channel: dict[int, list[str]] = {}
    for channel_id, name in pairs:
        by_channel.setdefault(channel_id, []).append(name)
    for channel_id, names in by_channel.items():
        for start in range(0, len(names), 5000):
            with transaction(factory) as session:
                refresh_names(session, channel_id, names[start : start + 5000])
    with transaction(factory) as session:
        refresh_downloads(session)
    took = time.perf_counter() - started
    # what autovacuum (PostgreSQL) would do after a bulk load; SQLite's planner statistics
    with factory.kw["bind"].connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        postgres = conn.dialect.name == "postgresql"
        for table in ("artifacts", "search_documents", "download_daily"):
            conn.execute(text(f"VACUUM ANALYZE {table}" if postgres else f"ANALYZE {table}"))
    return took


def typo(rng: random.Random, name: str) -> str:
    i = rng.randrange(1, len(name) - 1)
    if rng.random() < 0.5:
        return name[:i] + name[i + 1 :]
    return name[:i] + rng.choice("aeiourstn") + name[i + 1 :]


def query_mix(data: dict[str, Any], per_kind: int) -> list[tuple[str, str, dict[str, Any]]]:
    rng = random.Random(5)
    names = [n for n in data["names"] if len(n) >= 6]
    words = data["words"]
    mix: list[tuple[str, str, dict[str, Any]]] = []
    for _ in range(per_kind):
        name = rng.choice(names)
        mix.append(("exact", rng.choice(data["names"]), {}))
        mix.append(("prefix", name[: rng.randint(3, 6)], {}))
        mix.append(("typo", typo(rng, name), {}))
        mix.append(("word", rng.choice(words), {}))
        mix.append(("two words", " ".join(rng.sample(words, 2)), {}))
        filters = {"subdirs": [rng.choice(SUBDIRS)], "licenses": [rng.choice(LICENSES)]}
        mix.append(("word+filters", rng.choice(words), filters))
    rng.shuffle(mix)
    return mix


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def run_queries(
    factory: sessionmaker[Session], mix: list[tuple[str, str, dict[str, Any]]]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    ours: dict[str, list[float]] = {}
    floor: dict[str, list[float]] = {}
    with factory() as session:
        channel_ids = list(session.scalars(select(Channel.id)).all())
    like = text(
        "SELECT DISTINCT channel_id, name FROM artifacts WHERE servable AND channel_id IN "
        f"({','.join(str(c) for c in channel_ids)}) AND (name LIKE :p OR summary LIKE :p) LIMIT 20"
    )
    for kind, q, filters in mix:

        def search(q: str = q, filters: dict[str, Any] = filters) -> object:
            with factory() as session:
                return SearchService(session).search(ADMIN, q, parse_filters(**filters), limit=20)

        def plain(q: str = q) -> object:
            with factory() as session:
                return session.execute(like, {"p": f"%{q}%"}).all()

        ours.setdefault(kind, []).append(timed(search))
        floor.setdefault(kind, []).append(timed(plain))
    return ours, floor


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(label: str, ours: dict[str, list[float]], floor: dict[str, list[float]]) -> None:
    print(f"\n{label}: milliseconds per query (p50 / p95 / p99), ours vs plain LIKE '%q%'")
    print(
        f"{'kind':<14}{'n':>5}   {'ours p50':>9}{'p95':>8}{'p99':>8}   {'LIKE p50':>9}{'p95':>8}{'p99':>8}"
    )
    every_ours = [v for vs in ours.values() for v in vs]
    every_floor = [v for vs in floor.values() for v in vs]
    for kind in [*sorted(ours), "ALL"]:
        a = every_ours if kind == "ALL" else ours[kind]
        b = every_floor if kind == "ALL" else floor[kind]
        print(
            f"{kind:<14}{len(a):>5}   {statistics.median(a):>9.1f}{pct(a, 95):>8.1f}{pct(a, 99):>8.1f}"
            f"   {statistics.median(b):>9.1f}{pct(b, 95):>8.1f}{pct(b, 99):>8.1f}"
        )


def prepare(url: str, records: int, names: int) -> tuple[sessionmaker[Session], dict[str, Any]]:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        have = session.scalar(select(func.count()).select_from(Artifact))
        docs = session.scalar(text("SELECT count(*) FROM search_documents"))
    data = {"names": package_names(names, seed=17), "words": vocabulary(random.Random(17))}
    if have != records or not docs:
        raise RuntimeError("database not generated")
    return factory, data


def database(kind: str, records: int, names: int, pg_url: str | None) -> str:
    tag = f"v{GENERATOR_VERSION}-{records}-{names}"
    if kind == "sqlite":
        return f"sqlite:///{bench_dir('search') / f'search-{tag}.db'}"
    if not pg_url:
        raise SystemExit("PostgreSQL: give --pg-url or set STOCKADE_TEST_PG_URL")
    base = pg_url.rsplit("/", 1)[0]
    name = f"stockade_bench_search_{records}_{names}_v{GENERATOR_VERSION}"
    admin = create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{base}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--names", type=int, default=24_000)
    parser.add_argument("--queries", type=int, default=100, help="queries of each kind")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("STOCKADE_TEST_PG_URL"))
    parser.add_argument("--quick", action="store_true", help="60,000 records / 2,400 names")
    args = parser.parse_args()
    if args.quick:
        args.records, args.names = 60_000, 2_400
    banner(f"search: {args.records:,} records / {args.names:,} names")
    print(machine())
    for kind in args.databases.split(","):
        url = database(kind, args.records, args.names, args.pg_url)
        try:
            factory, data = prepare(url, args.records, args.names)
        except (RuntimeError, DBAPIError):  # not generated yet (or another version)
            upgrade(url)
            factory = make_session_factory(make_engine(url))
            started = time.perf_counter()
            data = generate(factory, args.records, args.names)
            print(
                f"{kind}: generated {data['records']:,} records in {time.perf_counter() - started:.1f} s"
            )
            print(
                f"{kind}: index built in {build_index(factory):.1f} s (search.index.refresh_names)"
            )
        with factory() as session:
            docs = session.scalar(text("SELECT count(*) FROM search_documents"))
        print(f"{kind}: {docs:,} documents (channel, name)")
        mix = query_mix(data, args.queries)
        run_queries(factory, mix[:30])  # warm caches
        ours, floor = run_queries(factory, mix)
        report(kind, ours, floor)
    print(f"\nreproduce with: {command_line()}")


if __name__ == "__main__":
    main()
