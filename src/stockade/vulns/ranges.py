"""Is a conda version affected? Feed ranges evaluated with conda's version ordering.

Versions, from the feed and from the conda package alike, are compared as py-rattler ``Version``
objects after one normalisation (:func:`normalise`), so both sides always get the same treatment.

Semantics per source (all normalised to :class:`~stockade.vulns.model.VersionRange`):

- OSV: ``introduced "0"`` is no lower bound; ``fixed`` and ``limit`` are exclusive ends,
  ``last_affected`` an inclusive end; events are put in version order before they are turned into
  intervals (``feeds.osv``); a version in the explicit ``versions`` list is affected.
- NVD: ``versionStart/End`` ``Including``/``Excluding`` are the bounds as written; a CPE with a
  concrete version and no bounds names exactly that version; ``*`` all versions.
- CVE 5: ``version`` + ``lessThan`` / ``lessThanOrEqual`` is a range from ``version`` (``0`` or
  ``*`` as start: no lower bound; ``*`` as end: no upper bound; ``6.6.*`` as an inclusive end: every
  ``6.6`` version); a lone ``version`` is that version; each carries a status.

Precedence for one affected entry: an exact version entry (lone ``version``, explicit ``versions``)
decides first; then ranges containing the version, where ``unaffected`` wins over ``affected`` (a
narrower ``unaffected`` range carves a back-ported fix out of a wider affected one), and ``unknown``
only counts when nothing else matched; else the entry's ``default_status``. A version or a bound that
rattler cannot parse matches nothing and raises nothing: an unparseable conda version is not affected,
a range with an unparseable bound is skipped.

PEP 440 / semver versus conda ordering, and what :func:`normalise` does about it:

- ``v1.2.3``: conda reads ``v`` as a string component (``v1.0`` < ``0.1``); a leading ``v`` before a
  digit is dropped.
- ``1.0.dev1``: conda puts ``1.0.dev1`` *after* ``1.0rc1`` (``[0, 'dev', 1]`` is a new segment,
  compared with rc's segment by padding); PEP 440 puts dev releases first. ``.dev``/``-dev`` becomes
  ``dev`` glued to the previous segment (``1.0dev1`` < ``1.0rc1`` < ``1.0``, as PEP 440).
- ``1.0-rc1``, ``1.0.rc1``, ``1.0rc.1``, ``1.0.0-rc.1`` (semver): separators around pre-release tags
  are removed; ``alpha``/``beta``/``c``/``pre``/``preview`` are spelt ``a``/``b``/``rc``.
- ``1.0rc1`` < ``1.0`` and ``1.0.post1`` between ``1.0`` and ``1.0.1`` already agree with PEP 440.
- Epochs ``1!2.0`` read the same in both.
- ``1.0rc1`` vs ``1.0.0rc1``: PEP 440 says equal, conda puts the first lower (the tag sits in a
  different segment). Not handled: feeds and conda builds rarely spell one release both ways.
- PEP 440 ``1.0-1`` (implicit post release) is read by conda as ``1.0.1``-like segments; rare, kept.
- Letter releases (OpenSSL ``1.0.1k``, ``1.0.2zd``, libjpeg ``9e``, tzdata ``2024a``): conda reads a
  trailing letter as a pre-release (``1.0.1k`` < ``1.0.1``), which would empty a range such as
  ``[1.0.1, 1.0.1k)``. Outside the PyPI ecosystem a version made only of numbers and a trailing
  ``a``-``z`` or ``za``-``zz`` becomes a post release (``1.0.1k`` -> ``1.0.1.post11``), so
  ``1.0.1`` < ``1.0.1a`` < ``1.0.1k`` < ``1.0.1z`` < ``1.0.1za`` < ``1.0.2``. For PyPI advisories a
  trailing letter keeps its PEP 440 meaning (``1.0a`` is an alpha).
"""

from __future__ import annotations

import re
from functools import lru_cache

from rattler import Version

from stockade.vulns.model import Affected, Status, VersionRange

__all__ = ["affects", "comparable", "normalise", "status_of", "uses_letter_releases"]

_LEADING_V = re.compile(r"^v(?=\d)")
_LETTER_RELEASE = re.compile(r"^(?P<base>\d+(?:\.\d+)*)(?P<letters>z?[a-z])$")
_PRE_WORDS = (
    (re.compile(r"(?<=\d)[-_.]?(alpha)(?=[-_.]?\d|$)"), "a"),
    (re.compile(r"(?<=\d)[-_.]?(beta)(?=[-_.]?\d|$)"), "b"),
    (re.compile(r"(?<=\d)[-_.]?(preview|pre)(?=[-_.]?\d|$)"), "rc"),
    (re.compile(r"(?<=\d)[-_.]?(c)(?=[-_.]?\d)"), "rc"),
)
_PRE_SEPARATORS = re.compile(r"(?<=\d)[-_.](a|b|rc|dev)(?=[-_.]?\d|$)")
_PRE_NUMBER = re.compile(r"(?<=\d)(a|b|rc|dev)[-_.](?=\d)")
_CACHE_SIZE = 1 << 16


def uses_letter_releases(affected: Affected) -> bool:
    """Whether a trailing letter is a release letter (OpenSSL style) for this product."""
    return (affected.ecosystem or "").lower() != "pypi"


def normalise(version: str, *, letter_releases: bool = True) -> str:
    """The spelling of ``version`` that rattler compares the way the feed meant it."""
    text = _LEADING_V.sub("", version.strip().lower())
    letter = _LETTER_RELEASE.fullmatch(text) if letter_releases else None
    if letter is not None:
        letters = letter["letters"]
        rank = ord(letters[-1]) - ord("a") + 1 + (26 if len(letters) == 2 else 0)
        return f"{letter['base']}.post{rank}"
    for pattern, spelling in _PRE_WORDS:
        text = pattern.sub(spelling, text)
    text = _PRE_SEPARATORS.sub(r"\1", text)
    return _PRE_NUMBER.sub(r"\1", text)


@lru_cache(maxsize=_CACHE_SIZE)
def comparable(version: str, *, letter_releases: bool = True) -> Version | None:
    """A rattler ``Version`` for ``version`` after :func:`normalise`; ``None`` when unparseable."""
    text = normalise(version, letter_releases=letter_releases)
    if not text:
        return None
    try:
        return Version(text)
    except Exception:  # noqa: BLE001 - rattler raises its own InvalidVersionError (and ValueError)
        return None


def affects(affected: Affected, version: str) -> bool:
    """True when the conda ``version`` is affected according to ``affected``."""
    return status_of(affected, version) is Status.AFFECTED


def status_of(affected: Affected, version: str) -> Status:
    """The status of ``version`` per the precedence in this module's docstring.

    An unparseable version is :attr:`Status.UNKNOWN` (and so not affected).
    """
    letters = uses_letter_releases(affected)
    wanted = comparable(version, letter_releases=letters)
    if wanted is None:
        return Status.UNKNOWN
    for listed in affected.versions:
        listed_version = comparable(listed, letter_releases=letters)
        if listed_version is not None and listed_version == wanted:
            return Status.AFFECTED
    for rng in affected.ranges:
        if rng.exact and _contains(rng, wanted, letters):
            return rng.status
    found = {r.status for r in affected.ranges if not r.exact and _contains(r, wanted, letters)}
    for status in (Status.UNAFFECTED, Status.AFFECTED, Status.UNKNOWN):
        if status in found:
            return status
    return affected.default_status


def _contains(rng: VersionRange, version: Version, letters: bool) -> bool:
    if rng.start is not None:
        start = comparable(rng.start, letter_releases=letters)
        if start is None:
            return False
        if version < start or (version == start and not rng.start_inclusive):
            return False
    if rng.end is None:
        return True
    return _below_end(rng.end, rng.end_inclusive, version, letters)


def _below_end(end: str, inclusive: bool, version: Version, letters: bool) -> bool:
    if inclusive and end.endswith(".*"):  # CVE 5 ``lessThanOrEqual: "6.6.*"``
        prefix = comparable(end[:-2], letter_releases=letters)
        if prefix is None:
            return False
        return bool(version <= prefix or version.starts_with(prefix))
    bound = comparable(end, letter_releases=letters)
    if bound is None:
        return False
    return bool(version < bound or (inclusive and version == bound))
