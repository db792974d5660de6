"""CVSS base scores computed from vectors with the ``cvss`` library, and SPEC §7 severity bands.

Scores are never taken from a feed on trust: the vector is the assessment, the score follows from
it. :func:`score_vector` finds the version from the vector's prefix (``CVSS:3.0/``, ``CVSS:3.1/``,
``CVSS:4.0/``; none for v2, whose vectors start with ``AV:``), or checks it against the version a
feed states. Any rejection becomes :class:`InvalidVectorError`, which names the vector.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

import cvss as cvss_lib

from stockade.vulns.errors import InvalidVectorError
from stockade.vulns.model import CvssVersion, Score, Severity, severity_band

__all__ = ["Severity", "base_score", "score_vector", "severity_band", "vector_version"]

_PREFIXES = {
    "CVSS:3.0/": CvssVersion.V3_0,
    "CVSS:3.1/": CvssVersion.V3_1,
    "CVSS:4.0/": CvssVersion.V4,
}


def vector_version(vector: str) -> CvssVersion:
    """The CVSS version a vector string is written in."""
    text = vector.strip()
    for prefix, version in _PREFIXES.items():
        if text.startswith(prefix):
            return version
    if text.startswith("CVSS:"):
        raise InvalidVectorError(vector, "unknown CVSS version prefix")
    if text.startswith(("AV:", "(AV:")):
        return CvssVersion.V2
    raise InvalidVectorError(vector, "not a CVSS vector (no CVSS:x.y/ prefix and no AV: metric)")


def base_score(vector: str, version: CvssVersion | str | None = None) -> float:
    """The base score of ``vector``, rounded to one decimal.

    ``version`` is the version a feed states beside the vector, if any; it must agree with the
    vector's own prefix.
    """
    found = vector_version(vector)
    if version is not None and found not in _accepted_versions(vector, version):
        raise InvalidVectorError(vector, f"stated as CVSS {version} but written as CVSS {found}")
    return _computed(vector.strip(), found)


@lru_cache(maxsize=8192)  # feeds repeat a few thousand vectors across their records
def _computed(text: str, found: CvssVersion) -> float:
    if found is CvssVersion.V2 and text.startswith("(") and text.endswith(")"):
        text = text[1:-1]  # NVD's old feeds wrapped v2 vectors in parentheses
    try:
        if found is CvssVersion.V2:
            raw: Decimal | float = cvss_lib.CVSS2(text).base_score
        elif found is CvssVersion.V4:
            raw = cvss_lib.CVSS4(text).base_score
        else:
            raw = cvss_lib.CVSS3(text).base_score
    except cvss_lib.CVSSError as exc:
        raise InvalidVectorError(text, str(exc)) from exc
    return round(float(raw), 1)


def score_vector(
    vector: str,
    *,
    version: CvssVersion | str | None = None,
    source: str = "",
    stated_score: float | None = None,
) -> Score:
    """A :class:`Score` for ``vector`` with its computed base score."""
    computed = base_score(vector, version)
    return Score(
        version=vector_version(vector),
        vector=vector.strip(),
        base_score=computed,
        source=source,
        stated_score=stated_score,
    )


def _accepted_versions(vector: str, version: CvssVersion | str) -> tuple[CvssVersion, ...]:
    """The versions a stated version allows: ``3.1`` only itself, ``3`` or ``V3`` both 3.x."""
    text = str(version).strip().upper().removeprefix("CVSS:").removeprefix("CVSS_").lstrip("V")
    if text == "3":
        return (CvssVersion.V3_0, CvssVersion.V3_1)
    text = {"2": "2.0", "4": "4.0"}.get(text, text)
    try:
        return (CvssVersion(text),)
    except ValueError:
        raise InvalidVectorError(vector, f"unknown CVSS version {version!r}") from None
