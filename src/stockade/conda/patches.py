"""Repodata patch instructions ("hot-fixes"), with conda-index semantics.

A patch instructions document (conda-build / conda-index ``patch_instructions.json``)::

    {"patch_instructions_version": 1,
     "packages": {"<fn>.tar.bz2": {"depends": [...], "license": null, ...}},
     "packages.conda": {"<fn>.conda": {...}},
     "revoke": ["<fn>", ...],
     "remove": ["<fn>", ...]}

Applied in conda-index's order (``conda_index.index._apply_instructions``):

1. ``packages`` patches update the ``.tar.bz2`` records, then the same patches update the
   ``.conda`` twin (same stem) when it exists;
2. ``packages.conda`` patches update ``.conda`` records;
3. ``revoke``: the record (and, for a ``.tar.bz2`` name, its ``.conda`` twin) gets
   ``"revoked": true`` and ``package_has_been_revoked`` appended to ``depends``;
4. ``remove``: the record (and the ``.conda`` twin of a ``.tar.bz2`` name) leaves the index and its
   filename goes to ``removed`` (only filenames that were present).

A patch only touches records that exist; a field patch sets the field, replacing lists, merging
nested objects key by key, and a ``null`` value removes the field.

Deliberate differences from conda-index, each safer for clients:

- a ``null`` for a field the record lacks leaves it absent (conda-index writes ``null``, which
  strict parsers such as rattler reject for list fields);
- revocation does not add a second ``package_has_been_revoked`` and creates ``depends`` if absent;
- patch values are copied per record (conda-index shares one list between a ``.tar.bz2`` record and
  its ``.conda`` twin, so revoking both appends the marker twice);
- fields that identify or verify an artifact (name, version, build, hashes, size, ...) cannot be
  patched, and malformed documents are refused with ``patch:invalid`` instead of being ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stockade.conda.patch_values import MAX_KEY_LENGTH, value_problem
from stockade.conda.records import ARTIFACT_FACT_KEYS
from stockade.conda.repodata import decode_record, encode_record
from stockade.core.errors import InvalidInputError

PATCH_INSTRUCTIONS_VERSION = 1
REVOKED_DEPENDENCY = "package_has_been_revoked"
TAR_BZ2 = ".tar.bz2"
CONDA = ".conda"

PACKAGES = "packages"
PACKAGES_CONDA = "packages.conda"
_TOP_LEVEL_KEYS = frozenset(
    {"patch_instructions_version", PACKAGES, PACKAGES_CONDA, "revoke", "remove"}
)

#: Fields a patch may not change: they name the artifact or vouch for its bytes.
PROTECTED_FIELDS = frozenset(
    {
        "name",
        "version",
        "build",
        "build_number",
        "subdir",
        "fn",
        "url",
        "channel",
    }
    | ARTIFACT_FACT_KEYS
)


#: As long as the patches table's filename column (a longer name is no stored file's).
MAX_FILENAME_LENGTH = 512


class PatchInvalidError(InvalidInputError):
    code = "patch:invalid"
    title = "Invalid patch instructions"


def _fail(detail: str, **extra: Any) -> PatchInvalidError:
    return PatchInvalidError(detail, code="patch:invalid", **extra)


def conda_twin(filename: str) -> str | None:
    """The ``.conda`` filename sharing a ``.tar.bz2`` filename's stem, else None."""
    if filename.endswith(TAR_BZ2):
        return filename[: -len(TAR_BZ2)] + CONDA
    return None


@dataclass
class PatchInstructions:
    """One subdir's patch instructions. Filename keys; see the module docstring for semantics."""

    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages_conda: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoke: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PatchInstructions:
        """Validate a ``patch_instructions.json`` document; refuse with ``patch:invalid``."""
        if not isinstance(doc, Mapping):
            raise _fail("patch instructions must be a JSON object")
        unknown = sorted(set(doc) - _TOP_LEVEL_KEYS)
        if unknown:
            raise _fail(
                f"unknown top-level key(s): {', '.join(map(str, unknown))}",
                field=unknown,
            )
        version = doc.get("patch_instructions_version", PATCH_INSTRUCTIONS_VERSION)
        if type(version) is not int or not 0 <= version <= PATCH_INSTRUCTIONS_VERSION:
            raise _fail(
                f"unsupported patch_instructions_version {version!r}; "
                f"supported: up to {PATCH_INSTRUCTIONS_VERSION}",
                field="patch_instructions_version",
            )
        return cls(
            packages=_parse_record_patches(doc.get(PACKAGES), PACKAGES, TAR_BZ2),
            packages_conda=_parse_record_patches(doc.get(PACKAGES_CONDA), PACKAGES_CONDA, CONDA),
            revoke=_parse_filenames(doc.get("revoke"), "revoke"),
            remove=_parse_filenames(doc.get("remove"), "remove"),
        )

    def to_json(self) -> dict[str, Any]:
        """The document form, as conda-index and rattler read it."""
        return {
            "patch_instructions_version": PATCH_INSTRUCTIONS_VERSION,
            PACKAGES: copy.deepcopy(self.packages),
            PACKAGES_CONDA: copy.deepcopy(self.packages_conda),
            "revoke": list(self.revoke),
            "remove": list(self.remove),
        }

    def merged(self, other: PatchInstructions) -> PatchInstructions:
        """Combine with ``other`` (a later layer): its field values win, lists are unioned.

        Applying the result equals applying ``self`` then ``other``, except that revocation always
        happens after every field patch, so a later ``depends`` patch cannot drop the marker.
        """
        return PatchInstructions(
            packages=_merge_record_patches(self.packages, other.packages),
            packages_conda=_merge_record_patches(self.packages_conda, other.packages_conda),
            revoke=_union(self.revoke, other.revoke),
            remove=_union(self.remove, other.remove),
        )

    def is_empty(self) -> bool:
        return not (self.packages or self.packages_conda or self.revoke or self.remove)


def _parse_record_patches(value: Any, section: str, suffix: str) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(f"{section!r} must be an object of filename -> fields", field=section)
    patches: dict[str, dict[str, Any]] = {}
    for filename, patch in value.items():
        _check_filename(filename, section, suffix)
        if not isinstance(patch, Mapping):
            raise _fail(f"{section}[{filename!r}] must be an object of fields", field=filename)
        for key, field_value in patch.items():
            _check_field(section, filename, key, field_value)
        patches[filename] = copy.deepcopy(dict(patch))
    return patches


def _check_filename(filename: Any, section: str, suffix: str | None) -> None:
    named = isinstance(filename, str) and 0 < len(filename) <= MAX_FILENAME_LENGTH
    if not named or not filename.isprintable() or "/" in filename or "\\" in filename:
        raise _fail(f"{section}: {filename!r} is not a package filename", field=section)
    allowed = (suffix,) if suffix else (TAR_BZ2, CONDA)
    if not filename.endswith(allowed):
        raise _fail(
            f"{section}: {filename!r} must end with {' or '.join(allowed)}",
            field=section,
            filename=filename,
        )


def _check_field(section: str, filename: str, key: Any, value: Any) -> None:
    where = f"{section}[{filename!r}]"
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise _fail(f"{where}: field names must be short printable strings", filename=filename)
    if key in PROTECTED_FIELDS:
        raise _fail(f"{where}: field {key!r} cannot be patched", filename=filename, field=key)
    if value is None:
        return
    problem = value_problem(key, value)
    if problem:
        raise _fail(f"{where}: {key!r} {problem}", filename=filename, field=key)


def _parse_filenames(value: Any, section: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"{section!r} must be a list of filenames", field=section)
    for filename in value:
        _check_filename(filename, section, None)
    return _union(value, [])


def _union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _merge_values(base: Any, new: Any) -> Any:
    """Combine two patch values for one field; ``None`` is kept (it still means "remove")."""
    if isinstance(base, dict) and isinstance(new, dict):
        merged = dict(base)
        for key, value in new.items():
            merged[key] = (
                _merge_values(merged[key], value) if key in merged else copy.deepcopy(value)
            )
        return merged
    return copy.deepcopy(new)


def _merge_record_patches(
    base: Mapping[str, dict[str, Any]], new: Mapping[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    merged = copy.deepcopy(dict(base))
    for filename, patch in new.items():
        target = merged.setdefault(filename, {})
        for key, value in patch.items():
            target[key] = (
                _merge_values(target[key], value) if key in target else copy.deepcopy(value)
            )
    return merged


def patch_record(record: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Apply one record patch in place (conda-index ``merge_or_update_dict(merge=False)``)."""
    for key, value in patch.items():
        current = record.get(key)
        if value is None:
            record.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(current, dict):
            patch_record(current, value)
        elif isinstance(value, Mapping):
            record[key] = {k: copy.deepcopy(v) for k, v in value.items() if v is not None}
        else:
            record[key] = copy.deepcopy(value)


def revoke_record(record: dict[str, Any]) -> None:
    """Mark a record revoked: ``revoked: true`` and an unsatisfiable dependency."""
    record["revoked"] = True
    depends = record.get("depends")
    if not isinstance(depends, list):
        depends = record["depends"] = []
    if REVOKED_DEPENDENCY not in depends:
        depends.append(REVOKED_DEPENDENCY)


class _PatchRun:
    """Records of one subdir during patching: decoded lazily, re-encoded only when touched."""

    def __init__(self, tar_bz2: Mapping[str, bytes], conda: Mapping[str, bytes]) -> None:
        self.stores: dict[str, dict[str, bytes]] = {
            PACKAGES: dict(tar_bz2),
            PACKAGES_CONDA: dict(conda),
        }
        self.decoded: dict[tuple[str, str], dict[str, Any]] = {}
        self.removed: set[str] = set()

    def record(self, section: str, filename: str | None) -> dict[str, Any] | None:
        if filename is None or filename not in self.stores[section]:
            return None
        key = (section, filename)
        if key not in self.decoded:
            self.decoded[key] = decode_record(self.stores[section][filename])
        return self.decoded[key]

    def targets(self, filename: str) -> list[tuple[str, str]]:
        """The (section, filename) entries a revoke/remove of ``filename`` reaches."""
        twin = conda_twin(filename)
        if twin is None:
            return [(PACKAGES_CONDA, filename)]
        return [(PACKAGES, filename), (PACKAGES_CONDA, twin)]

    def remove(self, section: str, filename: str) -> None:
        if self.stores[section].pop(filename, None) is not None:
            self.decoded.pop((section, filename), None)
            self.removed.add(filename)

    def finish(self) -> tuple[dict[str, bytes], dict[str, bytes], list[str]]:
        for (section, filename), record in self.decoded.items():
            self.stores[section][filename] = encode_record(record)
        return self.stores[PACKAGES], self.stores[PACKAGES_CONDA], sorted(self.removed)


def apply_patches(
    tar_bz2: Mapping[str, bytes],
    conda: Mapping[str, bytes],
    instructions: PatchInstructions,
) -> tuple[dict[str, bytes], dict[str, bytes], list[str]]:
    """Apply ``instructions`` to one subdir's records (filename -> canonical record JSON).

    Returns new ``(tar_bz2, conda, removed)``: the inputs are not modified, untouched records keep
    their bytes, patched ones are re-encoded, and ``removed`` lists (sorted) the filenames taken
    out of the index.
    """
    run = _PatchRun(tar_bz2, conda)
    for filename, patch in instructions.packages.items():
        for section, target in (
            (PACKAGES, filename),
            (PACKAGES_CONDA, conda_twin(filename)),
        ):
            record = run.record(section, target)
            if record is not None:
                patch_record(record, patch)
    for filename, patch in instructions.packages_conda.items():
        record = run.record(PACKAGES_CONDA, filename)
        if record is not None:
            patch_record(record, patch)
    for filename in instructions.revoke:
        for section, target in run.targets(filename):
            record = run.record(section, target)
            if record is not None:
                revoke_record(record)
    for filename in instructions.remove:
        for section, target in run.targets(filename):
            run.remove(section, target)
    return run.finish()
