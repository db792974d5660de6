"""Upstream channel folders for mirroring tests, built from REAL repodata.

    channel = build_channel(TESTDATA / "repodata/r-linux-64/repodata.json", tmp_path / "up",
                            select=lambda fn, rec: rec["name"].startswith("r-a"))
    channel.root / "linux-64" / "repodata.json"    # the real records, hashes of our files
    channel.records["r-abc-1.0-r3.4_0.tar.bz2"]     # what was written

Each selected record gets a tiny but valid package file in its format (``.tar.bz2`` or ``.conda``)
whose ``info/index.json`` carries the record's fields (name, version, build, build_number,
depends, license, subdir, timestamp, ...). The subdir's ``repodata.json`` (and
``repodata.json.zst``) holds the upstream records unchanged except ``sha256``, ``md5`` and
``size``, which are those of the generated files; hot-fix patched fields stay as upstream has them.
``index_changes`` can make a file's ``index.json`` differ from its record (an upstream patch).
Keys of the source starting with ``_`` (a conda client's cache metadata) are dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from stockade.mirroring.downloader import DownloadItem
from tests.conftest import TESTDATA
from tests.factories.packages import PackageSpec, build_conda, build_tar_bz2, file

R_LINUX_64 = TESTDATA / "repodata" / "r-linux-64" / "repodata.json"
PYTORCH_LINUX_64 = TESTDATA / "repodata" / "pytorch-linux-64" / "repodata.json"
TEST_RECIPES = TESTDATA / "channels" / "test-recipes"
HASH_FIELDS = ("sha256", "md5", "size")
Select = Callable[[str, Mapping[str, Any]], bool] | Collection[str] | None
IndexChanges = Callable[[str, Mapping[str, Any]], Mapping[str, Any]] | None


@dataclass
class UpstreamChannel:
    root: Path
    subdir: str
    records: dict[str, dict[str, Any]]  # filename -> record as written in repodata.json

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def path(self, filename: str, subdir: str | None = None) -> Path:
        return self.root / (subdir or self.subdir) / filename


def _selected(select: Select, filename: str, record: Mapping[str, Any]) -> bool:
    if select is None:
        return True
    if callable(select):
        return select(filename, record)
    return filename in select


def _spec(record: Mapping[str, Any], index: Mapping[str, Any]) -> PackageSpec:
    extra = {k: v for k, v in index.items() if k not in HASH_FIELDS and not k.startswith("legacy_")}
    name = str(record["name"])
    return PackageSpec(
        name=name,
        version=str(record["version"]),
        build=str(record["build"]),
        build_number=int(record.get("build_number", 0)),
        subdir=str(record.get("subdir", "noarch")),
        depends=tuple(record.get("depends", ())),
        timestamp=record.get("timestamp"),
        payload=(file(f"share/{name}/README", f"{record['name']} {record['version']}\n".encode()),),
        index_extra=extra,
    )


def write_package(
    directory: Path, filename: str, record: Mapping[str, Any], index: Mapping
) -> Path:
    spec = _spec(record, index)
    if filename.endswith(".conda"):
        return build_conda(directory, spec, filename=filename)
    return build_tar_bz2(directory, spec, filename=filename)


def _hashes(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "size": len(data),
    }


def write_repodata(folder: Path, repodata: Mapping[str, Any], *, zst: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(repodata, indent=1, sort_keys=True).encode()
    (folder / "repodata.json").write_bytes(raw)
    if zst:
        (folder / "repodata.json.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(raw))


def empty_repodata(subdir: str) -> dict[str, Any]:
    return {
        "info": {"subdir": subdir},
        "packages": {},
        "packages.conda": {},
        "removed": [],
        "repodata_version": 1,
    }


def build_channel(
    source: Path,
    dest: Path,
    *,
    select: Select = None,
    limit: int | None = None,
    subdir: str | None = None,
    index_changes: IndexChanges = None,
    zst: bool = True,
    noarch: bool = True,
) -> UpstreamChannel:
    """Write ``dest/<subdir>/`` (files + repodata) from the records of ``source`` that
    ``select`` keeps (at most ``limit``), and an empty ``dest/noarch/`` unless ``noarch=False``."""
    upstream = json.loads(source.read_bytes())
    subdir = subdir or upstream.get("info", {}).get("subdir") or "linux-64"
    folder = dest / subdir
    folder.mkdir(parents=True, exist_ok=True)
    out = {k: v for k, v in upstream.items() if not k.startswith("_")}
    out["info"] = {**upstream.get("info", {}), "subdir": subdir}
    written: dict[str, dict[str, Any]] = {}
    for key in ("packages", "packages.conda"):
        kept: dict[str, Any] = {}
        for filename, record in upstream.get(key, {}).items():
            if (limit is not None and len(written) >= limit) or not _selected(
                select, filename, record
            ):
                continue
            index = index_changes(filename, record) if index_changes else record
            path = write_package(folder, filename, record, {**record, **index})
            kept[filename] = {**record, **_hashes(path)}
            written[filename] = kept[filename]
        out[key] = kept
    write_repodata(folder, out, zst=zst)
    if noarch and subdir != "noarch":
        write_repodata(dest / "noarch", empty_repodata("noarch"), zst=zst)
    return UpstreamChannel(dest, subdir, written)


def copy_test_recipes(dest: Path) -> Path:
    """A writable copy of the real ``test-recipes`` channel (real files, ``repodata.json`` only)."""
    shutil.copytree(TEST_RECIPES, dest, copy_function=shutil.copyfile)
    for folder, dirs, files in os.walk(dest):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    Path(dest).chmod(Path(dest).stat().st_mode | stat.S_IWUSR)
    return dest


def download_items(root: Path, subdir: str, base_url: str) -> list[DownloadItem]:
    """One DownloadItem per record of ``root/subdir/repodata.json``, fetched from ``base_url``."""
    repodata = json.loads((root / subdir / "repodata.json").read_bytes())
    items = []
    for key in ("packages", "packages.conda"):
        for filename, record in repodata.get(key, {}).items():
            url = f"{base_url.rstrip('/')}/{subdir}/{filename}"
            items.append(DownloadItem(subdir, filename, record["sha256"], record["size"], url))
    return items
