"""What package validation takes (limits) and gives back (the description of a valid package).

Re-exported by :mod:`stockade.conda.archive`; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

# The decompression ratio is only checked once this much has been unpacked: small packages of
# text compress very well and are no danger.
RATIO_FLOOR: Final = 10 * 1024**2


@dataclass(frozen=True)
class ValidationLimits:
    """Caps applied while reading an untrusted package."""

    max_archive_size: int = 2 * 1024**3  # bytes of the uploaded file
    max_unpacked_size: int = 8 * 1024**3  # total uncompressed bytes of all members
    max_ratio: float = 200.0  # uncompressed/compressed, checked once unpacked > RATIO_FLOOR
    max_info_size: int = 16 * 1024**2  # total size of info/ members
    max_members: int = 200_000
    future_tolerance_s: int = 24 * 3600  # index.json timestamp may be at most this far ahead


@dataclass(frozen=True)
class PathEntry:
    """One file of the package, as ``info/paths.json`` (or ``info/files``) lists it."""

    path: str
    path_type: str  # "hardlink" (a regular file), "softlink" or "directory"
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class PackageInfo:
    """A package that passed validation."""

    filename: str
    format: Literal["conda", "tar.bz2"]
    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    index: dict[str, Any]  # info/index.json as parsed (untouched)
    about: dict[str, Any]  # info/about.json or {}
    run_exports: dict[str, Any]  # info/run_exports.json or {}
    paths: list[PathEntry]  # info/paths.json entries, or derived from info/files (or the members)
    link_scripts: list[str]  # members conda runs at (un)link: bin/.NAME-post-link.sh, ...
    unpacked_size: int  # total bytes of the regular files of the package
    vulns_mitigated: tuple[str, ...] = ()  # info/security.json ``vulns_mitigated``, upper-cased
