"""``run_exports.json`` of a publication (CEP 12), from entries encoded once per package content.

A package content's ``run_exports`` never changes (it is keyed by the archive's sha256), so the
publisher keeps each entry as its JSON bytes (``{"run_exports": {...}}``, keys sorted) and a
publication embeds them (``orjson.Fragment``) instead of building and encoding 100,000 small dicts
(0.35 s a publication of 100,000 records). The bytes are those of
:func:`stockade.conda.channeldata.build_run_exports_json` for the same input.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, cast

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact, PackageContent
from stockade.conda.channeldata import RUN_EXPORTS_VERSION
from stockade.conda.repodata import exact_bytes

#: Above this many unknown packages, one join reads every run_exports of the subdir at once.
RUN_EXPORTS_JOIN_MIN = 1000
#: Remembered package contents; beyond it the memory starts over.
MAX_REMEMBERED = 2_000_000

_EMPTY = orjson.Fragment(b'{"run_exports":{}}')


def encode_entry(run_exports: Mapping[str, Any] | None) -> orjson.Fragment:
    """The ``run_exports.json`` entry of one package, encoded."""
    if not run_exports:
        return _EMPTY
    encoded = orjson.dumps({"run_exports": dict(run_exports)}, option=orjson.OPT_SORT_KEYS)
    return orjson.Fragment(exact_bytes(encoded))  # kept: not in orjson's 4 KiB buffer


class RunExportsEntries:
    """sha256 of a package content -> its encoded entry, read from the database once."""

    def __init__(self) -> None:
        self._of: dict[str, orjson.Fragment] = {}

    def of_files(
        self, session: Session, channel_id: int, subdir: str, shas: Mapping[str, str]
    ) -> dict[str, orjson.Fragment]:
        """filename -> entry, for (filename -> sha256) ``shas``; reads only contents not seen."""
        cache = self._of
        if len(cache) > MAX_REMEMBERED:
            cache.clear()
        # One lookup per file; the contents not seen are looked for only when there are some
        # (a set of 100,000 sha256s to subtract the cache's keys from cost ~20 ms a publication).
        entries = list(map(cache.get, shas.values()))
        if None in entries:
            pairs = zip(shas.values(), entries, strict=True)
            unseen = {sha for sha, entry in pairs if entry is None}
            query = select(PackageContent.sha256, PackageContent.run_exports_json)
            if len(unseen) >= RUN_EXPORTS_JOIN_MIN:
                query = query.join(Artifact, PackageContent.sha256 == Artifact.sha256).where(
                    Artifact.channel_id == channel_id, Artifact.subdir == subdir
                )
            else:
                query = query.where(PackageContent.sha256.in_(unseen))
            for sha, data in session.execute(query).all():
                cache[sha] = encode_entry(data)
            entries = list(map(cache.get, shas.values()))
        found = dict(zip(shas, entries, strict=True))
        if None in entries:  # contents with no row yet (a mirrored file not fetched)
            return {fn: entry or _EMPTY for fn, entry in found.items()}
        return cast("dict[str, orjson.Fragment]", found)


def run_exports_json(
    subdir: str,
    entries: Mapping[str, orjson.Fragment],
    tar_bz2: Collection[str],
    conda: Collection[str],
) -> bytes:
    """``run_exports.json`` of the unpatched index's packages (``entries``: filename -> entry;
    ``tar_bz2``, ``conda``: the filenames of each section)."""
    return orjson.dumps(
        {
            "info": {"subdir": subdir, "version": RUN_EXPORTS_VERSION},
            "packages": dict(zip(tar_bz2, map(entries.__getitem__, tar_bz2), strict=True)),
            "packages.conda": dict(zip(conda, map(entries.__getitem__, conda), strict=True)),
        },
        option=orjson.OPT_SORT_KEYS,
    )
