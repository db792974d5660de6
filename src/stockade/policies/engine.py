"""The policy engine (SPEC §6): which upstream records a mirror keeps, and why the others are excluded.

Pure: records in (repodata ``packages``/``packages.conda`` dicts keyed by filename), a verdict out.

Semantics (decisions documented here, tested in ``tests/unit/policies``):

1. A record is kept iff it passes every policy and has no malicious scan verdict (nothing overrides
   that). With no policy at all, every non-malicious record is kept.
2. Within a policy, per-record criteria are checked first (platforms, licenses, only/exclude specs,
   date window, cooldown, CVE score, uncurated CVEs, signed only, link scripts); every failed criterion
   adds a reason.
   - ``date_from``/``date_to``: inclusive; a record without ``timestamp`` fails a date window (its date
     cannot be proven to be inside). Timestamps > 1e11 are milliseconds (as conda reads them).
   - ``cooldown_days``: a record without ``timestamp`` passes (repodata older than timestamps).
   - ``no_link_scripts``: a record whose link scripts are unknown (lookup returns ``None``) is kept.
3. ``keep_latest`` N: among the records that passed step 2, the N newest distinct versions of each name
   (rattler ``Version`` ordering, per subdir) are kept, with all their builds.
4. Exceptions of the policy clear every reason of this policy for the records they match.
5. ``include_dependencies``: starting from what the policy keeps, every record that satisfies a
   ``depends`` entry of a kept record (ALL satisfying records, not only the newest), looked up in the same
   subdir plus ``noarch`` (a ``noarch`` record looks in every evaluated subdir), is kept too if it was
   excluded only by ``only_specs`` and/or ``keep_latest``; repeated to a closure. Records failing another
   criterion stay excluded.
6. ``prune_unsatisfiable`` (if any policy asks for it) runs last, over the combined kept set: a kept record
   with a ``depends`` entry that no kept record satisfies is dropped, repeatedly, to a fixpoint. Virtual
   packages (``__glibc``, ``__osx``, ...) are always satisfied; a dependency whose *name* does not occur in
   the upstream at all is taken to be satisfied externally (another channel). A record matching an
   exception of the pruning policy is not pruned.
7. MatchSpecs are parsed once; specs are tested only against records of the names they can match (exact
   name → one bucket; glob/regex names → the matching buckets). A spec with only name/version/build is
   matched with a cached ``VersionSpec``/build pattern; any other field falls back to rattler's
   ``MatchSpec.matches`` on a ``PackageRecord`` built on demand.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from rattler import BuildString, MatchSpec, PackageRecord, Version, VersionSpec
from rattler.exceptions import (
    InvalidMatchSpecError,
    InvalidPackageNameError,
    InvalidVersionError,
    InvalidVersionSpecError,
    PackageNameMatcherParseError,
)

from stockade.core.errors import NotFoundError
from stockade.policies import licenses as lic
from stockade.policies.model import NOARCH, Policy, SetMode

__all__ = [
    "MALICIOUS_POLICY",
    "Evaluation",
    "EvaluationContext",
    "InMemoryLinkScripts",
    "InMemorySignatures",
    "InMemoryVerdicts",
    "InMemoryVulnerabilities",
    "LinkScriptLookup",
    "Reason",
    "SignatureLookup",
    "VerdictLookup",
    "VulnerabilityLookup",
    "evaluate",
    "evaluate_subdirs",
    "explain",
    "timestamp_seconds",
]

Record = Mapping[str, Any]
_RATTLER_ERRORS = (
    InvalidMatchSpecError,
    InvalidPackageNameError,
    InvalidVersionError,
    InvalidVersionSpecError,
    PackageNameMatcherParseError,
    ValueError,
    TypeError,
)
MALICIOUS_POLICY = "scan"


# --------------------------------------------------------------------------------------------- lookups


class VulnerabilityLookup(Protocol):
    def max_score(self, name: str, version: str, statuses: frozenset[str]) -> float | None: ...
    def has_uncurated(self, name: str, version: str) -> bool: ...


class SignatureLookup(Protocol):
    def is_signed(self, filename: str) -> bool: ...


class LinkScriptLookup(Protocol):
    def has_link_scripts(self, filename: str) -> bool | None: ...


class VerdictLookup(Protocol):
    def is_malicious(self, filename: str) -> bool: ...


@dataclass
class InMemoryVulnerabilities:
    """``scores[(name, version)] = [(score, status), ...]``; no data means nothing is vulnerable."""

    scores: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=dict)

    def max_score(self, name: str, version: str, statuses: frozenset[str]) -> float | None:
        found = [s for s, st in self.scores.get((name, version), ()) if st in statuses]
        return max(found) if found else None

    def has_uncurated(self, name: str, version: str) -> bool:
        return any(st == "reported" for _, st in self.scores.get((name, version), ()))


@dataclass
class InMemorySignatures:
    signed: set[str] = field(default_factory=set)

    def is_signed(self, filename: str) -> bool:
        return filename in self.signed


@dataclass
class InMemoryLinkScripts:
    """``scripts[filename] = True/False``; a filename absent is unknown (``None``)."""

    scripts: dict[str, bool] = field(default_factory=dict)

    def has_link_scripts(self, filename: str) -> bool | None:
        return self.scripts.get(filename)


@dataclass
class InMemoryVerdicts:
    malicious: set[str] = field(default_factory=set)

    def is_malicious(self, filename: str) -> bool:
        return filename in self.malicious


@dataclass(frozen=True)
class EvaluationContext:
    now: datetime
    vulnerabilities: VulnerabilityLookup = field(default_factory=InMemoryVulnerabilities)
    signatures: SignatureLookup = field(default_factory=InMemorySignatures)
    link_scripts: LinkScriptLookup = field(default_factory=InMemoryLinkScripts)
    verdicts: VerdictLookup = field(default_factory=InMemoryVerdicts)


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Reason:
    policy: str
    criterion: str
    detail: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.criterion}: {self.detail}"

    @property
    def key(self) -> str:
        """What dry-run counts group by: ``policy: criterion``."""
        return f"{self.policy}: {self.criterion}"


@dataclass
class Evaluation:
    """The verdict for one subdir: kept filenames, and every excluded filename with its reasons."""

    subdir: str
    kept: set[str]
    excluded: dict[str, list[Reason]]

    def counts(self) -> dict[str, int]:
        """Excluded records per ``policy: criterion`` (a record with several reasons counts in each)."""
        counter: Counter[str] = Counter()
        for reasons in self.excluded.values():
            counter.update({r.key for r in reasons})
        return dict(counter.most_common())

    def samples(self, per_reason: int = 5) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for fn in sorted(self.excluded):
            for key in {r.key for r in self.excluded[fn]}:
                if len(out[key]) < per_reason:
                    out[key].append(fn)
        return dict(out)

    def diff(self, current: Iterable[str]) -> tuple[set[str], set[str]]:
        """``(would_add, would_remove)`` against the filenames currently in the channel."""
        cur = set(current)
        return self.kept - cur, cur - self.kept


# --------------------------------------------------------------------------------------------- helpers


def timestamp_seconds(value: Any) -> float | None:
    """A repodata ``timestamp`` in seconds (values > 1e11 are milliseconds, like conda)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    ts = float(value)
    return ts / 1000.0 if ts > 1e11 else ts


_VERSIONS: dict[str, Version | None] = {}
_VERSION_SPECS: dict[str, VersionSpec] = {}


def _version(text: str) -> Version | None:
    try:
        return _VERSIONS[text]
    except KeyError:
        pass
    try:
        v: Version | None = Version(text)
    except _RATTLER_ERRORS:  # unparsable upstream version: never matches, sorts lowest
        v = None
    if len(_VERSIONS) < 1_000_000:
        _VERSIONS[text] = v
    return v


def _version_spec(text: str) -> VersionSpec:
    vs = _VERSION_SPECS.get(text)
    if vs is None:
        vs = VersionSpec(text)
        _VERSION_SPECS[text] = vs
    return vs


def _glob_re(pattern: str) -> re.Pattern[str]:
    if pattern.startswith("^") and pattern.endswith("$"):
        return re.compile(pattern)
    return re.compile(fnmatch.translate(pattern))


def _package_record(rec: Record, subdir: str) -> PackageRecord:
    return PackageRecord(
        name=str(rec.get("name", "")),
        version=str(rec.get("version", "0")),
        build=BuildString(str(rec.get("build", ""))),
        build_number=int(rec.get("build_number", 0) or 0),
        subdir=str(rec.get("subdir") or subdir),
        arch=rec.get("arch"),
        platform=rec.get("platform"),
        depends=list(rec.get("depends") or []),
        constrains=list(rec.get("constrains") or []),
        license=rec.get("license"),
        license_family=rec.get("license_family"),
        size=rec.get("size"),
    )


class _Spec:
    """A parsed MatchSpec with cheap pre-filters (name bucket, cached version/build checks)."""

    __slots__ = (
        "_vcache",
        "build_re",
        "exact_name",
        "name_re",
        "slow",
        "spec",
        "text",
        "version_spec",
    )

    def __init__(self, text: str, *, lenient: bool = False) -> None:
        self.text = text
        # Repodata ``depends`` are parsed leniently (as conda does); user specs strictly, globs allowed.
        spec = MatchSpec(text) if lenient else MatchSpec(text, strict=True, exact_names_only=False)
        self.spec = spec
        pkg = spec.name.as_package_name()
        self.exact_name: str | None = pkg.normalized if pkg is not None else None
        self.name_re: re.Pattern[str] | None = (
            None if pkg is not None else _glob_re(str(spec.name.normalized).lower())
        )
        plain = "[" not in text and "::" not in text
        self.slow = not plain or any(
            getattr(spec, attr) is not None
            for attr in ("build_number", "subdir", "channel", "file_name", "md5", "sha256")
        )
        self.version_spec: VersionSpec | None = (
            _version_spec(str(spec.version)) if spec.version is not None and not self.slow else None
        )
        self.build_re: re.Pattern[str] | None = (
            _glob_re(str(spec.build)) if spec.build is not None and not self.slow else None
        )
        self._vcache: dict[str, bool] = {}

    def names(self, index: Mapping[str, Any]) -> list[str]:
        if self.exact_name is not None:
            return [self.exact_name] if self.exact_name in index else []
        assert self.name_re is not None
        return [n for n in index if self.name_re.fullmatch(n)]

    def version_ok(self, vtext: str) -> bool:
        """The cached version check (fast path only; True when the spec has no version)."""
        if self.version_spec is None:
            return True
        ok = self._vcache.get(vtext)
        if ok is None:
            v = _version(vtext)
            ok = v is not None and bool(self.version_spec.matches(v))
            self._vcache[vtext] = ok
        return ok

    def matches(self, rec: Record, subdir: str) -> bool:
        """Match a record already known to be in a name bucket this spec selects."""
        if self.slow:
            try:
                return bool(self.spec.matches(_package_record(rec, subdir)))
            except _RATTLER_ERRORS:  # a record rattler cannot represent does not match
                return False
        if not self.version_ok(str(rec.get("version", ""))):
            return False
        return self.build_ok(rec)

    def build_ok(self, rec: Record) -> bool:
        """The build check of the fast path (the version is checked per version group)."""
        return (
            self.build_re is None or self.build_re.fullmatch(str(rec.get("build", ""))) is not None
        )


def _dep_spec(text: str) -> _Spec | None:
    """A ``depends`` entry, parsed once per distinct string (None if rattler refuses it)."""
    try:
        return _MATCH_SPECS_PARSED[text]
    except KeyError:
        pass
    try:
        s: _Spec | None = _Spec(text, lenient=True)
    except _RATTLER_ERRORS:
        s = None
    if len(_MATCH_SPECS_PARSED) < 1_000_000:
        _MATCH_SPECS_PARSED[text] = s
    return s


_MATCH_SPECS_PARSED: dict[str, _Spec | None] = {}


def _name(rec: Record) -> str:
    return str(rec.get("name", "")).lower()


# ----------------------------------------------------------------------------------------- the engine


class _Group:
    """The records of one name and one version text in one subdir (a spec's version is checked once per
    group); ``kept``/``watchers`` are the pruning state (see :func:`_prune`)."""

    __slots__ = ("fns", "kept", "subdir", "version", "watchers")

    def __init__(self, subdir: str, version: str) -> None:
        self.subdir = subdir
        self.version = version
        self.fns: list[str] = []
        self.kept = 0
        self.watchers: list[_Need] = []


class _Universe:
    """All records being evaluated, indexed by subdir and name (and, lazily, by version within a name)."""

    def __init__(self, records: Mapping[str, Mapping[str, Record]]) -> None:
        self.records = records
        self.by_name: dict[str, dict[str, list[str]]] = {}
        self.all_names: set[str] = set()
        for subdir, recs in records.items():
            idx: dict[str, list[str]] = defaultdict(list)
            for fn, rec in recs.items():
                idx[_name(rec)].append(fn)
            self.by_name[subdir] = dict(idx)
            self.all_names.update(idx)
        self._dep_cache: dict[str, list[tuple[str, str]]] = {}
        self._groups: dict[str, dict[str, list[_Group]]] = {sd: {} for sd in records}

    def groups(self, subdir: str, name: str) -> list[_Group]:
        """The version groups of a name bucket, in first-seen order (built once per bucket)."""
        cache = self._groups[subdir]
        out = cache.get(name)
        if out is None:
            recs = self.records[subdir]
            by_version: dict[str, _Group] = {}
            for fn in self.by_name[subdir].get(name, ()):
                vtext = str(recs[fn].get("version", ""))
                g = by_version.get(vtext)
                if g is None:
                    g = by_version[vtext] = _Group(subdir, vtext)
                g.fns.append(fn)
            out = cache[name] = list(by_version.values())
        return out

    def select(self, spec: _Spec, subdir: str) -> set[str]:
        idx = self.by_name[subdir]
        recs = self.records[subdir]
        out: set[str] = set()
        for name in spec.names(idx):
            if spec.slow:
                out.update(fn for fn in idx[name] if spec.matches(recs[fn], subdir))
                continue
            for g in self.groups(subdir, name):
                if not spec.version_ok(g.version):
                    continue
                if spec.build_re is None:
                    out.update(g.fns)
                else:
                    out.update(fn for fn in g.fns if spec.build_ok(recs[fn]))
        return out

    def external(self, spec: _Spec | None) -> bool:
        """A depends entry taken as satisfied: unparsable, virtual, or a name absent upstream."""
        return spec is None or (
            spec.exact_name is not None
            and (spec.exact_name.startswith("__") or spec.exact_name not in self.all_names)
        )

    def satisfying(self, dep: str) -> list[tuple[str, str]] | None:
        """Every ``(subdir, fn)`` satisfying a depends entry; None = satisfied externally/virtually."""
        cached = self._dep_cache.get(dep)
        if cached is not None:
            return cached
        spec = _dep_spec(dep)
        if spec is None or self.external(spec):
            return None
        out = [(sd, fn) for sd in self.records for fn in self.select(spec, sd)]
        self._dep_cache[dep] = out
        return out

    def eligible_subdirs(self, subdir: str) -> list[str]:
        """Where a record of ``subdir`` looks for its dependencies (see :func:`_eligible`)."""
        return [sd for sd in self.records if _eligible(subdir, sd)]


def _eligible(rec_subdir: str, cand_subdir: str) -> bool:
    return rec_subdir == NOARCH or cand_subdir in (rec_subdir, NOARCH)


class _CompiledPolicy:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.only = [_Spec(t) for t in policy.only_specs]
        self.exclude = [_Spec(t) for t in policy.exclude_specs]
        self.exceptions = [_Spec(t) for t in policy.exceptions]


_LAX = frozenset({"only_specs", "keep_latest"})  # reasons include_dependencies may lift


def _per_record(  # noqa: PLR0912, PLR0915  # the hot loop: one pass, criteria inlined on purpose
    cp: _CompiledPolicy, uni: _Universe, subdir: str, ctx: EvaluationContext, caches: dict[str, Any]
) -> dict[str, list[Reason]]:
    p = cp.policy
    pname = p.name
    recs = uni.records[subdir]
    out: dict[str, list[Reason]] = {}

    def add(fn: str, criterion: str, detail: str) -> None:
        r = Reason(pname, criterion, detail)
        lst = out.get(fn)
        if lst is None:
            out[fn] = [r]
        else:
            lst.append(r)

    # Platforms decide for a whole subdir at once.
    if p.platforms is not None:
        named = subdir in p.platforms
        if subdir == NOARCH and not named:
            ok = True
        else:
            ok = named if p.platforms_mode is SetMode.IN else not named
        if not ok:
            detail = (
                f"{subdir} not in {', '.join(p.platforms)}"
                if p.platforms_mode is SetMode.IN
                else f"{subdir} excluded"
            )
            for fn in recs:
                add(fn, "platforms", detail)

    # Specs work on name buckets.
    for spec in cp.exclude:
        for fn in uni.select(spec, subdir):
            add(fn, "exclude_specs", f"matches {spec.text}")
    only: set[str] | None = None
    if cp.only:
        only = set()
        for spec in cp.only:
            only |= uni.select(spec, subdir)

    fams = p.licenses
    lic_mode = p.licenses_mode
    lic_cache: dict[tuple[Any, Any], str] = caches.setdefault(f"lic:{id(cp)}", {})
    t_from = p.date_from.timestamp() if p.date_from else None
    t_to = p.date_to.timestamp() if p.date_to else None
    cooldown_after = (
        ctx.now.timestamp() - p.cooldown_days * 86400.0 if p.cooldown_days is not None else None
    )
    cve = p.cve_score
    cve_cache: dict[tuple[str, str], float | None] = caches.setdefault(f"cve:{id(cp)}", {})
    unc_cache: dict[tuple[str, str], bool] = caches.setdefault("uncurated", {})
    vulns = ctx.vulnerabilities
    want_dates = t_from is not None or t_to is not None or cooldown_after is not None

    for fn, rec in recs.items():
        if only is not None and fn not in only:
            add(fn, "only_specs", "matches none of " + ", ".join(p.only_specs))
        if fams is not None:
            key = (rec.get("license_family"), rec.get("license"))
            verdict = lic_cache.get(key)
            if verdict is None:
                alts = lic.family_alternatives(*key)
                verdict = (
                    ""
                    if lic.passes(alts, fams, lic_mode)
                    else (
                        f"{lic.describe(alts)} not allowed"
                        if lic_mode is SetMode.NOT_IN
                        else f"{lic.describe(alts)} not in {', '.join(sorted(fams))}"
                    )
                )
                lic_cache[key] = verdict
            if verdict:
                add(fn, "licenses", verdict)
        if want_dates:
            ts = timestamp_seconds(rec.get("timestamp"))
            if ts is None:
                if t_from is not None or t_to is not None:
                    add(fn, "date_window", "no timestamp")
            else:
                if t_from is not None and ts < t_from:
                    add(fn, "date_window", f"published {_iso(ts)} before {_iso(t_from)}")
                if t_to is not None and ts > t_to:
                    add(fn, "date_window", f"published {_iso(ts)} after {_iso(t_to)}")
                if cooldown_after is not None and ts > cooldown_after:
                    add(
                        fn,
                        "cooldown",
                        f"published {_iso(ts)}, less than {p.cooldown_days:g} days ago",
                    )
        if cve is not None or p.uncurated_cves:
            nv = (str(rec.get("name", "")), str(rec.get("version", "")))
            if cve is not None:
                if nv in cve_cache:
                    score = cve_cache[nv]
                else:
                    score = cve_cache[nv] = vulns.max_score(nv[0], nv[1], cve.statuses)
                if score is not None and cve.exceeded_by(score):
                    add(fn, "cve_score", f"CVSS {score:g} {cve.operator} {cve.threshold:g}")
            if p.uncurated_cves:
                unc = unc_cache.get(nv)
                if unc is None:
                    unc = unc_cache[nv] = vulns.has_uncurated(nv[0], nv[1])
                if unc:
                    add(fn, "uncurated_cves", "has vulnerabilities still reported (uncurated)")
        if p.signed_only and not ctx.signatures.is_signed(fn):
            add(fn, "signed_only", "no valid signature or attestation")
        if p.no_link_scripts and ctx.link_scripts.has_link_scripts(fn):
            add(fn, "no_link_scripts", "has pre-link, post-link or pre-unlink scripts")
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _keep_latest(
    n: int, pname: str, recs: Mapping[str, Record], reasons: dict[str, list[Reason]]
) -> None:
    by_name: dict[str, set[str]] = defaultdict(set)
    for fn, rec in recs.items():
        if fn not in reasons:
            by_name[_name(rec)].add(str(rec.get("version", "")))
    newest: dict[str, set[str]] = {}
    for name, versions in by_name.items():
        if len(versions) <= n:
            newest[name] = versions
            continue
        ordered = sorted(versions, key=_version_sort_key, reverse=True)
        newest[name] = set(ordered[:n])
    for fn, rec in recs.items():
        if fn in reasons:
            continue
        name = _name(rec)
        if str(rec.get("version", "")) not in newest[name]:
            reasons[fn] = [
                Reason(pname, "keep_latest", f"not among the {n} newest versions of {name}")
            ]


def _version_sort_key(text: str) -> tuple[int, Any]:
    v = _version(text)
    return (0, text) if v is None else (1, _VersionKey(v))


class _VersionKey:
    __slots__ = ("v",)

    def __init__(self, v: Version) -> None:
        self.v = v

    def __lt__(self, other: _VersionKey) -> bool:
        return bool(self.v < other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _VersionKey) and bool(self.v == other.v)

    __hash__ = None  # type: ignore[assignment]


def _closure(pname: str, uni: _Universe, per_sd: dict[str, dict[str, list[Reason]]]) -> None:
    """include_dependencies: lift only_specs/keep_latest reasons from what kept records need.

    A depends entry is followed once per subdir: following it again from another record of the same
    subdir finds the same candidates, all already lifted, kept, or excluded for good (reasons other
    than only_specs/keep_latest never change here).
    """
    queue: deque[tuple[str, str]] = deque(
        (sd, fn) for sd, recs in uni.records.items() for fn in recs if fn not in per_sd[sd]
    )
    seen: set[tuple[str, str]] = set(queue)
    followed: dict[str, set[str]] = {sd: set() for sd in uni.records}
    while queue:
        sd, fn = queue.popleft()
        done = followed[sd]
        for dep in uni.records[sd][fn].get("depends") or ():
            if dep in done:
                continue
            done.add(dep)
            cands = uni.satisfying(dep)
            if not cands:
                continue
            for csd, cfn in cands:
                if (csd, cfn) in seen or not _eligible(sd, csd):
                    continue
                reasons = per_sd[csd].get(cfn)
                if reasons is None:
                    continue  # already kept, and already queued as a root
                if all(r.criterion in _LAX for r in reasons):
                    del per_sd[csd][cfn]
                    seen.add((csd, cfn))
                    queue.append((csd, cfn))
    del pname


class _Need:
    """One depends entry as needed by the kept records of one subdir (``dependents``).

    It watches one kept candidate: a version group when the spec only constrains name/version (a group
    stays a candidate while any of its records is kept), else a single record. When the watched
    candidate goes, the cursor ``(gi, mi)`` moves on; candidates behind it never come back (the kept set
    only shrinks), so each need scans its candidates at most once over the whole fixpoint.
    """

    __slots__ = ("alive", "dependents", "gi", "groups", "mi", "per_record", "spec", "subdir")

    def __init__(self, subdir: str, spec: _Spec, groups: list[_Group]) -> None:
        self.subdir = subdir
        self.spec = spec
        self.groups = groups
        self.per_record = spec.slow or spec.build_re is not None
        self.gi = 0
        self.mi = 0
        self.alive = True
        self.dependents: list[str] = []


def _prune(  # noqa: PLR0912, PLR0915  # one fixpoint, state kept local on purpose
    uni: _Universe,
    excluded: dict[str, dict[str, list[Reason]]],
    pruners: list[_CompiledPolicy],
) -> None:
    """prune_unsatisfiable to the (unique, greatest) fixpoint, with a worklist.

    Only records that lose the last candidate of a depends entry are revisited. A pruned record's
    reason names its first depends entry (in record order) that nothing in the final kept set
    satisfies.
    """
    records = uni.records
    kept: dict[str, set[str]] = {
        sd: {fn for fn in recs if fn not in excluded[sd]} for sd, recs in records.items()
    }
    protected: dict[str, set[tuple[str, str]]] = {}
    for cp in pruners:
        prot: set[tuple[str, str]] = set()
        for spec in cp.exceptions:
            for sd in records:
                prot.update((sd, fn) for fn in uni.select(spec, sd))
        protected[cp.policy.name] = prot
    # Protected by every pruning policy: never pruned.
    shielded: set[tuple[str, str]] = set.intersection(*protected.values())

    group_of: dict[str, dict[str, _Group]] = {sd: {} for sd in records}
    buckets: dict[tuple[str, str], list[_Group]] = {}

    def bucket(sd: str, name: str) -> list[_Group]:
        key = (sd, name)
        gl = buckets.get(key)
        if gl is None:
            gl = buckets[key] = uni.groups(sd, name)
            keep = kept[sd]
            gof = group_of[sd]
            for g in gl:
                g.watchers = []
                n = 0
                for fn in g.fns:
                    gof[fn] = g
                    if fn in keep:
                        n += 1
                g.kept = n
        return gl

    rec_watchers: dict[tuple[str, str], list[_Need]] = {}

    def advance(need: _Need) -> bool:
        """Move ``need`` to its next kept candidate (from its cursor on) and watch it."""
        spec = need.spec
        gl = need.groups
        gi, mi = need.gi, need.mi
        while gi < len(gl):
            g = gl[gi]
            if g.kept > 0 and spec.version_ok(g.version):
                if not need.per_record:
                    need.gi, need.mi = gi, 0
                    g.watchers.append(need)
                    return True
                sd = g.subdir
                keep = kept[sd]
                recs = records[sd]
                fns = g.fns
                while mi < len(fns):
                    fn = fns[mi]
                    if fn in keep and (
                        spec.matches(recs[fn], sd) if spec.slow else spec.build_ok(recs[fn])
                    ):
                        need.gi, need.mi = gi, mi
                        rec_watchers.setdefault((sd, fn), []).append(need)
                        return True
                    mi += 1
            gi += 1
            mi = 0
        need.gi, need.mi = gi, 0
        need.alive = False
        return False

    # One need per (subdir, depends string) of the kept records.
    needs: dict[str, dict[str, _Need | None]] = {sd: {} for sd in records}
    dead: list[_Need] = []
    for sd, recs in records.items():
        sd_needs = needs[sd]
        excl = excluded[sd]
        elig = uni.eligible_subdirs(sd)
        for fn, rec in recs.items():
            if fn in excl:
                continue
            for dep in rec.get("depends") or ():
                try:
                    need = sd_needs[dep]
                except KeyError:
                    dspec = _dep_spec(dep)
                    if dspec is None or uni.external(dspec):
                        need = None
                    else:
                        need = _Need(
                            sd,
                            dspec,
                            [
                                g
                                for csd in elig
                                for name in dspec.names(uni.by_name[csd])
                                for g in bucket(csd, name)
                            ],
                        )
                        if not advance(need):
                            dead.append(need)
                    sd_needs[dep] = need
                if need is not None:
                    need.dependents.append(fn)

    pruned: list[tuple[str, str]] = []
    stack: list[tuple[str, str]] = []

    def drop_dependents(need: _Need) -> None:
        sd = need.subdir
        keep = kept[sd]
        for fn in need.dependents:
            if fn in keep and (sd, fn) not in shielded:
                keep.discard(fn)
                pruned.append((sd, fn))
                stack.append((sd, fn))

    for need in dead:
        drop_dependents(need)
    while stack:
        key = stack.pop()
        for need in rec_watchers.pop(key, ()):
            need.mi += 1
            if not advance(need):
                drop_dependents(need)
        g = group_of[key[0]].get(key[1])
        if g is not None and g.kept > 0:
            g.kept -= 1
            if g.kept == 0:
                watchers, g.watchers = g.watchers, []
                for need in watchers:
                    need.gi += 1
                    need.mi = 0
                    if not advance(need):
                        drop_dependents(need)

    for sd, fn in pruned:
        sd_needs = needs[sd]
        dep = next(
            d
            for d in records[sd][fn].get("depends") or ()
            if (n := sd_needs[d]) is not None and not n.alive
        )
        pruner = next(cp for cp in pruners if (sd, fn) not in protected[cp.policy.name])
        excluded[sd].setdefault(fn, []).append(
            Reason(pruner.policy.name, "prune_unsatisfiable", f"nothing kept satisfies {dep}")
        )


def evaluate_subdirs(  # noqa: PLR0912
    policies: Sequence[Policy],
    records: Mapping[str, Mapping[str, Record]],
    *,
    context: EvaluationContext,
) -> dict[str, Evaluation]:
    """Evaluate every subdir of a channel together (dependencies resolve across subdir + noarch)."""
    uni = _Universe(records)
    compiled = [_CompiledPolicy(p) for p in policies]
    caches: dict[str, Any] = {}
    excluded: dict[str, dict[str, list[Reason]]] = {sd: {} for sd in records}

    verdicts = context.verdicts
    for sd, recs in records.items():
        for fn in recs:
            if verdicts.is_malicious(fn):
                excluded[sd][fn] = [Reason(MALICIOUS_POLICY, "malicious", "malicious scan verdict")]

    for cp in compiled:
        p = cp.policy
        per_sd: dict[str, dict[str, list[Reason]]] = {}
        for sd in records:
            reasons = _per_record(cp, uni, sd, context, caches)
            if p.keep_latest is not None:
                _keep_latest(p.keep_latest, p.name, records[sd], reasons)
            for spec in cp.exceptions:
                for fn in uni.select(spec, sd):
                    reasons.pop(fn, None)
            # Malicious records are never kept, so they cannot anchor a closure either.
            for fn in excluded[sd]:
                if excluded[sd][fn][0].policy == MALICIOUS_POLICY and fn not in reasons:
                    reasons[fn] = []
            per_sd[sd] = reasons
        if p.include_dependencies:
            _closure(p.name, uni, per_sd)
        for sd, reasons in per_sd.items():
            target = excluded[sd]
            for fn, rs in reasons.items():
                if not rs:
                    continue
                lst = target.get(fn)
                if lst is None:
                    target[fn] = list(rs)
                else:
                    lst.extend(rs)

    pruners = [cp for cp in compiled if cp.policy.prune_unsatisfiable]
    if pruners:
        _prune(uni, excluded, pruners)

    return {
        sd: Evaluation(
            subdir=sd,
            kept={fn for fn in recs if fn not in excluded[sd]},
            excluded=excluded[sd],
        )
        for sd, recs in records.items()
    }


def evaluate(
    policies: Sequence[Policy],
    records: Mapping[str, Record],
    *,
    subdir: str,
    context: EvaluationContext,
    noarch: Mapping[str, Record] | None = None,
) -> Evaluation:
    """Evaluate one subdir's records (``noarch`` records, if given, are evaluated alongside them so
    dependencies can resolve to them; only ``subdir``'s verdict is returned)."""
    by_sd: dict[str, Mapping[str, Record]] = {subdir: records}
    if noarch is not None and subdir != NOARCH:
        by_sd[NOARCH] = noarch
    return evaluate_subdirs(policies, by_sd, context=context)[subdir]


def explain(
    policies: Sequence[Policy],
    records: Mapping[str, Record],
    filename: str,
    context: EvaluationContext,
    *,
    subdir: str,
) -> list[Reason]:
    """Why ``filename`` is not kept (an empty list: it is kept)."""
    if filename not in records:
        raise NotFoundError(
            f"{subdir}/{filename} is not in the upstream records", code="policy:no-record"
        )
    return list(
        evaluate(policies, records, subdir=subdir, context=context).excluded.get(filename, [])
    )
