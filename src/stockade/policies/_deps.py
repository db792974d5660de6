"""The dependency-aware steps of the policy engine: ``include_dependencies`` and ``prune_unsatisfiable``.

Internal to :mod:`stockade.policies.engine` (see its docstring for the semantics).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from stockade.policies._index import Group, Spec, Universe, dep_spec


def closure(  # noqa: PLR0912  # one worklist, candidates walked by name and version group
    uni: Universe, per_sd: dict[str, dict[str, list[Any]]], lax: Collection[str]
) -> None:
    """include_dependencies: lift ``lax`` reasons (only_specs/keep_latest) from what kept records need.

    ``per_sd[subdir][filename]`` are one policy's reasons; a record without an entry is kept by it.
    A depends entry is followed once per subdir: following it again from another record of the same
    subdir finds the same candidates, all already lifted, kept, or excluded for good (reasons other
    than the lax ones never change here). A lifted record loses its entry, so "no entry" also means
    "already queued".
    """
    records = uni.records
    by_name = uni.by_name
    queue: deque[tuple[str, str]] = deque(
        (sd, fn) for sd, recs in records.items() for fn in recs if fn not in per_sd[sd]
    )
    followed: dict[str, set[str]] = {sd: set() for sd in records}
    elig = {sd: uni.eligible_subdirs(sd) for sd in records}
    while queue:
        sd, fn = queue.popleft()
        done = followed[sd]
        for dep in records[sd][fn].get("depends") or ():
            if dep in done:
                continue
            done.add(dep)
            spec = dep_spec(dep)
            if spec is None or uni.external(spec):
                continue
            slow = spec.slow
            build = spec.build_re is not None
            for csd in elig[sd]:
                idx = by_name[csd]
                reasons_of = per_sd[csd]
                crecs = records[csd]
                for name in spec.names(idx):
                    for vtext, fns in idx[name].items():
                        if not slow and not spec.version_ok(vtext):
                            continue
                        for cfn in fns:
                            reasons = reasons_of.get(cfn)
                            if reasons is None:
                                continue  # kept, or already lifted (and queued)
                            if slow:
                                if not spec.matches(crecs[cfn], csd):
                                    continue
                            elif build and not spec.build_ok(crecs[cfn]):
                                continue
                            if all(r.criterion in lax for r in reasons):
                                del reasons_of[cfn]
                                queue.append((csd, cfn))


class _Need:
    """One depends entry as needed by the kept records of one subdir (``dependents``).

    It watches one kept candidate: a version group when the spec only constrains name/version (a group
    stays a candidate while any of its records is kept), else a single record. When the watched
    candidate goes, the cursor ``(gi, mi)`` moves on; candidates behind it never come back (the kept set
    only shrinks), so each need scans its candidates at most once over the whole fixpoint.
    """

    __slots__ = ("alive", "dependents", "gi", "groups", "mi", "per_record", "spec", "subdir")

    def __init__(self, subdir: str, spec: Spec, groups: list[Group]) -> None:
        self.subdir = subdir
        self.spec = spec
        self.groups = groups
        self.per_record = spec.slow or spec.build_re is not None
        self.gi = 0
        self.mi = 0
        self.alive = True
        self.dependents: list[str] = []


def prune(  # noqa: PLR0912, PLR0915  # one fixpoint, state kept local on purpose
    uni: Universe,
    excluded: Mapping[str, Mapping[str, object]],
    pruners: Sequence[tuple[str, Sequence[Spec]]],
) -> list[tuple[str, str, str, str]]:
    """prune_unsatisfiable to the (unique, greatest) fixpoint, with a worklist.

    Only records that lose the last candidate of a depends entry are revisited. A pruned record's
    reason names its first depends entry (in record order) that nothing in the final kept set
    satisfies. Returns ``(subdir, filename, pruning policy, that depends entry)`` per pruned record.
    """
    records = uni.records
    kept: dict[str, set[str]] = {
        sd: {fn for fn in recs if fn not in excluded[sd]} for sd, recs in records.items()
    }
    protected: dict[str, set[tuple[str, str]]] = {}
    for pname, exceptions in pruners:
        prot: set[tuple[str, str]] = set()
        for spec in exceptions:
            for sd in records:
                prot.update((sd, fn) for fn in uni.select(spec, sd))
        protected[pname] = prot
    # Protected by every pruning policy: never pruned.
    shielded: set[tuple[str, str]] = set.intersection(*protected.values())

    group_of: dict[str, dict[str, Group]] = {sd: {} for sd in records}
    buckets: dict[tuple[str, str], list[Group]] = {}

    def bucket(sd: str, name: str) -> list[Group]:
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
                    dspec = dep_spec(dep)
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

    out: list[tuple[str, str, str, str]] = []
    for sd, fn in pruned:
        sd_needs = needs[sd]
        dep = next(
            d
            for d in records[sd][fn].get("depends") or ()
            if (n := sd_needs[d]) is not None and not n.alive
        )
        pruner = next(pname for pname, _ in pruners if (sd, fn) not in protected[pname])
        out.append((sd, fn, pruner, dep))
    return out
