"""Vulnerability matching benchmark (issue 5): 10,000 advisories against a 600,000-record channel.

Input, generated once per size and generator version under ``$STOCKADE_BENCH_DIR/vulns`` and
reused:

- a SQLite database (the embedded default) migrated to head, with one channel of ``--records``
  artifact rows (default 600,000, conda-forge's linux-64 size): ~20,000 names with heavy-tailed
  counts of versions (semantic, two-part and calendar) and 1-4 builds per version;
- a folder of ``--advisories`` OSV JSON files (default 10,000), each on a PyPI name that is one of
  the channel's names (as the name map's default PyPI spelling rule maps it), ~4,000 names in all
  with heavy-tailed counts of advisories per name; ranges ``introduced``/``fixed`` (ECOSYSTEM),
  some ``last_affected``, some explicit ``versions`` lists, CVSS v3.1 vectors, CVE aliases.

Measured, each round on a fresh copy of the database (the file copy is not timed):

- **from scratch**: ``FeedSync.sync_feed`` on a ``file://`` feed of the folder, i.e. what the
  server's job does: read and parse the 10,000 files, store them, compute their target names,
  match them against every artifact of those names with conda's version ordering, write the
  matches and the per-artifact summaries, commit;
- **incremental**: 100 of the advisories change (new ``modified`` date and a different ``fixed``
  version) and a feed delivering just those 100 syncs (what an upstream's delta gives: NVD's
  ``lastModStartDate``, an OSV ``modified_id.csv`` selection) -- they are re-stored and
  re-matched;
- **full re-read**: 100 other advisories change in the full folder and it syncs again: all
  10,000 files are read and parsed, the 9,900 unchanged are recognised by their digest and
  skipped, the 100 are re-stored and re-matched;
- reference floor: reading the 600,000 rows' ``(id, name, version, build)`` and parsing the
  10,000 files with ``orjson`` -- the least any matcher has to do.

    .venv/bin/python benchmarks/bench_vuln_match.py                # 600,000 records, 10,000 advisories
    .venv/bin/python benchmarks/bench_vuln_match.py --quick        # 100,000 records, 2,000 advisories
    .venv/bin/python benchmarks/bench_vuln_match.py --rounds 1
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, bench_dir, command_line, machine, package_names
from sqlalchemy import func, insert, select, text

from stockade.channels.models import Artifact, Channel
from stockade.db import migrate
from stockade.db.engine import make_engine, make_session_factory, transaction
from stockade.vulns.feedsync import FeedSync
from stockade.vulns.models import VulnFeed, VulnMatch

GENERATOR_VERSION = "2"
SUBDIR = "linux-64"
VECTORS = (
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # 9.8
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H",  # 8.8
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",  # 5.9
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N",  # 3.3
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",  # 7.5
)


def _versions(rng: random.Random, count: int) -> list[str]:
    style = rng.random()
    found: list[str] = []
    if style < 0.7:  # semantic: major.minor.patch
        major, minor, patch = rng.randint(0, 3), rng.randint(0, 20), 0
        for _ in range(count):
            found.append(f"{major}.{minor}.{patch}")
            step = rng.random()
            if step < 0.6:
                patch += 1
            elif step < 0.93:
                minor, patch = minor + 1, 0
            else:
                major, minor, patch = major + 1, 0, 0
    elif style < 0.85:  # two-part
        major = rng.randint(1, 9)
        found = [f"{major}.{minor}" for minor in range(count)]
    else:  # calendar
        year, month = rng.randint(2016, 2020), 1
        for _ in range(count):
            found.append(f"{year}.{month}.{rng.randint(1, 28)}")
            month += 1
            if month > 12:
                year, month = year + 1, 1
    return found


def _channel_rows(records: int, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, build)], ``records`` in all."""
    names = package_names(max(records // 30, 50), seed=11)
    plan: dict[str, list[tuple[str, str]]] = {}
    left = records
    for index, name in enumerate(names):
        if left <= 0:
            break
        remaining_names = len(names) - index
        share = max(1, int(rng.paretovariate(1.3) * (left / remaining_names) * 0.45))
        share = min(share, left, 2000)
        if index == len(names) - 1:
            share = left
        builds_per = rng.choice((1, 1, 2, 3, 4))
        versions = _versions(rng, max(1, share // builds_per))
        rows: list[tuple[str, str]] = []
        for version in versions:
            for number in range(builds_per):
                rows.append(
                    (version, f"py3{rng.randint(8, 13)}h{rng.getrandbits(28):07x}_{number}")
                )
        rows = rows[:share]
        plan[name] = rows
        left -= len(rows)
    return plan


def build_database(path: Path, records: int) -> dict[str, list[str]]:
    """The channel database; returns name -> sorted distinct versions (for the advisories)."""
    rng = random.Random(5)
    plan = _channel_rows(records, rng)
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        channel = Channel(name="bench", privacy="public")
        session.add(channel)
        session.flush()
        batch: list[dict[str, Any]] = []
        serial = 0
        for name, rows in plan.items():
            for version, build in rows:
                serial += 1
                filename = f"{name}-{version}-{build}.conda"
                sha = f"{serial:064x}"
                record = {"name": name, "version": version, "build": build, "depends": []}
                batch.append(
                    {
                        "channel_id": channel.id,
                        "subdir": SUBDIR,
                        "filename": filename,
                        "name": name,
                        "version": version,
                        "build": build,
                        "build_number": int(build.rsplit("_", 1)[1]),
                        "format": "conda",
                        "sha256": sha,
                        "md5": sha[:32],
                        "size": 1000,
                        "record_json": orjson.dumps(record),
                        "timestamp_ms": 1_700_000_000_000,
                        "indexed_timestamp": 1_700_000_000,
                        "source": "mirror",
                    }
                )
                if len(batch) >= 20_000:
                    session.execute(insert(Artifact), batch)
                    batch.clear()
        if batch:
            session.execute(insert(Artifact), batch)
    engine.dispose()
    return {name: sorted({v for v, _ in rows}, key=_order) for name, rows in plan.items()}


def _order(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _advisory(rng: random.Random, number: int, name: str, versions: list[str]) -> dict[str, Any]:
    cut = rng.randrange(len(versions))
    fixed = versions[cut] if cut else None
    introduced = versions[rng.randrange(cut)] if cut and rng.random() < 0.5 else "0"
    events: list[dict[str, str]] = [{"introduced": introduced}]
    if fixed is not None:
        events.append({"fixed": fixed})
    elif rng.random() < 0.5:
        events.append({"last_affected": versions[rng.randrange(len(versions))]})
    affected: dict[str, Any] = {
        "package": {"ecosystem": "PyPI", "name": name, "purl": f"pkg:pypi/{name}"},
        "ranges": [{"type": "ECOSYSTEM", "events": events}],
    }
    if rng.random() < 0.3:
        affected["versions"] = rng.sample(versions, min(len(versions), rng.randint(1, 5)))
    published = datetime(2018, 1, 1, tzinfo=UTC) + timedelta(days=number % 2500)
    return {
        "schema_version": "1.6.0",
        "id": f"BENCH-{number:06d}",
        "aliases": [f"CVE-2099-{number:06d}"],
        "summary": f"synthetic advisory {number} for {name}",
        "details": "A synthetic advisory of the benchmark.",
        "published": published.isoformat().replace("+00:00", "Z"),
        "modified": published.isoformat().replace("+00:00", "Z"),
        "severity": [{"type": "CVSS_V3", "score": VECTORS[number % len(VECTORS)]}],
        "affected": [affected],
    }


def build_advisories(folder: Path, versions_of: dict[str, list[str]], count: int) -> None:
    rng = random.Random(9)
    names = sorted(versions_of)
    rng.shuffle(names)
    chosen = names[: min(len(names), max(count // 2, 1))]
    weights = [rng.paretovariate(1.5) for _ in chosen]
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        name = rng.choices(chosen, weights)[0]
        doc = _advisory(rng, number, name, versions_of[name])
        (folder / f"BENCH-{number:06d}.json").write_bytes(orjson.dumps(doc))


def change_advisories(folder: Path, count: int, seed: int, delta: Path | None = None) -> None:
    """``count`` advisories get a new ``modified`` date and a different ``fixed`` version.

    With ``delta``, the changed documents are also written there: a feed delivering only them, as
    an incremental upstream does.
    """
    files = sorted(folder.glob("*.json"))
    rng = random.Random(seed)
    if delta is not None:
        shutil.rmtree(delta, ignore_errors=True)
        delta.mkdir(parents=True)
    for path in rng.sample(files, count):
        doc = orjson.loads(path.read_bytes())
        doc["modified"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        events = doc["affected"][0]["ranges"][0]["events"]
        events[:] = [{"introduced": "0"}, {"fixed": f"{rng.randint(0, 9)}.{rng.randint(0, 30)}"}]
        path.write_bytes(orjson.dumps(doc))  # the full feed has them too
        if delta is not None:
            (delta / path.name).write_bytes(orjson.dumps(doc))


def inputs(records: int, advisories: int) -> tuple[Path, Path]:
    base = bench_dir("vulns", f"v{GENERATOR_VERSION}-{records}-{advisories}")
    database, folder, done = base / "channel.db", base / "advisories", base / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        database.unlink(missing_ok=True)
        started = time.perf_counter()
        print(f"generating {records:,} artifact rows and {advisories:,} advisories ...", flush=True)
        versions_of = build_database(database, records)
        build_advisories(folder, versions_of, advisories)
        done.write_text("ok")
        print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
    return database, folder


def reference_floor(database: Path, folder: Path) -> float:
    engine = make_engine(f"sqlite:///{database}")
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, name, version, build FROM artifacts")).all()
    docs = [orjson.loads(p.read_bytes()) for p in folder.glob("*.json")]
    elapsed = time.perf_counter() - started
    engine.dispose()
    assert rows
    assert docs
    return elapsed


def _feed(factory: Any, name: str, folder: Path) -> int:
    with transaction(factory) as session:
        feed = VulnFeed(name=name, url=folder.as_uri(), format="osv")
        session.add(feed)
        session.flush()
        return feed.id


def one_round(database: Path, folder: Path, round_no: int, changed: int) -> tuple[float, ...]:
    work = bench_dir("vulns", "work")
    copy = work / "round.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(database, copy)
    advisories = work / "advisories"
    shutil.rmtree(advisories, ignore_errors=True)
    shutil.copytree(folder, advisories)
    engine = make_engine(f"sqlite:///{copy}")
    factory = make_session_factory(engine)
    syncer = FeedSync(factory)
    feed_id = _feed(factory, "bench", advisories)
    started = time.perf_counter()
    counts = syncer.sync_feed(feed_id)
    scratch = time.perf_counter() - started
    with factory() as session:
        stored = session.scalar(select(func.count()).select_from(VulnMatch))
    assert counts.new > 0, counts
    assert stored == counts.matches_added, (counts, stored)
    # an upstream delivering only what changed (a delta folder, as NVD's lastModStartDate does)
    delta = work / "delta"
    change_advisories(advisories, changed, 100 + round_no, delta=delta)
    delta_id = _feed(factory, "bench-delta", delta)
    started = time.perf_counter()
    partial = syncer.sync_feed(delta_id)
    only_delta = time.perf_counter() - started
    assert partial.changed == changed, partial
    # the whole feed again, of which ``changed`` documents differ
    change_advisories(advisories, changed, 200 + round_no)
    started = time.perf_counter()
    again = syncer.sync_feed(feed_id)
    full_reread = time.perf_counter() - started
    assert again.changed == changed, again
    print(
        f"  round {round_no}: from scratch {scratch:.2f} s ({counts.new:,} advisories, "
        f"{counts.matches_added:,} matches); {changed} changed advisories: delta feed "
        f"{only_delta:.2f} s (+{partial.matches_added:,} -{partial.matches_removed:,} matches), "
        f"full feed re-read {full_reread:.2f} s ({again.changed} changed)",
        flush=True,
    )
    engine.dispose()
    return scratch, only_delta, full_reread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--advisories", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 records, 2,000 advisories")
    args = parser.parse_args()
    if args.quick:
        args.records, args.advisories, args.rounds = 100_000, 2_000, 1
    banner(f"vulnerability matching: {args.advisories:,} advisories x {args.records:,} records")
    print(machine())
    database, folder = inputs(args.records, args.advisories)
    floor = reference_floor(database, folder)
    results = [one_round(database, folder, n, args.changed) for n in range(1, args.rounds + 1)]
    scratch, delta, reread = (statistics.median(r[i] for r in results) for i in range(3))
    print(f"\nreference floor (read rows + parse files): {floor:.2f} s")
    print(f"from scratch, median of {args.rounds}: {scratch:.2f} s  (target < 30 s)")
    print(
        f"incremental, a feed of {args.changed} advisories, median: {delta:.2f} s  (target < 2 s)"
    )
    print(f"a full feed re-read with {args.changed} changed, median: {reread:.2f} s")
    print(f"reproduce with: {command_line()}")


if __name__ == "__main__":
    main()
