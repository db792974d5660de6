"""Names of packages, versions, builds, subdirs and artifact files, as CEP 26 defines them.

CEP 26 ("Identifying Packages and Channels in the conda Ecosystem") makes every MUST below an error:

- package name: lowercase ASCII letters, digits, ``-``, ``.``, ``_``; starts with a letter, a digit
  or a single underscore; no two consecutive separators; at most 64 characters;
- version: digits, ``.``, lowercase ASCII letters, ``_``, ``+`` and ``!``; at most 64 characters;
- build string: ``^[a-zA-Z0-9_.+]+$``; at most 64 characters;
- subdir: ``noarch`` or ``{os}-{arch}`` (``^[a-z0-9]+-[a-z0-9]+$``); at most 32 characters;
- filename: ``<name>-<version>-<build>.<extension>``; at most 211 characters.

Each ``validate_*`` function raises :class:`PackageValidationError` with the rule ``name``,
``version``, ``build`` or ``subdir`` and the field named; ``parse_filename`` raises the rule
``filename``.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from stockade.conda.errors import PackageValidationError, printable

MAX_NAME_LENGTH: Final = 64
MAX_VERSION_LENGTH: Final = 64
MAX_BUILD_LENGTH: Final = 64
MAX_SUBDIR_LENGTH: Final = 32
MAX_FILENAME_LENGTH: Final = 211

# CEP 26's regexes, with ``$`` spelled ``\Z`` (Python's ``$`` also matches before a final newline).
NAME_RE: Final = re.compile(r"(([a-z0-9])|([a-z0-9_](?!_)))[._-]?([a-z0-9]+(\.|-|_|\Z))*")
VERSION_RE: Final = re.compile(r"[0-9a-z._+!]+")
BUILD_RE: Final = re.compile(r"[a-zA-Z0-9_.+]+")
SUBDIR_RE: Final = re.compile(r"noarch|[a-z0-9]+-[a-z0-9]+")

Extension = Literal[".conda", ".tar.bz2"]
EXTENSIONS: Final[tuple[Extension, ...]] = (".conda", ".tar.bz2")

_UNSAFE_FILENAME_RE: Final = re.compile(r"[/\\\x00-\x1f\x7f]")


def _check(
    value: object, *, rule: str, field: str, pattern: re.Pattern[str], max_length: int, what: str
) -> str:
    if not isinstance(value, str):
        raise PackageValidationError(rule, f"{field} must be a string", field=field)
    if not value:
        raise PackageValidationError(rule, f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise PackageValidationError(
            rule, f"{field} is longer than {max_length} characters", field=field
        )
    if pattern.fullmatch(value) is None:
        raise PackageValidationError(
            rule, f"{field} {printable(value)!r} is not valid: {what} (CEP 26)", field=field
        )
    return value


def validate_name(value: object, *, field: str = "name") -> str:
    """Return ``value`` if it is a valid distributable package name, else raise ``package:name``."""
    return _check(
        value,
        rule="name",
        field=field,
        pattern=NAME_RE,
        max_length=MAX_NAME_LENGTH,
        what=(
            "use lowercase ASCII letters, digits, '-', '.' and '_', start with a letter, a digit "
            "or a single '_', and never put two separators in a row"
        ),
    )


def validate_version(value: object, *, field: str = "version") -> str:
    """Return ``value`` if it is a valid version string, else raise ``package:version``."""
    return _check(
        value,
        rule="version",
        field=field,
        pattern=VERSION_RE,
        max_length=MAX_VERSION_LENGTH,
        what="use digits, lowercase ASCII letters, '.', '_', '+' and '!'",
    )


def validate_build(value: object, *, field: str = "build") -> str:
    """Return ``value`` if it is a valid build string, else raise ``package:build``."""
    return _check(
        value,
        rule="build",
        field=field,
        pattern=BUILD_RE,
        max_length=MAX_BUILD_LENGTH,
        what="use ASCII letters, digits, '.', '_' and '+'",
    )


def validate_subdir(value: object, *, field: str = "subdir") -> str:
    """Return ``value`` if it is ``noarch`` or ``os-arch``, else raise ``package:subdir``."""
    return _check(
        value,
        rule="subdir",
        field=field,
        pattern=SUBDIR_RE,
        max_length=MAX_SUBDIR_LENGTH,
        what="use 'noarch' or '<os>-<arch>' in lowercase ASCII letters and digits",
    )


def is_valid_name(value: str) -> bool:
    """Whether ``value`` is a valid distributable package name (CEP 26)."""
    return len(value) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(value) is not None


def is_valid_subdir(value: str) -> bool:
    """Whether ``value`` is a valid subdir name (CEP 26)."""
    return len(value) <= MAX_SUBDIR_LENGTH and SUBDIR_RE.fullmatch(value) is not None


def split_extension(filename: str) -> tuple[str, Extension]:
    """Split ``filename`` into its stem and its extension, else raise ``package:filename``."""
    for ext in EXTENSIONS:
        if filename.endswith(ext):
            return filename[: -len(ext)], ext
    raise PackageValidationError(
        "filename",
        f"{printable(filename)!r} is not a conda package filename: it must end with "
        "'.conda' or '.tar.bz2'",
        field="filename",
    )


def parse_filename(filename: str) -> tuple[str, str, str, Extension]:
    """Split ``name-version-build.ext`` into ``(name, version, build, ext)``.

    The stem is split on its last two dashes (a version and a build never contain one). The parts
    are not checked against CEP 26 here: pass them to the ``validate_*`` functions for that.
    Raises :class:`PackageValidationError` with the rule ``filename``.
    """
    if not filename or _UNSAFE_FILENAME_RE.search(filename) is not None:
        raise PackageValidationError(
            "filename",
            f"{printable(filename)!r} is not a plain file name (empty, or has a slash, a backslash "
            "or a control character)",
            field="filename",
        )
    if len(filename) > MAX_FILENAME_LENGTH:
        raise PackageValidationError(
            "filename",
            f"the filename is longer than {MAX_FILENAME_LENGTH} characters",
            field="filename",
        )
    stem, ext = split_extension(filename)
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise PackageValidationError(
            "filename",
            f"{printable(filename)!r} is not of the form <name>-<version>-<build>{ext}",
            field="filename",
        )
    return parts[0], parts[1], parts[2], ext
