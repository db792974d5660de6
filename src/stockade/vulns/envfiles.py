"""Environment inputs of dependency reports (SPEC §7), parsed into one neutral shape.

Five kinds of input, each turned into an :class:`EnvironmentInput`:

- ``specs``: match specs given as a list (``numpy >=1.26``); solved;
- ``environment``: a conda ``environment.yml`` (``name``, ``channels``, ``dependencies``, and the
  ``platforms`` key conda-lock reads); solved. ``pip:`` sections and ``channel::name`` prefixes
  are noted and left out (only our channels are solved against);
- ``explicit``: ``conda list --explicit`` output (``@EXPLICIT`` then one package URL a line,
  with an optional ``#md5`` or ``#sha256:…`` fragment), pinned; or a plain list of one spec per
  line (``conda list --export``'s ``name=version=build`` included), solved;
- ``conda-lock``: a ``conda-lock.yml`` of version 1 (``package:`` entries with ``manager``,
  ``platform``, ``url``, ``hash``, ``dependencies``); pinned;
- ``pixi``: a ``pixi.lock`` of version 5 or 6 (``environments.<env>.packages.<platform>`` lists
  ``conda: URL`` entries described under ``packages``); pinned.

Pinned packages are not solved again: each keeps its URL, hashes and the dependencies the lock
file states (used only for packages we do not hold). Nothing here touches the database.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from rattler import LockFile, MatchSpec
from rattler.exceptions import (
    InvalidMatchSpecError,
    InvalidPackageNameError,
    InvalidVersionError,
    InvalidVersionSpecError,
)

from stockade.core import yamlsafe
from stockade.core.errors import InvalidInputError
from stockade.core.urls import URLParseError, parse_url, redact_url

__all__ = [
    "KINDS",
    "EnvironmentFileError",
    "EnvironmentInput",
    "LockedPackage",
    "dependency_name",
    "detect_kind",
    "packages_for",
    "parse_environment_file",
    "parse_specs",
]

KINDS = ("environment", "explicit", "conda-lock", "pixi")
MAX_SPECS = 1000
MAX_PACKAGES = 20000
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_NAME_END = re.compile(r"[\s=<>!~\[(,;]")
_ARCHIVE = (".conda", ".tar.bz2")
SPEC_ERRORS = (
    InvalidMatchSpecError,
    InvalidPackageNameError,
    InvalidVersionError,
    InvalidVersionSpecError,
    ValueError,
)


class EnvironmentFileError(InvalidInputError):
    """An uploaded environment file that cannot be read as the kind it is (or claims to be)."""

    code = "report:bad-file"
    title = "Invalid environment file"

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}", kind=kind)


@dataclass(frozen=True)
class LockedPackage:
    """One package of a lock file or explicit list, as the file names it."""

    name: str
    version: str | None = None
    build: str | None = None
    url: str | None = None
    channel: str | None = None  # the channel part of the URL (``conda-forge``, ``team/internal``)
    subdir: str | None = None
    filename: str | None = None
    sha256: str | None = None
    md5: str | None = None
    depends: tuple[str, ...] = ()
    platform: str = ""  # the platform a lock file lists it under ("" for explicit lists)


@dataclass(frozen=True)
class EnvironmentInput:
    kind: str
    specs: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    packages: tuple[LockedPackage, ...] = ()
    name: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def pinned(self) -> bool:
        """True when the input names exact packages (nothing to solve)."""
        return bool(self.packages) or self.kind in ("conda-lock", "pixi")


def dependency_name(spec: str) -> str:
    """The package name of a ``depends`` entry (``openssl >=3,<4`` -> ``openssl``)."""
    text = spec.strip()
    if "::" in text:
        text = text.split("::", 1)[1]
    return _NAME_END.split(text, 1)[0].lower()


def _check_spec(spec: str, kind: str) -> str:
    text = spec.strip()
    if not text or len(text) > 1000:
        raise EnvironmentFileError(kind, f"empty or overlong spec {text[:60]!r}")
    try:
        MatchSpec(text)
    except SPEC_ERRORS as exc:
        raise EnvironmentFileError(kind, f"invalid spec {text!r}: {exc}") from None
    return text


def parse_specs(
    specs: Sequence[str], *, channels: Sequence[str] = (), platform: str | None = None
) -> EnvironmentInput:
    if not specs:
        raise EnvironmentFileError("specs", "give at least one spec")
    if len(specs) > MAX_SPECS:
        raise EnvironmentFileError("specs", f"at most {MAX_SPECS} specs")
    checked = tuple(_check_spec(s, "specs") for s in specs)
    return EnvironmentInput(
        kind="specs",
        specs=checked,
        channels=tuple(channels),
        platforms=(platform,) if platform else (),
    )


def detect_kind(filename: str | None, text: str) -> str:
    """The kind of a file from its name, else its content; raises when neither tells."""
    name = (filename or "").rsplit("/", 1)[-1].lower()
    by_name = {"pixi.lock": "pixi", "conda-lock.yml": "conda-lock", "conda-lock.yaml": "conda-lock"}
    if name in by_name or name.endswith((".conda-lock.yml", ".conda-lock.yaml")):
        return by_name.get(name, "conda-lock")
    stripped = text.lstrip()
    if stripped.startswith("@EXPLICIT") or "\n@EXPLICIT" in text:
        return "explicit"
    if name.endswith((".yml", ".yaml", ".lock")) or ":" in stripped.split("\n", 1)[0]:
        doc = _yaml("environment", text, strict=False)
        if isinstance(doc, Mapping):
            if "environments" in doc and "version" in doc:
                return "pixi"
            if "package" in doc and "metadata" in doc:
                return "conda-lock"
            if "dependencies" in doc:
                return "environment"
        if name.endswith((".yml", ".yaml", ".lock")):
            raise EnvironmentFileError(
                "file",
                "a YAML file that is neither an environment.yml (no 'dependencies'), "
                "a conda-lock file nor a pixi.lock",
            )
    if name.endswith(".txt") or _looks_like_spec_list(text):
        return "explicit"
    raise EnvironmentFileError(
        "file",
        "unknown format: expected environment.yml, an explicit list, conda-lock.yml or pixi.lock",
    )


def _looks_like_spec_list(text: str) -> bool:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        return False
    for line in lines[:50]:
        try:
            MatchSpec(line)
        except SPEC_ERRORS:
            return False
    return True


def parse_environment_file(
    data: bytes, filename: str | None = None, kind: str | None = None
) -> EnvironmentInput:
    """Parse an uploaded file; ``kind`` forces the kind, otherwise it is detected."""
    label = kind or "file"
    if b"\x00" in data:
        raise EnvironmentFileError(label, "binary content (NUL bytes); expected a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EnvironmentFileError(label, f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise EnvironmentFileError(label, "the file is empty")
    if kind is not None and kind not in KINDS:
        raise EnvironmentFileError(kind, f"unknown kind; one of {', '.join(KINDS)}")
    kind = kind or detect_kind(filename, text)
    parsers = {
        "environment": _environment,
        "explicit": _explicit,
        "conda-lock": _conda_lock,
        "pixi": _pixi,
    }
    return parsers[kind](text)


# ------------------------------------------------------------------------------ YAML kinds


def _yaml(kind: str, text: str, *, strict: bool = True) -> Any:
    try:
        return yamlsafe.load(text)
    except yamlsafe.YamlRefusedError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise EnvironmentFileError(kind, f"{exc.problem}{where}") from None
    except yaml.YAMLError as exc:
        if not strict:
            return None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise EnvironmentFileError(kind, f"not valid YAML{where}") from None


def _mapping(kind: str, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EnvironmentFileError(kind, f"{what} must be a mapping")
    return value


def _list(kind: str, value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EnvironmentFileError(kind, f"{what} must be a list")
    return value


def _strings(kind: str, value: Any, what: str) -> list[str]:
    items = _list(kind, value, what)
    if not all(isinstance(v, str) for v in items):
        raise EnvironmentFileError(kind, f"{what} must be a list of strings")
    return [str(v) for v in items]


def _environment(text: str) -> EnvironmentInput:
    kind = "environment"
    doc = _mapping(kind, _yaml(kind, text), "the document")
    deps = _list(kind, doc.get("dependencies"), "dependencies")
    if not deps:
        raise EnvironmentFileError(kind, "'dependencies' is missing or empty")
    specs: list[str] = []
    notes: list[str] = []
    for i, dep in enumerate(deps):
        if isinstance(dep, Mapping):
            if "pip" in dep:
                notes.append(f"{len(dep.get('pip') or [])} pip requirement(s) are not checked")
                continue
            raise EnvironmentFileError(kind, f"dependencies[{i}]: unexpected mapping")
        if not isinstance(dep, str | int | float):
            raise EnvironmentFileError(kind, f"dependencies[{i}] must be a spec string")
        spec = str(dep).strip()
        if "::" in spec:
            prefix, spec = spec.split("::", 1)
            notes.append(f"{spec.split()[0]}: the channel {prefix!r} of the spec is not used")
        specs.append(_check_spec(spec, kind))
    if len(specs) > MAX_SPECS:
        raise EnvironmentFileError(kind, f"at most {MAX_SPECS} dependencies")
    channels = _strings(kind, doc.get("channels"), "channels")
    platforms = _strings(kind, doc.get("platforms"), "platforms")
    name = doc.get("name")
    return EnvironmentInput(
        kind=kind,
        specs=tuple(specs),
        channels=tuple(c.strip() for c in channels if c.strip() and c.strip() != "nodefaults"),
        platforms=tuple(platforms),
        name=str(name) if name is not None else None,
        notes=tuple(notes),
    )


# -------------------------------------------------------------------------- URLs and hashes


def _from_url(kind: str, url: str, **extra: Any) -> LockedPackage:
    """A package from its URL: ``…/<channel>/<subdir>/<name>-<version>-<build>.<ext>``."""
    try:  # parsed once (stockade.core.urls); errors show the URL redacted
        parts = parse_url(url)
    except URLParseError as exc:
        raise EnvironmentFileError(
            kind, f"not a package URL: {redact_url(url.strip())[:200]!r} ({exc})"
        ) from None
    if parts.scheme not in ("http", "https", "file") or not parts.path:
        raise EnvironmentFileError(kind, f"not a package URL: {redact_url(url.strip())[:200]!r}")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    filename = segments[-1] if segments else ""
    if not filename.endswith(_ARCHIVE) or len(segments) < 2:
        raise EnvironmentFileError(
            kind, f"not a package URL (.conda or .tar.bz2): {redact_url(url.strip())[:200]!r}"
        )
    stem = filename.removesuffix(".conda").removesuffix(".tar.bz2")
    pieces = stem.rsplit("-", 2)
    if len(pieces) != 3 or not all(pieces):
        raise EnvironmentFileError(kind, f"{filename!r} is not name-version-build")
    channel_parts = segments[:-2]
    if "conda" in channel_parts:  # our own URLs: …/conda/<channel>/<subdir>/<file>
        channel_parts = channel_parts[len(channel_parts) - channel_parts[::-1].index("conda") :]
    if channel_parts and channel_parts[0] == "t" and len(channel_parts) > 1:
        channel_parts = channel_parts[2:]  # /t/<token>/… never kept
    found: dict[str, Any] = {
        "name": pieces[0].lower(),
        "version": pieces[1],
        "build": pieces[2],
        "url": _without_secrets(url),
        "channel": "/".join(channel_parts) or None,
        "subdir": segments[-2],
        "filename": filename,
    }
    found.update({k: v for k, v in extra.items() if v is not None})
    return LockedPackage(**found)


def _without_secrets(url: str) -> str:
    """The URL without userinfo, query and fragment, its ``/t/<token>/`` segment blanked."""
    parts = parse_url(url)
    path = re.sub(r"/t/[^/]+/", "/t/<token>/", parts.path)
    host = f"[{parts.host}]" if ":" in parts.host else parts.host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{path}"


def _digest(kind: str, value: Any, size: int, what: str) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if len(text) != size or not _HEX.match(text):
        raise EnvironmentFileError(kind, f"{what} is not a hex digest of {size} characters")
    return text


def _explicit(text: str) -> EnvironmentInput:
    kind = "explicit"
    lines = [ln.strip() for ln in text.splitlines()]
    platform: str | None = None
    if "@EXPLICIT" not in lines:
        specs = [ln for ln in lines if ln and not ln.startswith("#")]
        if not specs:
            raise EnvironmentFileError(kind, "no specs in the list")
        if len(specs) > MAX_SPECS:
            raise EnvironmentFileError(kind, f"at most {MAX_SPECS} specs")
        return EnvironmentInput(kind=kind, specs=tuple(_check_spec(s, kind) for s in specs))
    packages: list[LockedPackage] = []
    after = False
    for number, line in enumerate(lines, 1):
        if line.startswith("# platform:"):
            platform = line.split(":", 1)[1].strip() or None
        if line == "@EXPLICIT":
            after = True
            continue
        if not after or not line or line.startswith("#"):
            continue
        url, _, fragment = line.partition("#")
        md5 = sha256 = None
        fragment = fragment.strip()
        if fragment.startswith("sha256:"):
            sha256 = _digest(kind, fragment[7:], 64, f"line {number}: the sha256")
        elif len(fragment) == 64:
            sha256 = _digest(kind, fragment, 64, f"line {number}: the sha256")
        elif fragment:
            md5 = _digest(kind, fragment, 32, f"line {number}: the md5")
        try:
            packages.append(_from_url(kind, url, md5=md5, sha256=sha256))
        except EnvironmentFileError as exc:
            detail = exc.detail.split(": ", 1)[1]
            raise EnvironmentFileError(kind, f"line {number}: {detail}") from None
    if not packages:
        raise EnvironmentFileError(kind, "no package URLs after @EXPLICIT")
    return _pinned(kind, packages, platforms=(platform,) if platform else ())


def _pinned(
    kind: str,
    packages: list[LockedPackage],
    *,
    platforms: Iterable[str] = (),
    channels: Iterable[str] = (),
    notes: Iterable[str] = (),
) -> EnvironmentInput:
    if len(packages) > MAX_PACKAGES:
        raise EnvironmentFileError(kind, f"at most {MAX_PACKAGES} packages")
    return EnvironmentInput(
        kind=kind,
        packages=tuple(packages),
        platforms=tuple(platforms),
        channels=tuple(channels),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------- lock files


def _channel_urls(kind: str, value: Any) -> list[str]:
    found: list[str] = []
    for i, entry in enumerate(_list(kind, value, "channels")):
        url = entry.get("url") if isinstance(entry, Mapping) else entry
        if not isinstance(url, str):
            raise EnvironmentFileError(kind, f"channels[{i}] has no url")
        found.append(url.strip())
    return found


def _conda_lock(text: str) -> EnvironmentInput:
    kind = "conda-lock"
    doc = _mapping(kind, _yaml(kind, text), "the document")
    if doc.get("version") != 1:
        raise EnvironmentFileError(kind, f"version {doc.get('version')!r}; version 1 is read")
    meta = _mapping(kind, doc.get("metadata") or {}, "metadata")
    platforms = _strings(kind, meta.get("platforms"), "metadata.platforms")
    channels = _channel_urls(kind, meta.get("channels"))
    packages: list[tuple[str, LockedPackage]] = []
    skipped = 0
    for i, entry in enumerate(_list(kind, doc.get("package"), "package")):
        where = f"package[{i}]"
        item = _mapping(kind, entry, where)
        if item.get("manager", "conda") != "conda":
            skipped += 1
            continue
        url, platform = item.get("url"), item.get("platform")
        if not isinstance(url, str) or not isinstance(platform, str):
            raise EnvironmentFileError(kind, f"{where} needs 'url' and 'platform'")
        hashes = _mapping(kind, item.get("hash") or {}, f"{where}.hash")
        deps = _mapping(kind, item.get("dependencies") or {}, f"{where}.dependencies")
        locked = _from_url(
            kind,
            url,
            sha256=_digest(kind, hashes.get("sha256"), 64, f"{where}.hash.sha256"),
            md5=_digest(kind, hashes.get("md5"), 32, f"{where}.hash.md5"),
            depends=tuple(f"{k} {v}".strip() for k, v in deps.items()),
        )
        packages.append((platform, locked))
    if not packages:
        raise EnvironmentFileError(kind, "no conda packages under 'package'")
    notes = [f"{skipped} pip package(s) are not checked"] if skipped else []
    return _by_platform(kind, packages, platforms, channels, notes)


def _by_platform(
    kind: str,
    packages: list[tuple[str, LockedPackage]],
    platforms: list[str],
    channels: list[str],
    notes: list[str],
) -> EnvironmentInput:
    """Keep every platform's packages; :func:`select_platform` picks one later."""
    order = list(dict.fromkeys([*platforms, *(p for p, _ in packages)]))
    tagged = [_tag(pkg, platform) for platform, pkg in packages]
    return _pinned(kind, tagged, platforms=order, channels=channels, notes=notes)


def _tag(pkg: LockedPackage, platform: str) -> LockedPackage:
    return replace(pkg, platform=platform)


def packages_for(env: EnvironmentInput, platform: str) -> list[LockedPackage]:
    """The pinned packages of ``platform`` (lock files list several platforms)."""
    return [p for p in env.packages if p.platform in (platform, "")]


def _pixi(text: str) -> EnvironmentInput:
    """A ``pixi.lock``, read by rattler's own lock-file reader (every version pixi writes)."""
    kind = "pixi"
    doc = _mapping(kind, _yaml(kind, text), "the document")
    if not isinstance(doc.get("version"), int):
        raise EnvironmentFileError(kind, "no lock-file 'version'")
    with tempfile.TemporaryDirectory(prefix="stockade-pixi-") as folder:
        path = Path(folder) / "pixi.lock"
        path.write_text(text, encoding="utf-8")
        try:
            lock = LockFile.from_path(path)
        except Exception as exc:  # noqa: BLE001 - rattler's parse errors carry no common base
            message = " ".join(str(exc).split())[:500]
            raise EnvironmentFileError(kind, f"rattler cannot read it: {message}") from None
    names = [name for name, _ in lock.environments()]
    if not names:
        raise EnvironmentFileError(kind, "no environments")
    env_name = "default" if "default" in names else names[0]
    env = lock.environment(env_name)
    if env is None:  # pragma: no cover - listed just above
        raise EnvironmentFileError(kind, f"no environment {env_name!r}")
    packages: list[tuple[str, LockedPackage]] = []
    skipped = 0
    for platform in env.platforms():
        for record in env.conda_repodata_records_for_platform(platform) or []:
            packages.append((str(platform), _pixi_package(kind, record)))
        skipped += len(env.pypi_packages_for_platform(platform) or [])
    if not packages:
        raise EnvironmentFileError(kind, f"environment {env_name!r} has no conda packages")
    notes = [f"{skipped} pypi package(s) are not checked"] if skipped else []
    if len(names) > 1:
        notes.append(f"environment {env_name!r} of {len(names)} is reported")
    channels = [str(channel) for channel in env.channels()]  # a LockChannel prints its URL
    return _by_platform(kind, packages, [], channels, notes)


def _pixi_package(kind: str, record: Any) -> LockedPackage:
    found = _from_url(
        kind,
        str(record.url),
        sha256=record.sha256.hex() if record.sha256 else None,
        md5=record.md5.hex() if record.md5 else None,
        depends=tuple(str(d) for d in record.depends),
    )
    return replace(
        found,
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        subdir=str(record.subdir or found.subdir),
    )
