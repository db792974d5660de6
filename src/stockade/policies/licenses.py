"""License families of a record (SPEC §6, ``licenses`` criterion).

A record's license is described as a list of *alternatives* (the OR branches of the expression), each a
frozenset of families that all apply together (the AND terms). ``MIT OR Apache-2.0`` is
``[{mit}, {apache}]``; ``MIT AND BSD-3-Clause`` is ``[{mit, bsd}]``.

Decisions:

- ``license_family`` wins when present (normalised: ``GPL3``→gpl3, ``Public-Domain``→public_domain, ...).
  A bare ``GPL`` family (or an unversioned GPL licence) is read conservatively as *both* gpl2 and gpl3
  (one alternative ``{gpl2, gpl3}``); ``CC`` is ``other`` (``CC0`` is public_domain).
- Otherwise the SPDX expression in ``license`` is parsed with ``license-expression`` and brought into
  disjunctive normal form. A non-SPDX string (e.g. R's ``GPL-2 | GPL-3`` or ``MIT + file LICENSE``) is
  split on ``|`` / `` OR `` into alternatives and each is scanned for known licence names.
- Missing/empty ``license`` and ``license_family`` → ``none``; an unrecognised licence → ``other``.
- Evaluation (:func:`passes`): a record passes iff *some* alternative is acceptable, where an alternative
  is acceptable iff none of its families is excluded (``not_in``), or all of its families are allowed
  (``in``). Hence for ``not_in``: an AND is dropped if ANY of its families is excluded, an OR is dropped
  only if ALL its alternatives are.
- Results are cached per distinct ``(license_family, license)`` pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from license_expression import (  # type: ignore[import-untyped]  # ships no type information
    ExpressionError,
    get_spdx_licensing,
)

from stockade.policies.model import LicenseFamily, SetMode

__all__ = ["Alternatives", "describe", "families_of", "family_alternatives", "passes"]

Alternatives = tuple[frozenset[str], ...]

_F = LicenseFamily
_MAX_ALTERNATIVES = 64

_FAMILY_FIELD: dict[str, tuple[str, ...]] = {
    "AGPL": (_F.AGPL,),
    "AGPL3": (_F.AGPL,),
    "LGPL": (_F.LGPL,),
    "GPL": (_F.GPL2, _F.GPL3),
    "GPL2": (_F.GPL2,),
    "GPL3": (_F.GPL3,),
    "BSD": (_F.BSD,),
    "MIT": (_F.MIT,),
    "APACHE": (_F.APACHE,),
    "PSF": (_F.PSF,),
    "PYTHON": (_F.PSF,),
    "MOZILLA": (_F.MOZILLA,),
    "MPL": (_F.MOZILLA,),
    "PUBLIC-DOMAIN": (_F.PUBLIC_DOMAIN,),
    "PUBLICDOMAIN": (_F.PUBLIC_DOMAIN,),
    "PROPRIETARY": (_F.PROPRIETARY,),
    "OTHER": (_F.OTHER,),
    "CC": (_F.OTHER,),
    "NONE": (_F.NONE,),
    "": (_F.NONE,),
}

_MIT_RE = re.compile(r"(?<![A-Z])(MIT|X11|EXPAT)(?![A-Z])")
_VERSION_RE = re.compile(r"GPL[^0-9]*([0-9])")


def _families_of_key(key: str) -> frozenset[str]:  # noqa: PLR0911, PLR0912  # a flat keyword table
    """Families of a single licence name (an SPDX id or free text)."""
    k = key.upper()
    if "AGPL" in k or "AFFERO" in k:
        return frozenset({_F.AGPL})
    if "LGPL" in k or "LESSER GENERAL" in k or "LIBRARY GENERAL" in k:
        return frozenset({_F.LGPL})
    if "GPL" in k or "GENERAL PUBLIC" in k:
        m = _VERSION_RE.search(k.replace("GENERAL PUBLIC LICENSE", "GPL"))
        if m and m.group(1) == "2":
            return frozenset({_F.GPL2})
        if m and m.group(1) == "3":
            return frozenset({_F.GPL3})
        return frozenset({_F.GPL2, _F.GPL3})  # unversioned (or v1): conservatively both
    if "MPL" in k or "MOZILLA" in k:
        return frozenset({_F.MOZILLA})
    if "APACHE" in k:
        return frozenset({_F.APACHE})
    if "PSF" in k or "PYTHON" in k:
        return frozenset({_F.PSF})
    if "BSD" in k:
        return frozenset({_F.BSD})
    if _MIT_RE.search(k):
        return frozenset({_F.MIT})
    if "CC0" in k or "UNLICENSE" in k or "PUBLIC DOMAIN" in k or "PUBLIC-DOMAIN" in k:
        return frozenset({_F.PUBLIC_DOMAIN})
    if "PROPRIETARY" in k or "COMMERCIAL" in k:
        return frozenset({_F.PROPRIETARY})
    if k.strip() in ("NONE", "NOASSERTION"):
        return frozenset({_F.NONE})
    return frozenset({_F.OTHER})


_licensing = get_spdx_licensing()


def _dnf(node: Any) -> list[frozenset[str]]:
    name = type(node).__name__
    if name == "OR":
        alts: list[frozenset[str]] = []
        for arg in node.args:
            alts.extend(_dnf(arg))
        return alts[:_MAX_ALTERNATIVES]
    if name == "AND":
        acc: list[frozenset[str]] = [frozenset()]
        for arg in node.args:
            acc = [a | b for a in acc for b in _dnf(arg)][:_MAX_ALTERNATIVES]
        return acc
    if name == "LicenseWithExceptionSymbol":
        return [_families_of_key(str(node.license_symbol.key))]
    return [_families_of_key(str(getattr(node, "key", node)))]


# Leading blanks from where they start only (``(?<!\s)``): linear in a long run of them.
_SPLIT_OR = re.compile(r"(?<!\s)\s*\|\s*|(?<!\s)\s+OR\s+", re.IGNORECASE)
_SPLIT_AND = re.compile(r"(?<!\s)\s*(?:\+|&|\bAND\b)\s*", re.IGNORECASE)
_FILE_REF = re.compile(r"\bfile\s+LICEN[CS]E\b", re.IGNORECASE)


def _free_text(text: str) -> list[frozenset[str]]:
    alts: list[frozenset[str]] = []
    for part in _SPLIT_OR.split(text):
        cleaned = _FILE_REF.sub("", part).strip(" +&,()")
        if not cleaned:
            continue  # "| file LICENSE" adds no alternative of its own
        terms = [t for t in _SPLIT_AND.split(cleaned) if t]
        fams: set[str] = set()
        for term in terms:
            fams |= _families_of_key(term)
        alts.append(frozenset(fams or {_F.OTHER}))
    return alts or [frozenset({_F.OTHER})]


@lru_cache(maxsize=65536)
def family_alternatives(license_family: str | None, license: str | None) -> Alternatives:
    """The licence families of a record as OR-alternatives of AND-sets (cached per distinct pair)."""
    if license_family is not None and license_family.strip():
        key = license_family.strip().upper().replace("_", "-").replace(" ", "-")
        fams = _FAMILY_FIELD.get(key)
        if fams is None:
            return (_families_of_key(license_family),)
        return (frozenset(fams),)
    if license is None or not license.strip():
        return (frozenset({_F.NONE}),)
    text = license.strip()
    try:
        parsed = _licensing.parse(text)
    except (ExpressionError, ValueError, TypeError):  # non-SPDX text
        parsed = None
    alts = _dnf(parsed) if parsed is not None else _free_text(text)
    # Deduplicate, keep order.
    seen: dict[frozenset[str], None] = dict.fromkeys(a for a in alts if a)
    return tuple(seen) or (frozenset({_F.OTHER}),)


def families_of(license_family: str | None, license: str | None) -> frozenset[str]:
    """Every family mentioned by a record's licence (flattened)."""
    out: set[str] = set()
    for alt in family_alternatives(license_family, license):
        out |= alt
    return frozenset(out)


def passes(alternatives: Alternatives, families: frozenset[str], mode: SetMode) -> bool:
    """Whether a licence (as alternatives) passes a ``licenses`` criterion."""
    if mode is SetMode.NOT_IN:
        return any(not (alt & families) for alt in alternatives)
    return any(alt <= families for alt in alternatives)


def describe(alternatives: Iterable[frozenset[str]]) -> str:
    """``gpl3``, ``mit or apache``, ``bsd and mit`` — for reasons."""
    return " or ".join(" and ".join(sorted(alt)) for alt in alternatives)


def refusal(alternatives: Alternatives, families: frozenset[str], mode: SetMode) -> str:
    """Why a licence fails a ``licenses`` criterion, naming only the families that fail it
    (under ``not_in`` the listed families each alternative has, under ``in`` the families each
    alternative has that are not listed), then the whole licence when it says more."""
    if mode is SetMode.NOT_IN:
        bad = describe(_unique([alt & families for alt in alternatives]))
        text = f"{bad} not allowed"
    else:
        bad = describe(_unique([alt - families for alt in alternatives]))
        text = f"{bad} not in {', '.join(sorted(families))}"
    whole = describe(alternatives)
    return text if whole == bad else f"{text} (licence: {whole})"


def _unique(sets: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    return list(dict.fromkeys(s for s in sets if s))
