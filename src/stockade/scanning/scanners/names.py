"""Names one edit or one look-alike character away from a popular or internal name (SPEC §8).

A package name is compared, after folding look-alikes (:func:`skeleton`: Cyrillic and Greek
letters that look Latin, accents, ``rn``→``m``, ``vv``→``w``, ``1``→``l``, ``0``→``o``, and the
separators ``-``/``_``/``.`` made one), with

- the shipped list of popular conda-forge and PyPI names (``data/popular_names.txt``):
  ``names:lookalike-popular``, suspicious;
- the names published in the organisation's own channels (``ScanSubject.known_names``):
  ``names:lookalike-internal``, suspicious.

It is a look-alike when its skeleton equals the other's, or is one Damerau-Levenshtein edit
(insert, delete, substitute, swap two neighbours) from it; but not when it *is* that name or any
popular name, when either name is shorter than 4 characters, or when the two differ only in a
trailing number (``pyqt5``/``pyqt6``, ``boto``/``boto3``, ``clobber-1``/``clobber-2``: versioned
families are normal). Lookup is a deletion-neighbourhood index (every name and each of its
one-character deletions), so one check costs a few dictionary lookups, not a pass over the list.

Limits: a look-alike two edits away, or built from a popular name plus a common word
(``requests-toolbelt2``), is not caught; legitimate but unlisted names one edit from a popular name
(``liblas`` beside ``libblas``) are reported, as suspicious only.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from importlib.resources import files
from typing import Final

from stockade.scanning.interfaces import Finding, Member, ScanSubject, Verdict

NAME: Final = "names"
_LOGIC_REVISION: Final = "1"
MIN_LENGTH: Final = 4
MAX_LENGTH: Final = 128  # longer than any real name: not compared (and its deletions not built)
POPULAR: Final = "names:lookalike-popular"
INTERNAL: Final = "names:lookalike-internal"

# Letters that look Latin, folded to the Latin letter: (look-alikes, Latin letters), in order.
_CYRILLIC: Final = (
    "\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443"
    "\u0445\u0456\u0457\u0458\u0455\u0501\u04bb\u04cf\u051b\u051d\u0261",
    "abeekmhopctyxiijsdhlqwg",
)
_GREEK: Final = (
    "\u03b1\u03b2\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03c9",
    "abeikvoptuxw",
)
_ARMENIAN_AND_LATIN: Final = ("\u0578\u057d\u0131\u0142|", "nuill")
_CONFUSABLES: Final[Mapping[str, str]] = {
    **{
        lookalike: latin
        for pair in (_CYRILLIC, _GREEK, _ARMENIAN_AND_LATIN)
        for lookalike, latin in zip(*pair, strict=True)
    },
    "\u00df": "ss",
}
_MULTI: Final[tuple[tuple[str, str], ...]] = (("rn", "m"), ("vv", "w"))
_DIGITS: Final[Mapping[str, str]] = {"1": "l", "0": "o"}
_SEPARATORS: Final = re.compile(r"[-_.]+")
_TRAILING_NUMBER: Final = re.compile(r"(?<!\d)[-_.]?\d+$")  # from a run's first digit: linear


def skeleton(name: str) -> str:
    """``name`` with look-alike characters and separators folded to one spelling."""
    folded = "".join(_CONFUSABLES.get(ch, ch) for ch in name.lower())
    decomposed = unicodedata.normalize("NFKD", folded)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = "".join(_CONFUSABLES.get(ch, ch) for ch in text.lower())
    text = _SEPARATORS.sub("-", text)
    for pair, single in _MULTI:
        text = text.replace(pair, single)
    return "".join(_DIGITS.get(ch, ch) for ch in text)


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def within_one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are at most one Damerau-Levenshtein edit apart."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long_ = (a, b) if la < lb else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


class NameIndex:
    """Names, found by any string one edit (after :func:`skeleton`) from them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names: frozenset[str] = frozenset(name.lower() for name in names)
        self._by_key: dict[str, set[str]] = defaultdict(set)
        for name in self.names:
            if not MIN_LENGTH <= len(name) <= MAX_LENGTH:
                continue
            key = skeleton(name)
            self._by_key[key].add(name)
            for deleted in _deletions(key):
                self._by_key[deleted].add(name)

    def lookalikes(self, name: str) -> list[str]:
        """The indexed names ``name`` imitates, closest first (none when it is one of them)."""
        name = name.lower()
        if name in self.names or not MIN_LENGTH <= len(name) <= MAX_LENGTH:
            return []
        key = skeleton(name)
        candidates: set[str] = set()
        for probe in {key, *_deletions(key)}:
            candidates |= self._by_key.get(probe, set())
        found = [
            other
            for other in candidates
            if within_one_edit(key, skeleton(other)) and not _versioned_family(name, other)
        ]
        return sorted(found, key=lambda other: (skeleton(other) != key, other))


def _versioned_family(a: str, b: str) -> bool:
    return _TRAILING_NUMBER.sub("", a) == _TRAILING_NUMBER.sub("", b)


def _popular_bytes() -> bytes:
    return files("stockade.scanning").joinpath("data/popular_names.txt").read_bytes()


@cache
def popular_index() -> NameIndex:
    """The index of the shipped popular names (built once per process)."""
    lines = _popular_bytes().decode().splitlines()
    return NameIndex(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=16)
def _internal_index(names: frozenset[str]) -> NameIndex:
    return NameIndex(names)


def _fingerprint() -> str:
    table = repr(
        (sorted(_CONFUSABLES.items()), _MULTI, sorted(_DIGITS.items()), MIN_LENGTH, MAX_LENGTH)
    )
    digest = hashlib.sha256(_popular_bytes() + table.encode()).hexdigest()[:12]
    return f"{_LOGIC_REVISION}+{digest}"


def _finding(rule: str, name: str, other: str, where: str) -> Finding:
    kind = "looks like" if skeleton(name) == skeleton(other) else "is one edit from"
    text = f"{name!a} {kind} the {where} package {other!a}"  # escapes show homoglyphs
    return Finding(NAME, rule, Verdict.SUSPICIOUS, None, text[:200], {"imitates": other})


class NameScanner:
    """Flags package names that imitate a popular or an internal name."""

    name: Final = NAME
    version: Final = _fingerprint()

    def wants(self, path: str) -> bool:
        return False  # the name is all it needs, from the subject

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        return ()

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        name = (subject.name or str(subject.index.get("name", ""))).lower()
        popular = popular_index()
        if not name or name in popular.names:
            return []
        findings: list[Finding] = []
        imitated = popular.lookalikes(name)
        if imitated:
            findings.append(_finding(POPULAR, name, imitated[0], "popular"))
        known = frozenset(n.lower() for n in subject.known_names)
        if known and name not in known:
            internal = _internal_index(known).lookalikes(name)
            if internal:
                findings.append(_finding(INTERNAL, name, internal[0], "internal"))
        return findings
