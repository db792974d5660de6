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
   - ``signed_only``: keeps the records whose signature the lookup says is verified (a mirror's:
     the upstream ``signatures`` entry checked against the mirror's trusted root, SPEC §8,
     ``stockade.signing.upstream``); each other record's reason is the lookup's why not ("no
     signature", "no trusted root configured for this mirror", "the signature does not match the
     record", "key_mgr metadata expired on …").
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
8. Cost (issue 4: a 10-rule policy over conda-forge's linux-64 within 3x the time of parsing its
   ``repodata.json`` and within its peak memory): the records are indexed once by name and version;
   CVE lookups are made once per ``(name, version)``; reasons are shared :class:`Reason` objects
   (one per distinct detail, e.g. one per day for date reasons), each excluded record only holds its
   own list; the cyclic garbage collector is paused while evaluating (the engine makes no cycles,
   and collections would otherwise walk the caller's hundreds of thousands of record dicts again and
   again). In-memory lookups are read directly rather than through one method call per record.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from heapq import nlargest
from typing import Any, Protocol

from stockade.core.errors import NotFoundError
from stockade.policies import licenses as lic
from stockade.policies._deps import closure, prune
from stockade.policies._index import NameIndex, Spec, Universe, version_sort_key
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
MALICIOUS_POLICY = "scan"


# --------------------------------------------------------------------------------------------- lookups

UNSIGNED = "no valid signature or attestation"


class VulnerabilityLookup(Protocol):
    def max_score(self, name: str, version: str, statuses: frozenset[str]) -> float | None: ...
    def has_uncurated(self, name: str, version: str) -> bool: ...


class SignatureLookup(Protocol):
    def is_signed(self, filename: str) -> bool: ...
    def why_unsigned(self, filename: str) -> str: ...


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

    def version(self) -> str:
        """Changes whenever the data does: mirror runs compare it to know nothing changed."""
        data = repr(sorted((k, sorted(v)) for k, v in self.scores.items()))
        return hashlib.sha256(data.encode()).hexdigest()


@dataclass
class InMemorySignatures:
    signed: set[str] = field(default_factory=set)

    def is_signed(self, filename: str) -> bool:
        return filename in self.signed

    def why_unsigned(self, filename: str) -> str:
        return UNSIGNED


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
        counter: dict[str, int] = {}
        get = counter.get
        last: Reason | None = None  # reasons are shared objects: reuse the key of the previous one
        last_key = ""
        for reasons in self.excluded.values():
            if len(reasons) == 1:
                r = reasons[0]
                if r is not last:
                    last, last_key = r, r.key
                counter[last_key] = get(last_key, 0) + 1
            else:
                for key in {r.key for r in reasons}:
                    counter[key] = get(key, 0) + 1
        return dict(sorted(counter.items(), key=_count_of, reverse=True))

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


def _count_of(item: tuple[str, int]) -> int:
    return item[1]


def timestamp_seconds(value: Any) -> float | None:
    """A repodata ``timestamp`` in seconds (values > 1e11 are milliseconds, like conda)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    ts = float(value)
    return ts / 1000.0 if ts > 1e11 else ts


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


_GC_LOCK = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (re-entrant, across threads; restored by the last one out).

    An evaluation allocates a few objects per record and creates no reference cycles; with the
    collector on, each collection of the oldest generation walks every record dict of the caller.
    """
    global _gc_pauses, _gc_was_enabled  # noqa: PLW0603  # one process-wide switch
    with _GC_LOCK:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


# ----------------------------------------------------------------------------------------- the engine


class _CompiledPolicy:
    """A policy with its specs parsed, and its reasons made once per distinct ``(criterion, detail)``."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.only = [Spec(t) for t in policy.only_specs]
        self.exclude = [Spec(t) for t in policy.exclude_specs]
        self.exceptions = [Spec(t) for t in policy.exceptions]
        self._reasons: dict[tuple[str, str], Reason] = {}

    def reason(self, criterion: str, detail: str) -> Reason:
        key = (criterion, detail)
        r = self._reasons.get(key)
        if r is None:
            r = self._reasons[key] = Reason(self.policy.name, criterion, detail)
        return r


_LAX = frozenset({"only_specs", "keep_latest"})  # reasons include_dependencies may lift


def _vulnerable(
    cp: _CompiledPolicy, uni: Universe, subdir: str, ctx: EvaluationContext, caches: dict[str, Any]
) -> dict[str, tuple[Reason, ...]]:
    """CVE score and uncurated-CVE reasons, per filename, decided once per ``(name, version)``."""
    p = cp.policy
    cve = p.cve_score
    out: dict[str, tuple[Reason, ...]] = {}
    if cve is None and not p.uncurated_cves:
        return out
    cve_cache: dict[tuple[str, str], float | None] = caches.setdefault(f"cve:{id(cp)}", {})
    unc_cache: dict[tuple[str, str], bool] = caches.setdefault("uncurated", {})
    vulns = ctx.vulnerabilities
    idx = uni.by_name[subdir]
    recs = uni.records[subdir]

    def verdict(nv: tuple[str, str]) -> tuple[Reason, ...]:
        found: list[Reason] = []
        if cve is not None:
            if nv in cve_cache:
                score = cve_cache[nv]
            else:
                score = cve_cache[nv] = vulns.max_score(nv[0], nv[1], cve.statuses)
            if score is not None and cve.exceeded_by(score):
                found.append(
                    cp.reason("cve_score", f"CVSS {score:g} {cve.operator} {cve.threshold:g}")
                )
        if p.uncurated_cves:
            unc = unc_cache.get(nv)
            if unc is None:
                unc = unc_cache[nv] = vulns.has_uncurated(nv[0], nv[1])
            if unc:
                found.append(
                    cp.reason("uncurated_cves", "has vulnerabilities still reported (uncurated)")
                )
        return tuple(found)

    if not uni.lower_names[subdir]:
        # Some name is not lower case: look up each record's own name, as written.
        for fn, rec in recs.items():
            found = verdict((str(rec.get("name", "")), str(rec.get("version", ""))))
            if found:
                out[fn] = found
        return out
    if type(vulns) is InMemoryVulnerabilities and len(vulns.scores) < len(recs):
        # Few known vulnerable (name, version) pairs: walk them instead of every version.
        for nv in vulns.scores:
            fns = idx.get(nv[0], {}).get(nv[1]) if isinstance(nv, tuple) and len(nv) == 2 else None
            if fns:
                found = verdict(nv)
                if found:
                    out.update(dict.fromkeys(fns, found))
        return out
    for name, versions in idx.items():
        for vtext, fns in versions.items():
            found = verdict((name, vtext))
            if found:
                out.update(dict.fromkeys(fns, found))
    return out


def _per_record(  # noqa: PLR0912, PLR0915  # the hot loop: one pass, criteria inlined on purpose
    cp: _CompiledPolicy, uni: Universe, subdir: str, ctx: EvaluationContext, caches: dict[str, Any]
) -> dict[str, list[Reason]]:
    p = cp.policy
    reason = cp.reason
    recs = uni.records[subdir]
    out: dict[str, list[Reason]] = {}

    # Platforms decide for a whole subdir at once.
    if p.platforms is not None:
        named = subdir in p.platforms
        if subdir == NOARCH and not named:
            ok = True
        else:
            ok = named if p.platforms_mode is SetMode.IN else not named
        if not ok:
            r = reason(
                "platforms",
                f"{subdir} not in {', '.join(p.platforms)}"
                if p.platforms_mode is SetMode.IN
                else f"{subdir} excluded",
            )
            out = {fn: [r] for fn in recs}

    # Specs work on name buckets.
    for spec in cp.exclude:
        r = reason("exclude_specs", f"matches {spec.text}")
        for fn in uni.select(spec, subdir):
            lst = out.get(fn)
            if lst is None:
                out[fn] = [r]
            else:
                lst.append(r)
    only: set[str] | None = None
    only_r = reason("only_specs", "matches none of " + ", ".join(p.only_specs))
    if cp.only:
        only = set()
        for spec in cp.only:
            only |= uni.select(spec, subdir)

    fams = p.licenses
    lic_mode = p.licenses_mode
    lic_cache: dict[tuple[Any, Any], Reason | None] = caches.setdefault(f"lic:{id(cp)}", {})
    t_from = p.date_from.timestamp() if p.date_from else None
    t_to = p.date_to.timestamp() if p.date_to else None
    cooldown_after = (
        ctx.now.timestamp() - p.cooldown_days * 86400.0 if p.cooldown_days is not None else None
    )
    want_dates = t_from is not None or t_to is not None or cooldown_after is not None
    no_ts_r = reason("date_window", "no timestamp")
    day_reasons: dict[tuple[int, int], Reason] = {}

    def dated(kind: int, ts: float) -> Reason:
        """The date reason of ``kind`` (0 before, 1 after, 2 cooldown) for ``ts``, shared per day."""
        in_day = ts % 86400.0
        key = (kind, int(ts // 86400.0))
        r = day_reasons.get(key) if 0.001 < in_day < 86399.999 else None
        if r is None:
            if kind == 0:
                assert t_from is not None
                r = reason("date_window", f"published {_iso(ts)} before {_iso(t_from)}")
            elif kind == 1:
                assert t_to is not None
                r = reason("date_window", f"published {_iso(ts)} after {_iso(t_to)}")
            else:
                r = reason(
                    "cooldown", f"published {_iso(ts)}, less than {p.cooldown_days:g} days ago"
                )
            day_reasons[key] = r
        return r

    vulnerable = _vulnerable(cp, uni, subdir, ctx, caches)
    is_signed: Callable[[str], bool] | None = None
    why_unsigned: Callable[[str], str] | None = None
    if p.signed_only:
        sigs = ctx.signatures
        if type(sigs) is InMemorySignatures:
            is_signed = sigs.signed.__contains__
        else:
            is_signed, why_unsigned = sigs.is_signed, sigs.why_unsigned
    has_scripts: Callable[[str], bool | None] | None = None
    if p.no_link_scripts:
        ls = ctx.link_scripts
        has_scripts = ls.scripts.get if type(ls) is InMemoryLinkScripts else ls.has_link_scripts
    if not (
        only is not None
        or fams is not None
        or want_dates
        or vulnerable
        or is_signed is not None
        or has_scripts is not None
    ):
        return out

    signed_r = reason("signed_only", UNSIGNED)
    scripts_r = reason("no_link_scripts", "has pre-link, post-link or pre-unlink scripts")
    for fn, rec in recs.items():
        new: list[Reason] | None = None
        if only is not None and fn not in only:
            new = [only_r]
        if fams is not None:
            key = (rec.get("license_family"), rec.get("license"))
            try:
                lr = lic_cache[key]
            except KeyError:
                alts = lic.family_alternatives(*key)
                lr = (
                    None
                    if lic.passes(alts, fams, lic_mode)
                    else reason("licenses", lic.refusal(alts, fams, lic_mode))
                )
                lic_cache[key] = lr
            if lr is not None:
                if new is None:
                    new = [lr]
                else:
                    new.append(lr)
        if want_dates:
            raw = rec.get("timestamp")
            ts: float | None
            if raw.__class__ is int or raw.__class__ is float:
                ts = float(raw)
                if ts > 1e11:
                    ts /= 1000.0
            else:
                ts = timestamp_seconds(raw)
            if ts is None:
                if t_from is not None or t_to is not None:
                    if new is None:
                        new = [no_ts_r]
                    else:
                        new.append(no_ts_r)
            else:
                if t_from is not None and ts < t_from:
                    if new is None:
                        new = [dated(0, ts)]
                    else:
                        new.append(dated(0, ts))
                if t_to is not None and ts > t_to:
                    if new is None:
                        new = [dated(1, ts)]
                    else:
                        new.append(dated(1, ts))
                if cooldown_after is not None and ts > cooldown_after:
                    if new is None:
                        new = [dated(2, ts)]
                    else:
                        new.append(dated(2, ts))
        if vulnerable:
            found = vulnerable.get(fn)
            if found is not None:
                if new is None:
                    new = list(found)
                else:
                    new.extend(found)
        if is_signed is not None and not is_signed(fn):
            sr = signed_r if why_unsigned is None else reason("signed_only", why_unsigned(fn))
            if new is None:
                new = [sr]
            else:
                new.append(sr)
        if has_scripts is not None and has_scripts(fn):
            if new is None:
                new = [scripts_r]
            else:
                new.append(scripts_r)
        if new is not None:
            lst = out.get(fn)
            if lst is None:
                out[fn] = new
            else:
                lst.extend(new)
    return out


def _keep_latest(cp: _CompiledPolicy, n: int, idx: NameIndex, reasons: dict[str, Any]) -> None:
    """Among the records without a reason, keep the ``n`` newest versions of each name."""
    for name, versions in idx.items():
        if len(versions) <= n:
            continue  # never more than n versions to choose from
        live = [v for v, fns in versions.items() if any(fn not in reasons for fn in fns)]
        if len(live) <= n:
            continue
        newest = set(nlargest(n, live, key=version_sort_key))
        r = cp.reason("keep_latest", f"not among the {n} newest versions of {name}")
        for v in live:
            if v not in newest:
                for fn in versions[v]:
                    if fn not in reasons:
                        reasons[fn] = [r]


def evaluate_subdirs(
    policies: Sequence[Policy],
    records: Mapping[str, Mapping[str, Record]],
    *,
    context: EvaluationContext,
) -> dict[str, Evaluation]:
    """Evaluate every subdir of a channel together (dependencies resolve across subdir + noarch)."""
    with _gc_paused():
        return _evaluate_subdirs(policies, records, context)


def _evaluate_subdirs(  # noqa: PLR0912
    policies: Sequence[Policy],
    records: Mapping[str, Mapping[str, Record]],
    context: EvaluationContext,
) -> dict[str, Evaluation]:
    uni = Universe(records)
    compiled = [_CompiledPolicy(p) for p in policies]
    caches: dict[str, Any] = {}
    excluded: dict[str, dict[str, list[Reason]]] = {sd: {} for sd in records}
    # Entries whose first reason is the malicious verdict's (they cannot anchor a closure).
    first_scan: dict[str, list[str]] = {sd: [] for sd in records}

    verdicts = context.verdicts
    malicious = Reason(MALICIOUS_POLICY, "malicious", "malicious scan verdict")
    for sd, recs in records.items():
        if type(verdicts) is InMemoryVerdicts:
            if not verdicts.malicious:
                continue
            is_malicious: Callable[[str], bool] = verdicts.malicious.__contains__
        else:
            is_malicious = verdicts.is_malicious
        for fn in recs:
            if is_malicious(fn):
                excluded[sd][fn] = [malicious]
                first_scan[sd].append(fn)

    for cp in compiled:
        p = cp.policy
        per_sd: dict[str, dict[str, list[Reason]]] = {}
        for sd in records:
            reasons = _per_record(cp, uni, sd, context, caches)
            if p.keep_latest is not None:
                _keep_latest(cp, p.keep_latest, uni.by_name[sd], reasons)
            for spec in cp.exceptions:
                for fn in uni.select(spec, sd):
                    reasons.pop(fn, None)
            # Malicious records are never kept, so they cannot anchor a closure either.
            for fn in first_scan[sd]:
                if fn not in reasons:
                    reasons[fn] = []
            per_sd[sd] = reasons
        if p.include_dependencies:
            closure(uni, per_sd, _LAX)
        for sd, reasons in per_sd.items():
            target = excluded[sd]
            scan_first = first_scan[sd]
            for fn, rs in reasons.items():
                if not rs:
                    continue
                lst = target.get(fn)
                if lst is None:
                    target[fn] = rs  # the lists of ``reasons`` are this evaluation's own
                    if rs[0].policy == MALICIOUS_POLICY:
                        scan_first.append(fn)
                else:
                    lst.extend(rs)

    pruners = [(cp.policy.name, cp.exceptions) for cp in compiled if cp.policy.prune_unsatisfiable]
    if pruners:
        shared: dict[tuple[str, str], Reason] = {}
        for sd, fn, pname, dep in prune(uni, excluded, pruners):
            r = shared.get((pname, dep))
            if r is None:
                r = shared[(pname, dep)] = Reason(
                    pname, "prune_unsatisfiable", f"nothing kept satisfies {dep}"
                )
            excluded[sd].setdefault(fn, []).append(r)

    return {
        sd: Evaluation(subdir=sd, kept=recs.keys() - excluded[sd].keys(), excluded=excluded[sd])
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
