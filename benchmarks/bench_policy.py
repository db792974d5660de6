"""Policy evaluation benchmark (issue 4): a 10-rule policy over a conda-forge-sized linux-64 subdir.

Input: a synthetic ``linux-64/repodata.json`` of ``--records`` records (default 600,000, conda-forge's
linux-64 size; ~380 MB written like conda-forge's, ``indent=2`` with sorted keys). It is generated
once per size and generator version under ``$STOCKADE_BENCH_DIR/policy`` and reused. Realistic
shape: ~22,000 names with heavy-tailed counts of versions (semantic, calendar and two-part) and of
builds per version (python extensions built for the pythons of their time, R packages per r-base,
C libraries with 1-3 builds), ``depends`` with the version pins conda-forge writes (``python
>=3.11,<3.12.0a0``, ``python_abi 3.11.* *_cp311``, run-export pins ``>=1.2.3,<1.3.0a0``, lower
bounds, bare names, a few names that are not in the subdir), licences as SPDX strings with or
without ``license_family`` (R's free text too), millisecond timestamps from 2016 to the bench's
"now", ``.tar.bz2`` records in ``packages`` and ``.conda`` ones in ``packages.conda``.

Measured, each in its own fresh subprocess (so every peak is independent), interleaved round by
round, medians of ``--rounds``:

- reference: read the file's bytes + ``orjson.loads`` -- wall time and peak RSS (``ru_maxrss``);
- ours: what a mirror run does: read the bytes, ``orjson.loads``, drop the bytes, merge
  ``packages`` and ``packages.conda``, ``evaluate_subdirs`` with the policy, ``counts()`` of the
  verdict -- wall time and peak RSS.

Both children import the same modules and build the same lookups and policy before the clock
starts, so their baseline RSS (printed) is the same within a MiB; the memory target is judged on the
peak over that baseline, the absolute peaks are printed too. The policy ("plain", 10 rules): platforms in
linux-64/noarch, licences not in gpl3/agpl, 4 exclude_specs (one glob), date_from 2019-01-01,
cooldown 7 days, CVE score >= 9.0 (an in-memory table of 3,000 (name, version) entries in mixed
curation statuses), uncurated CVEs, no link scripts (an in-memory table of 5% of the filenames),
keep_latest 3, and 3 exceptions. Variants reported separately: "deps" = plain + only_specs (40
names) + include_dependencies; "prune" = plain + prune_unsatisfiable.

    .venv/bin/python benchmarks/bench_policy.py                      # 600,000 records, 3 rounds
    .venv/bin/python benchmarks/bench_policy.py --quick              # 100,000 records
    .venv/bin/python benchmarks/bench_policy.py --records 200000 --rounds 1 --variants plain
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, bench_dir, command_line, machine, package_names

GENERATOR_VERSION = "2"
SUBDIR = "linux-64"
NOW = datetime(2025, 11, 20, tzinfo=UTC)
START_MS = int(datetime(2016, 1, 1, tzinfo=UTC).timestamp() * 1000)
NOW_MS = int(NOW.timestamp() * 1000)
CONDA_FORMAT_FROM_MS = int(datetime(2022, 12, 1, tzinfo=UTC).timestamp() * 1000)
VARIANTS = ("plain", "deps", "prune")

# (python version, first ms it was built for, last ms it was built for)
_PY = [
    ("2.7", 2016, 2020),
    ("3.6", 2017, 2021),
    ("3.7", 2018, 2023),
    ("3.8", 2019, 2024),
    ("3.9", 2020, 2026),
    ("3.10", 2021, 2026),
    ("3.11", 2022, 2026),
    ("3.12", 2023, 2026),
    ("3.13", 2024, 2026),
]


def _ms(year: int) -> int:
    return int(datetime(year, 10, 1, tzinfo=UTC).timestamp() * 1000)


PYTHONS = [(v, _ms(a), _ms(b)) for v, a, b in _PY]
R_BASES = [("3.5", 2016, 2019), ("3.6", 2018, 2020), ("4.0", 2020, 2022), ("4.1", 2021, 2023),
           ("4.2", 2022, 2024), ("4.3", 2023, 2025), ("4.4", 2024, 2026)]  # fmt: skip

# (license, license_family or None, weight)
LICENSES: list[tuple[str | None, str | None, float]] = [
    ("MIT", "MIT", 22), ("MIT", None, 6), ("BSD-3-Clause", "BSD", 15), ("BSD-2-Clause", "BSD", 3),
    ("BSD-3-Clause", None, 3), ("Apache-2.0", "APACHE", 12), ("Apache-2.0", "Apache", 3),
    ("Apache-2.0 OR MIT", None, 2), ("Apache-2.0 AND MIT", None, 0.5), ("GPL-3.0-or-later", "GPL3", 4),
    ("GPL-3.0-only", "GPL3", 2), ("GPL-2.0-or-later", "GPL2", 3), ("GPL-2.0-only", None, 1),
    ("GPL-2.0-or-later OR LGPL-3.0-or-later", None, 0.3), ("LGPL-2.1-or-later", "LGPL", 3),
    ("LGPL-3.0-only", "LGPL", 1), ("MPL-2.0", "MOZILLA", 1.5), ("AGPL-3.0-only", "AGPL", 0.4),
    ("AGPL-3.0-or-later", None, 0.2), ("PSF-2.0", "PSF", 0.8), ("Zlib", "Other", 0.5),
    ("ISC", "OTHER", 1), ("Unlicense", None, 0.3), ("LicenseRef-Proprietary", "Proprietary", 0.3),
    ("BSD-3-Clause AND MIT AND Apache-2.0", None, 0.4), ("CC0-1.0", "CC", 0.2), (None, None, 0.6),
    ("GPL-2.0-or-later WITH Classpath-exception-2.0", None, 0.1), ("Other", "Other", 0.5),
]  # fmt: skip
R_LICENSES: list[tuple[str | None, str | None, float]] = [
    ("GPL-2.0-or-later", "GPL2", 6), ("GPL-2 | GPL-3", "GPL3", 5), ("MIT + file LICENSE", "MIT", 6),
    ("GPL (>= 2)", "GPL", 4), ("GPL-3.0-only", "GPL3", 3), ("BSD_3_clause + file LICENSE", "BSD", 2),
    ("LGPL (>= 2)", "LGPL", 1), ("Apache License 2.0", "APACHE", 1), ("Unlimited", None, 0.5),
    ("CC0", None, 0.3), ("AGPL-3", None, 0.1),
]  # fmt: skip
CORE_LIBS = ["libgcc", "libstdcxx", "libzlib", "openssl", "libffi", "xz", "bzip2", "zstd",
             "ca-certificates", "tzdata", "libsqlite", "ncurses", "readline", "libuuid", "icu",
             "libxml2", "libcurl", "krb5", "libblas", "liblapack", "libopenblas", "hdf5",
             "libprotobuf", "libabseil", "libgrpc", "libboost", "nodejs", "cuda-version",
             "libllvm17", "libexpat"]  # fmt: skip
MISSING_DEPS = ["__glibc >=2.17,<3.0.a0", "__cuda", "cudatoolkit-dev >=11.2", "pypy3.9 7.3.*"]


def _weighted(rng: random.Random, table: list[tuple[Any, Any, float]]) -> tuple[Any, Any]:
    a, b, _ = rng.choices(table, weights=[w for *_, w in table])[0]
    return a, b


def _versions(rng: random.Random, count: int) -> list[str]:
    style = rng.random()
    if style < 0.08:  # calendar versions
        year, n = rng.randint(2016, 2021), 0
        out = []
        for _ in range(count):
            n += 1
            if rng.random() < 0.3:
                year, n = year + 1, 1
            out.append(f"{year}.{rng.randint(1, 12)}.{n}")
        return out
    major, minor, patch = rng.randint(0, 3), rng.randint(0, 20), 0
    two_part = rng.random() < 0.12
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.6:
            patch += 1
        elif r < 0.93:
            minor, patch = minor + 1, 0
        else:
            major, minor, patch = major + 1, 0, 0
        out.append(f"{major}.{minor}" if two_part else f"{major}.{minor}.{patch}")
    if rng.random() < 0.05:  # a pre-release now and then
        out.insert(len(out) // 2, out[len(out) // 2] + "rc1")
        out.pop()
    return out


class _Name:
    __slots__ = ("builds", "kind", "license", "name", "versions")

    def __init__(self, name: str, kind: str, versions: list[tuple[str, int]], lic: Any) -> None:
        self.name = name
        self.kind = kind
        self.versions = versions  # (version, timestamp ms)
        self.license = lic
        self.builds = 0


def _pin(rng: random.Random, dep: _Name, at_ms: int) -> str:
    """A depends entry on ``dep`` as conda-forge writes them, for a version of ``dep`` older than at_ms."""
    older = [v for v, t in dep.versions if t <= at_ms] or [dep.versions[0][0]]
    v = older[-1] if rng.random() < 0.6 else rng.choice(older)
    parts = v.split(".")
    form = rng.random()
    if form < 0.3:
        return dep.name
    if form < 0.6:
        return f"{dep.name} >={'.'.join(parts[:2])}"
    if form < 0.9 and len(parts) >= 2 and parts[1].isdigit():
        return f"{dep.name} >={v},<{parts[0]}.{int(parts[1]) + 1}.0a0"
    return f"{dep.name} {'.'.join(parts[:2])}.*"


def generate(path: Path, records: int, seed: int = 4) -> dict[str, Any]:
    """Write a synthetic linux-64 repodata.json of ``records`` records; returns the extras."""
    rng = random.Random(seed)
    words = package_names(max(6000, records // 12), seed=seed)
    rng.shuffle(words)
    names: list[_Name] = []
    total = 0
    span = NOW_MS - START_MS
    pool = iter(words)

    def new_name(name: str, kind: str, n_versions: int) -> _Name:
        first = START_MS + int(span * rng.random() ** 1.5 * 0.95)
        stamps = sorted(rng.randint(first, NOW_MS) for _ in range(n_versions))
        lic = _weighted(rng, R_LICENSES if kind == "r" else LICENSES)
        return _Name(name, kind, list(zip(_versions(rng, n_versions), stamps, strict=True)), lic)

    core = [new_name("python", "core", 60), new_name("python_abi", "core", 9)]
    core += [new_name(n, "lib", rng.randint(20, 80)) for n in CORE_LIBS]
    core += [new_name("numpy", "py", 70), new_name("r-base", "core", 30)]
    names.extend(core)
    libs = [n for n in core if n.kind == "lib"]
    pys = [core[-2]]
    rs: list[_Name] = []
    while total < records * 1.25:  # builds per version are fewer than assumed; cut below
        word = next(pool)
        kind = rng.choices(("py", "lib", "r"), weights=(50, 32, 18))[0]
        n_versions = max(1, min(300, int(math.exp(rng.gauss(1.5, 1.1)))))
        nm = new_name(
            ("r-" if kind == "r" else "lib" if kind == "lib" else "") + word, kind, n_versions
        )
        names.append(nm)
        {"py": pys, "lib": libs, "r": rs}[kind].append(nm)
        total += n_versions * {"py": 4, "lib": 2, "r": 2}[kind]

    def popular(group: list[_Name]) -> _Name:
        return group[int(len(group) * rng.random() ** 2.5)]

    packages: dict[str, dict[str, Any]] = {}
    packages_conda: dict[str, dict[str, Any]] = {}
    count = 0
    order = names[len(core) :]
    rng.shuffle(order)
    order[:0] = core  # the core names first; the names left over are only depended upon (elsewhere)
    for nm in order:
        for version, ts in nm.versions:
            if nm.kind == "py":
                variants = [f"py{p.replace('.', '')}" for p, a, b in PYTHONS if a <= ts <= b][-5:]
            elif nm.kind == "r":
                variants = [f"r{r.replace('.', '')}" for r, a, b in R_BASES if a <= ts <= b][-3:]
            else:
                variants = [""] * rng.choice((1, 1, 1, 2, 3))
            variants = variants or [""]
            build_number = rng.choice((0, 0, 0, 1, 1, 2, 3))
            common: list[str] = []
            if nm.kind == "py":
                common = [_pin(rng, popular(pys), ts) for _ in range(rng.randint(0, 3))]
                if rng.random() < 0.35:
                    common.append(_pin(rng, pys[0], ts))  # numpy
            elif nm.kind == "r":
                common = [_pin(rng, popular(rs), ts) for _ in range(rng.randint(1, 6)) if rs]
            libdeps = [_pin(rng, popular(libs), ts) for _ in range(rng.randint(0, 3))]
            if rng.random() < 0.01:
                libdeps.append(rng.choice(MISSING_DEPS))
            for i, var in enumerate(variants):
                bts = ts + i * rng.randint(60_000, 3_600_000)
                bh = f"h{rng.getrandbits(28):07x}"
                build = f"{var}{bh}_{build_number}"
                gcc = (
                    "13"
                    if bts > 1_690_000_000_000
                    else "12"
                    if bts > 1_650_000_000_000
                    else "7.5.0"
                )
                deps = [f"libgcc >={gcc}"] if nm.kind != "r" or rng.random() < 0.5 else []
                if var.startswith("py"):
                    minor = int(var[3:])
                    py = f">=3.{minor},<3.{minor + 1}.0a0" if var != "py27" else ">=2.7,<2.8.0a0"
                    deps += [f"python {py}", f"python_abi {var[2]}.{var[3:]}.* *_cp{var[2:]}"]
                elif var.startswith("r"):
                    deps.append(f"r-base >={var[1]}.{var[2:]},<{var[1]}.{int(var[2:]) + 1}.0a0")
                deps += common + libdeps
                if nm.kind == "lib" and rng.random() < 0.5:
                    deps.append(f"libstdcxx >={gcc}")
                rec: dict[str, Any] = {
                    "build": build,
                    "build_number": build_number,
                    "depends": deps,
                    "md5": f"{rng.getrandbits(128):032x}",
                    "name": nm.name,
                    "sha256": f"{rng.getrandbits(256):064x}",
                    "size": int(rng.lognormvariate(12, 2)) + 1000,
                    "subdir": SUBDIR,
                    "version": version,
                }
                if nm.license[0] is not None:
                    rec["license"] = nm.license[0]
                if nm.license[1] is not None:
                    rec["license_family"] = nm.license[1]
                if rng.random() < 0.995:  # a few very old records carry no timestamp
                    rec["timestamp"] = bts
                if rng.random() < 0.12:
                    rec["constrains"] = [f"{nm.name}-static <0a0"] if rng.random() < 0.5 else [
                        _pin(rng, popular(libs), bts)
                    ]  # fmt: skip
                stem = f"{nm.name}-{version}-{build}"
                if bts >= CONDA_FORMAT_FROM_MS or rng.random() < 0.05:
                    packages_conda[stem + ".conda"] = rec
                else:
                    packages[stem + ".tar.bz2"] = rec
                count += 1
                if count >= records:
                    break
            if count >= records:
                break
        if count >= records:
            break
    doc = {
        "info": {"subdir": SUBDIR},
        "packages": dict(sorted(packages.items())),
        "packages.conda": dict(sorted(packages_conda.items())),
        "removed": [],
        "repodata_version": 1,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    tmp.replace(path)
    # Side tables a mirror run reads from the database: vulnerabilities and link-script facts.
    all_recs = list(packages.items()) + list(packages_conda.items())
    nv = sorted({(r["name"], r["version"]) for _, r in all_recs})
    statuses = ["active", "active", "reported", "mitigated", "cleared", "disputed"]
    vulns = [
        [n, v, [[round(rng.uniform(2.0, 10.0), 1), rng.choice(statuses)] for _ in range(rng.randint(1, 3))]]
        for n, v in rng.sample(nv, min(3000, len(nv) // 10))
    ]  # fmt: skip
    scripts = {fn: rng.random() < 0.2 for fn, _ in rng.sample(all_recs, len(all_recs) // 20)}
    top = [n.name for n in pys[:40]]
    return {"vulnerabilities": vulns, "link_scripts": scripts, "top_names": top}


def ensure_input(records: int) -> tuple[Path, Path]:
    folder = bench_dir("policy")
    path = folder / f"repodata-{SUBDIR}-{records}-g{GENERATOR_VERSION}.json"
    extras = path.with_suffix(".extras.json")
    if not (path.exists() and extras.exists()):
        print(f"  generating {records:,} records into {path} ...", flush=True)
        started = time.perf_counter()
        data = generate(path, records)
        extras.write_bytes(orjson.dumps(data))
        print(f"  generated in {time.perf_counter() - started:.0f}s", flush=True)
    return path, extras


# --------------------------------------------------------------------------- the policies


def policy(variant: str, top_names: list[str]) -> Any:
    from stockade.policies.model import CveScore, Policy

    kw: dict[str, Any] = {
        "name": "corporate",
        "platforms": ("linux-64", "noarch"),
        "licenses": frozenset({"gpl3", "agpl"}),
        "licenses_mode": "not_in",
        "exclude_specs": ("python <3.8", "openssl <3", "nodejs <18", "*-dbg"),
        "date_from": datetime(2019, 1, 1, tzinfo=UTC),
        "cooldown_days": 7,
        "cve_score": CveScore(threshold=9.0, operator=">="),
        "uncurated_cves": True,
        "no_link_scripts": True,
        "keep_latest": 3,
        "exceptions": ("ca-certificates", "openssl >=3.0.0", "tzdata"),
    }
    if variant == "deps":
        kw["only_specs"] = tuple(top_names)
        kw["include_dependencies"] = True
    elif variant == "prune":
        kw["prune_unsatisfiable"] = True
    return Policy(**kw)


# --------------------------------------------------------------------------- children


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Reset the process's peak RSS (VmHWM) so the evaluation phase gets its own (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def child(mode: str, path: Path, extras_path: Path) -> None:
    from stockade.policies.engine import (
        EvaluationContext,
        InMemoryLinkScripts,
        InMemoryVulnerabilities,
        evaluate_subdirs,
    )

    extras = orjson.loads(extras_path.read_bytes())
    vulns = InMemoryVulnerabilities(
        {
            (n, v): [(float(s), st) for s, st in entries]
            for n, v, entries in extras["vulnerabilities"]
        }
    )
    ctx = EvaluationContext(
        now=NOW, vulnerabilities=vulns, link_scripts=InMemoryLinkScripts(extras["link_scripts"])
    )
    # The reference builds the policy too (and drops it), so both baselines hold the same things.
    pol = policy("plain" if mode == "reference" else mode, extras["top_names"])
    if mode == "reference":
        pol = None
    del extras
    base_kb = _rss_kb()
    out: dict[str, Any] = {"mode": mode, "base_kb": base_kb}
    started = time.perf_counter()
    raw = path.read_bytes()
    data = orjson.loads(raw)
    out["load_s"] = time.perf_counter() - started
    if pol is not None:
        del raw
        out["parse_peak_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        _reset_peak()
        recs = data["packages"]
        recs.update(data.pop("packages.conda"))
        t0 = time.perf_counter()
        ev = evaluate_subdirs([pol], {SUBDIR: recs}, context=ctx)[SUBDIR]
        counts = ev.counts()
        out["eval_s"] = time.perf_counter() - t0
        out["records"] = len(recs)
        out["kept"] = len(ev.kept)
        out["counts"] = counts
        out["eval_peak_kb"] = _hwm_kb()
    out["wall_s"] = time.perf_counter() - started
    out["peak_kb"] = max(
        out.get("parse_peak_kb", 0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    print(orjson.dumps(out).decode(), flush=True)


def run_child(mode: str, path: Path, extras: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--file", str(path), "--extras", str(extras)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr}")
    return dict(orjson.loads(proc.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, help="records in linux-64 (default 600,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 records, 2 rounds")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick 2)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="of plain,deps,prune")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--extras", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.extras)
        return
    records = args.records or (100_000 if args.quick else 600_000)
    rounds = args.rounds or (2 if args.quick else 3)
    variants = [v for v in args.variants.split(",") if v]
    if unknown := sorted(set(variants) - set(VARIANTS)):
        parser.error(f"unknown variant(s) {', '.join(unknown)}")
    banner(f"policy evaluation: a 10-rule policy over {records:,} linux-64 records")
    print(f"machine: {machine()}")
    path, extras = ensure_input(records)
    print(f"  input: {path} ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in ("reference", *variants)}
    for r in range(rounds):
        for mode in ("reference", *variants):
            res = run_child(mode, path, extras)
            results[mode].append(res)
            extra = (
                f", evaluate+counts {res['eval_s']:.2f}s, kept {res['kept']:,} of {res['records']:,}"
                if "eval_s" in res
                else ""
            )
            phase = (
                f", evaluation phase {res['eval_peak_kb'] / 1024:,.0f} MiB"
                if "eval_peak_kb" in res
                else ""
            )
            print(
                f"  round {r + 1} {mode:9s} wall {res['wall_s']:6.2f}s (read+parse {res['load_s']:.2f}s"
                f"{extra}), peak {res['peak_kb'] / 1024:,.0f} MiB{phase}"
                f" (baseline {res['base_kb'] / 1024:,.0f})",
                flush=True,
            )

    def med(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in results[mode])

    banner(
        f"summary (medians of {rounds} rounds, {records:,} records, {path.stat().st_size / 1e6:.0f} MB)"
    )
    ref_wall, ref_peak, ref_base = (
        med("reference", "wall_s"),
        med("reference", "peak_kb"),
        med("reference", "base_kb"),
    )
    print(
        f"  reference (read + orjson.loads): wall {ref_wall:.2f}s, peak {ref_peak / 1024:,.0f} MiB"
        f" ({(ref_peak - ref_base) / 1024:,.0f} MiB over the process baseline)"
    )
    for mode in variants:
        wall, peak, base = med(mode, "wall_s"), med(mode, "peak_kb"), med(mode, "base_kb")
        phase = med(mode, "eval_peak_kb")
        ok_wall = wall <= 3 * ref_wall
        # The parse is the same work in both children; the evaluation must stay under its peak.
        ok_peak = phase - base <= ref_peak - ref_base
        print(
            f"  {mode:6s}: wall {wall:.2f}s = {wall / ref_wall:.2f}x the parse (target <= 3x:"
            f" {'met' if ok_wall else 'MISSED'}), evaluate+counts {med(mode, 'eval_s'):.2f}s;"
            f" peak {peak / 1024:,.0f} MiB ({(peak - base) / 1024:,.0f} over the baseline),"
            f" evaluation phase peak {phase / 1024:,.0f} MiB ({(phase - base) / 1024:,.0f} over the"
            f" baseline; target <= the parse's: {'met' if ok_peak else 'MISSED'})"
        )
        last = results[mode][-1]
        print(
            f"          kept {last['kept']:,} of {last['records']:,}; excluded per reason: {last['counts']}"
        )
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
