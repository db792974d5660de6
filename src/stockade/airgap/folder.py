"""The air-gap folder (``DATA_DIR/airgap/`` by default): bundles dropped in, and set aside.

A bundle is any ``*.zip`` at the top of the folder (``conda_main_airgap.zip`` and ``cve.zip`` are
taken under those names: what a zip is comes from its manifest, not its name). A file changed in
the last ``settle_s`` seconds is left for the next run: it may still be being copied.

Once processed, a bundle is moved to ``applied/`` or ``refused/`` with ``<name>.result.json``
beside it (what was done, or why not), after the database says so: a crash in between leaves it
in the folder, and the next run finds it already applied (nothing is applied twice).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from stat import S_ISREG
from typing import Any

import orjson

from stockade.airgap.bundle import peek_format
from stockade.airgap.errors import AirgapFolderError
from stockade.airgap.manifest import FORMAT
from stockade.core.safezip import shown

CVE_FORMAT = "stockade-cve-bundle"


class Outcome(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"


@dataclass(frozen=True)
class Dropped:
    path: Path
    size: int
    format: str | None  # FORMAT, CVE_FORMAT, or None (unreadable: refused by whoever reads it)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        """The name as logs and messages show it (control characters escaped)."""
        return shown(self.path.name)


def ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dropped(folder: Path, settle_s: float, now: float | None = None) -> list[Dropped]:
    """The bundles waiting in ``folder``, oldest name first (bundle ids sort by time)."""
    if not folder.is_dir():
        return []
    moment = time.time() if now is None else now
    found: list[Dropped] = []
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() != ".zip":
            continue
        try:  # another replica may set it aside meanwhile: then it is not waiting any more
            stat = entry.lstat()
        except FileNotFoundError:
            continue
        if not S_ISREG(stat.st_mode) or moment - stat.st_mtime < settle_s:
            continue
        found.append(Dropped(entry, stat.st_size, peek_format(entry)))
    return found


def package_bundles(folder: Path, settle_s: float) -> list[Dropped]:
    """The package bundles waiting, and the zips nobody can read (a mirror run refuses them)."""
    return [d for d in dropped(folder, settle_s) if d.format in (FORMAT, None)]


def cve_bundles(folder: Path, settle_s: float) -> list[Dropped]:
    return [d for d in dropped(folder, settle_s) if d.format == CVE_FORMAT]


def check_layout(folder: Path) -> None:
    """``applied/`` and ``refused/`` are folders of their own, not links to elsewhere (a copy of
    a stick's contents could bring them): AirgapFolderError otherwise."""
    for outcome in Outcome:
        place = folder / str(outcome)
        if place.is_symlink() or (place.exists() and not place.is_dir()):
            raise AirgapFolderError(
                f"{place} is a link or a file, not a folder: processed bundles are not moved "
                "through it; remove it (the next run makes the folder)"
            )


def set_aside(path: Path, outcome: Outcome, result: dict[str, Any]) -> Path | None:
    """Move ``path`` into ``applied/`` or ``refused/`` with its result file; None when it is
    gone already (another replica moved it). Nothing is written through a link."""
    check_layout(path.parent)
    target_dir = ensure(path.parent / str(outcome))
    target = _free_name(target_dir, path.name)
    result_file = target.with_name(target.name + ".result.json")
    tmp = result_file.with_name(result_file.name + ".tmp")
    _write_new(tmp, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        return None
    os.replace(tmp, result_file)
    return target


def _write_new(path: Path, data: bytes) -> None:
    """``data`` in a new file at ``path`` (whatever was there, a planted link included, is
    removed first, never followed)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    counter = 1
    while os.path.lexists(target):
        stem, _, ext = name.rpartition(".")
        target = folder / f"{stem}.{counter}.{ext}"
        counter += 1
    return target
