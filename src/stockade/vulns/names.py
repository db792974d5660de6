"""The name map: conda package names to purls and CPE ``vendor:product`` pairs, and back.

Feeds name products in their own words: OSV by ecosystem package (``PyPI``/``torch``), NVD by CPE
(``python:requests``), CVE 5 by vendor/product or package. A :class:`NameMap` answers which conda
names such a product can be, and which identifiers a conda name has.

Three layers make the map, later ones winning (:meth:`NameMap.merged`):

1. the curated table shipped in ``name_map.json`` (:func:`load_shipped`);
2. entries from package metadata, added to what is there: ``purls`` in ``info/index.json``
   (:func:`entry_from_index`) and the PyPI name of a python package when it differs from the conda
   name (:func:`entry_from_python`);
3. admin entries. In the database (``VulnStore.name_map``) they add to the others, and an admin
   row ``!identifier`` takes that identifier away from its conda name; :meth:`NameMap.merged`
   with ``replace_entries`` replaces an entry whole (an entry with no identifiers maps the name to
   nothing).

Defaults without any entry: ``pkg:conda/<x>`` is conda ``x``; ``pkg:pypi/<x>`` is conda ``x`` (PEP
503 normalised, with ``-``, ``_`` and ``.`` spellings as candidates) unless an entry claims that
purl (PyPI ``torch`` is conda ``pytorch``, not ``torch``) or the conda name's own entry lists other
PyPI purls (conda ``opencv`` is PyPI ``opencv-python``, so PyPI ``opencv`` is not conda ``opencv``).

Admin import shapes. JSON, the shape of the shipped file (or just the list)::

    {"entries": [{"conda": "pytorch", "purls": ["pkg:pypi/torch"],
                  "cpes": ["linuxfoundation:pytorch"], "note": "optional"}]}

CSV with a header, one identifier per row, rows of one conda name gathered::

    conda,identifier,note
    pytorch,pkg:pypi/torch,
    pytorch,linuxfoundation:pytorch,NVD spelling

An identifier starting ``pkg:`` is a purl; otherwise a CPE as ``vendor:product``, ``cpe:2.3:...`` or
``cpe:/a:...``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.resources import files
from typing import Any

import orjson
from packageurl import PackageURL

from stockade.vulns.errors import NameMapError
from stockade.vulns.model import Affected

__all__ = [
    "NameEntry",
    "NameMap",
    "entry_from_index",
    "entry_from_python",
    "load_shipped",
    "normalise_cpe",
    "normalise_purl",
    "parse_csv_entries",
    "parse_json_entries",
    "purl_for",
    "pypi_normalise",
    "python_dist_name",
]

_SEPARATORS = re.compile(r"[-_.]+")
_DIST_INFO = re.compile(
    r"(?:^|/)site-packages/([^/]+)\.(?:dist-info|egg-info)(?:/|$)", re.IGNORECASE
)
_PURL_TYPES = {
    "pypi": "pypi",
    "npm": "npm",
    "crates.io": "cargo",
    "maven": "maven",
    "go": "golang",
    "rubygems": "gem",
    "packagist": "composer",
    "nuget": "nuget",
    "conda": "conda",
    "hex": "hex",
    "pub": "pub",
    "github": "github",
}


def pypi_normalise(name: str) -> str:
    """PEP 503: lowercase, runs of ``-``, ``_`` and ``.`` become one ``-``."""
    return _SEPARATORS.sub("-", name.strip()).lower()


@lru_cache(maxsize=65536)  # feeds name the same packages over and over; parsing a purl is slow
def normalise_purl(purl: str) -> str:
    """``pkg:type/namespace/name`` without version, qualifiers or subpath; PyPI names normalised."""
    try:
        parsed = PackageURL.from_string(purl.strip())
    except ValueError as exc:
        raise NameMapError(f"not a purl: {purl!r} ({exc})") from exc
    kind = str(parsed.type).lower()
    name = pypi_normalise(parsed.name) if kind == "pypi" else str(parsed.name)
    if kind in ("conda", "github"):
        name = name.lower()
    namespace = f"{parsed.namespace}/" if parsed.namespace and kind != "conda" else ""
    return f"pkg:{kind}/{namespace}{name}"


def normalise_cpe(value: str) -> str:
    """``vendor:product`` (lowercase) from that form or a CPE 2.3 / 2.2 URI."""
    text = value.strip().lower()
    if text.startswith("cpe:2.3:"):
        parts = text.split(":")[3:5]
    elif text.startswith("cpe:/"):
        parts = text[len("cpe:/") :].split(":")[1:3]
    else:
        parts = text.split(":")
    if len(parts) != 2 or not all(parts) or "*" in parts:
        raise NameMapError(f"not a CPE vendor:product: {value!r}")
    return ":".join(parts)


@lru_cache(maxsize=65536)
def purl_for(ecosystem: str, name: str) -> str | None:
    """The purl of an OSV ecosystem package (``PyPI``, ``requests`` -> ``pkg:pypi/requests``)."""
    kind = _PURL_TYPES.get(ecosystem.split(":", maxsplit=1)[0].strip().lower())
    if kind is None or not name.strip():
        return None
    if kind == "maven" and ":" in name:
        group, artifact = name.split(":", 1)
        return normalise_purl(str(PackageURL(type=kind, namespace=group, name=artifact)))
    namespace, _, base = (
        name.rpartition("/") if kind in ("npm", "golang", "composer") else ("", "", name)
    )
    return normalise_purl(str(PackageURL(type=kind, namespace=namespace or None, name=base)))


@dataclass(frozen=True, slots=True)
class NameEntry:
    """The identifiers of one conda name; ``source`` is ``shipped``, ``metadata`` or ``admin``."""

    conda: str
    purls: tuple[str, ...] = ()
    cpes: tuple[str, ...] = ()
    source: str = "shipped"
    note: str = ""
    checked: bool = True

    @classmethod
    def build(
        cls, conda: str, identifiers: Iterable[str], *, source: str, note: str = ""
    ) -> NameEntry:
        """An entry from mixed identifiers (purls start with ``pkg:``), normalised."""
        name = conda.strip().lower()
        if not name:
            raise NameMapError("an entry needs a conda name")
        listed = [i.strip() for i in identifiers if i and i.strip()]
        purls = [normalise_purl(i) for i in listed if i.startswith("pkg:")]
        cpes = [normalise_cpe(i) for i in listed if not i.startswith("pkg:")]
        return cls(name, _unique(purls), _unique(cpes), source, note)


class NameMap:
    """Lookups both ways over a set of :class:`NameEntry`; immutable, merge to change."""

    def __init__(self, entries: Iterable[NameEntry] = ()) -> None:
        self._entries: dict[str, NameEntry] = {}
        for entry in entries:
            self._entries[entry.conda] = entry
        self._by_purl: dict[str, set[str]] = {}
        self._by_cpe: dict[str, set[str]] = {}
        for entry in self._entries.values():
            for purl in entry.purls:
                self._by_purl.setdefault(purl, set()).add(entry.conda)
            for cpe in entry.cpes:
                self._by_cpe.setdefault(cpe, set()).add(entry.conda)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[NameEntry]:
        return list(self._entries.values())

    def merged(self, entries: Iterable[NameEntry], *, replace_entries: bool) -> NameMap:
        """A new map with ``entries`` added (union per conda name) or replacing (admin edits)."""
        result = dict(self._entries)
        for entry in entries:
            old = result.get(entry.conda)
            if old is None or replace_entries:
                result[entry.conda] = entry
            else:
                result[entry.conda] = replace(
                    old,
                    purls=_unique([*old.purls, *entry.purls]),
                    cpes=_unique([*old.cpes, *entry.cpes]),
                )
        return NameMap(result.values())

    def identifiers(self, conda: str) -> NameEntry:
        """The entry of ``conda`` with its implicit ``pkg:conda/<name>`` purl first."""
        name = conda.strip().lower()
        entry = self._entries.get(name, NameEntry(name, source="default"))
        own = f"pkg:conda/{name}"
        return replace(entry, purls=_unique([own, *entry.purls]))

    def conda_names_for_purl(self, purl: str) -> frozenset[str]:
        key = normalise_purl(purl)
        claimed = self._by_purl.get(key)
        if claimed:
            return frozenset(claimed)
        kind, _, name = key[len("pkg:") :].partition("/")
        if kind == "conda":
            return frozenset({name.rsplit("/", 1)[-1]})
        if kind == "pypi":
            return frozenset(n for n in _spellings(name) if self._pypi_default_allowed(n, key))
        return frozenset()

    def conda_names_for_cpe(self, cpe: str) -> frozenset[str]:
        return frozenset(self._by_cpe.get(normalise_cpe(cpe), ()))

    def conda_names_for(self, affected: Affected) -> frozenset[str]:
        """Every conda name the product of a feed's affected entry can be."""
        names: set[str] = set()
        purls = [affected.purl] if affected.purl else []
        if affected.ecosystem and affected.name:
            purls.append(purl_for(affected.ecosystem, affected.name) or "")
        for purl in filter(None, purls):
            try:
                names |= self.conda_names_for_purl(purl)
            except NameMapError:
                continue
        for cpe in filter(None, [affected.cpe_pair, *affected.cpes]):
            try:
                names |= self.conda_names_for_cpe(cpe)
            except NameMapError:
                continue
        return frozenset(names)

    def _pypi_default_allowed(self, conda: str, purl: str) -> bool:
        entry = self._entries.get(conda)
        if entry is None:
            return True
        own_pypi = [p for p in entry.purls if p.startswith("pkg:pypi/")]
        return not own_pypi or purl in own_pypi


def parse_json_entries(
    data: bytes | str | Mapping[str, Any] | list[Any], *, source: str = "admin"
) -> list[NameEntry]:
    """Entries from the JSON import shape (module docstring)."""
    try:
        doc = orjson.loads(data) if isinstance(data, bytes | str) else data
    except orjson.JSONDecodeError as exc:
        raise NameMapError(f"name map is not JSON: {exc}") from exc
    listed = doc.get("entries") if isinstance(doc, Mapping) else doc
    if not isinstance(listed, list):
        raise NameMapError("name map JSON must be a list of entries or {'entries': [...]}")
    return [_json_entry(i, raw, source) for i, raw in enumerate(listed)]


def _json_entry(index: int, raw: Any, source: str) -> NameEntry:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("conda"), str):
        raise NameMapError(f"entry {index}: needs a 'conda' name")
    identifiers: list[str] = []
    for key in ("purls", "cpes"):
        values = raw.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise NameMapError(f"entry {index} ({raw['conda']}): '{key}' must be a list of strings")
        identifiers += values
    try:
        entry = NameEntry.build(
            raw["conda"], identifiers, source=source, note=str(raw.get("note", ""))
        )
    except NameMapError as exc:
        raise NameMapError(f"entry {index} ({raw['conda']}): {exc.detail}") from exc
    return replace(entry, checked=raw.get("checked", True) is not False)


def parse_csv_entries(text: str, *, source: str = "admin") -> list[NameEntry]:
    """Entries from the CSV import shape (module docstring)."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"conda", "identifier"} <= set(reader.fieldnames):
        raise NameMapError("name map CSV needs a header with 'conda' and 'identifier' columns")
    gathered: dict[str, tuple[list[str], list[str]]] = {}
    for row in reader:
        conda = (row.get("conda") or "").strip().lower()
        if not conda:
            raise NameMapError(f"CSV line {reader.line_num}: no conda name")
        identifiers, notes = gathered.setdefault(conda, ([], []))
        identifiers.append(row.get("identifier") or "")
        if row.get("note"):
            notes.append(str(row["note"]))
    entries: list[NameEntry] = []
    for conda, (identifiers, notes) in gathered.items():
        entries.append(NameEntry.build(conda, identifiers, source=source, note="; ".join(notes)))
    return entries


def entry_from_index(index: Mapping[str, Any]) -> NameEntry | None:
    """The ``purls`` an ``info/index.json`` declares, as a metadata entry; invalid ones skipped."""
    name = index.get("name")
    purls = index.get("purls")
    if not isinstance(name, str) or not isinstance(purls, list):
        return None
    valid: list[str] = []
    for purl in purls:
        if not isinstance(purl, str):
            continue
        try:
            valid.append(normalise_purl(purl))
        except NameMapError:
            continue
    return NameEntry(name.lower(), _unique(valid), source="metadata") if valid else None


def entry_from_python(conda: str, pypi_name: str) -> NameEntry | None:
    """A metadata entry for a python package whose PyPI name differs from its conda name."""
    if pypi_normalise(pypi_name) == pypi_normalise(conda):
        return None
    return NameEntry.build(conda, [f"pkg:pypi/{pypi_name}"], source="metadata")


def python_dist_name(index: Mapping[str, Any], paths: Iterable[Any]) -> str | None:
    """The PyPI name of a python package: the one distribution its ``site-packages`` holds.

    Only for a package that is ``noarch: python`` or depends on ``python``, and only when exactly
    one ``*.dist-info`` / ``*.egg-info`` name is found (None otherwise: no guessing).
    """
    depends = index.get("depends")
    deps = depends if isinstance(depends, list) else []
    on_python = index.get("noarch") == "python" or any(
        isinstance(d, str) and d.split()[0:1] == ["python"] for d in deps
    )
    if not on_python:
        return None
    found: set[str] = set()
    for item in paths:
        path = item.get("path") if isinstance(item, Mapping) else item
        if not isinstance(path, str):
            continue
        match = _DIST_INFO.search(path)
        if match:
            found.add(pypi_normalise(match.group(1).split("-", 1)[0]))
    found.discard("")
    return found.pop() if len(found) == 1 else None


@lru_cache(maxsize=1)
def load_shipped() -> NameMap:
    """The curated map shipped with Stockade (``stockade/vulns/name_map.json``)."""
    data = files("stockade.vulns").joinpath("name_map.json").read_bytes()
    return NameMap(parse_json_entries(data, source="shipped"))


def _spellings(normalised: str) -> list[str]:
    return list(dict.fromkeys(normalised.replace("-", sep) for sep in ("-", "_", ".")))


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
