"""YARA over every member: the rule set shipped in :mod:`stockade.scanning.rules`, plus admins' own.

The shipped rules (``*.yar`` beside this package, installed with it) cover reverse shells, miners
and stratum pools, credential and token stealers, obfuscated Python and droppers. Admins add theirs
in a folder (``[scanning] yara_rules_dir``); both are compiled together, each file in a namespace of
its own (a rule name may repeat across files). Each rule says how heavy a match is with its meta
``verdict`` (``malicious`` or ``suspicious``; an admin rule without one is ``malicious``) and why
with ``description``; a finding's rule id is ``yara:<rule name>``.

A file that does not compile names itself and its line (:class:`YaraRuleError`); the scanner then
gives no verdict (:class:`ScannerUnavailableError`) and every artifact is held until it is fixed:
a broken admin rule never silently turns the scan off. ``include`` is refused (a rule file reads
no other file). :func:`validate_rules` checks one file's text before it is added.

``version`` is a digest of every rule source, of yara-python's version and of this module's
matching revision (:data:`CODE_REVISION`): any change triggers rescans.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yara  # type: ignore[import-not-found]  # yara-python: a C extension without type information

from stockade.scanning.interfaces import (
    Finding,
    Member,
    ScannerUnavailableError,
    ScanSubject,
    Verdict,
)

__all__ = [
    "CODE_REVISION",
    "RuleSource",
    "YaraRuleError",
    "YaraScanner",
    "admin_sources",
    "compile_sources",
    "rules_version",
    "shipped_sources",
    "validate_rules",
]

CODE_REVISION: Final = 1  # bump when matching or findings change without a rule change
RULE_SUFFIXES: Final = (".yar", ".yara")
DEFAULT_MAX_BYTES: Final = 16 * 1024**2
DEFAULT_TIMEOUT_S: Final = 60
MAX_RULE_FILE_BYTES: Final = 1024**2
EVIDENCE_CHARS: Final = 200
RULES_PACKAGE: Final = "stockade.scanning.rules"
VERDICTS: Final = {"malicious": Verdict.MALICIOUS, "suspicious": Verdict.SUSPICIOUS}


@dataclass(frozen=True, slots=True)
class RuleSource:
    """One rule file: ``origin`` names it in errors and findings (``shipped/miners.yar``)."""

    origin: str
    text: str


class YaraRuleError(ValueError):
    """A rule file that cannot be used: it names the file, the line (when known) and why."""

    def __init__(self, origin: str, message: str, line: int | None = None) -> None:
        self.origin = origin
        self.line = line
        self.message = message
        where = f"{origin}, line {line}" if line else origin
        super().__init__(f"YARA rules {where}: {message}")


# --- sources ----------------------------------------------------------------------------------


def shipped_sources() -> list[RuleSource]:
    """The rule files shipped with Stockade, in name order."""
    folder = importlib.resources.files(RULES_PACKAGE)
    files = sorted(
        (f for f in folder.iterdir() if f.name.endswith(RULE_SUFFIXES)), key=lambda f: f.name
    )
    return [RuleSource(f"shipped/{f.name}", f.read_text(encoding="utf-8")) for f in files]


def admin_sources(directory: Path) -> list[RuleSource]:
    """The rule files in an admin's folder (``*.yar``, ``*.yara``, not recursive), in name order."""
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(RULE_SUFFIXES))
    except OSError as exc:
        raise YaraRuleError(str(directory), f"the folder cannot be read ({exc.strerror})") from None
    sources = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise YaraRuleError(str(path), f"cannot be read ({exc.strerror})") from None
        sources.append(RuleSource(str(path), _decode(str(path), data)))
    return sources


def _decode(origin: str, data: bytes) -> str:
    if len(data) > MAX_RULE_FILE_BYTES:
        raise YaraRuleError(origin, f"larger than {MAX_RULE_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise YaraRuleError(origin, "not UTF-8 text") from None


def rules_version(sources: Sequence[RuleSource]) -> str:
    """``<yara-python version>-<digest>`` of the sources, their origins and :data:`CODE_REVISION`."""
    digest = hashlib.sha256(f"stockade-yara/{CODE_REVISION}\0".encode())
    for source in sources:
        for part in (source.origin, source.text):
            encoded = part.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
    return f"{yara.__version__}-{digest.hexdigest()[:20]}"


# --- compiling --------------------------------------------------------------------------------


def _compile_one(source: RuleSource) -> Any:
    try:
        return yara.compile(source=source.text, includes=False)
    except yara.SyntaxError as exc:
        line, message = _split_line(str(exc))
        raise YaraRuleError(source.origin, message, line) from None
    except yara.Error as exc:
        raise YaraRuleError(source.origin, str(exc)) from None


def _split_line(text: str) -> tuple[int | None, str]:
    head, sep, rest = text.partition(": ")
    if sep and head.startswith("line ") and head[5:].isdigit():
        return int(head[5:]), rest
    return None, text


def _check_meta(source: RuleSource, compiled: Any) -> None:
    for rule in compiled:
        verdict = rule.meta.get("verdict", "malicious")
        if verdict not in VERDICTS:
            raise YaraRuleError(
                source.origin,
                f"rule {rule.identifier}: meta verdict must be malicious or suspicious",
                _rule_line(source.text, str(rule.identifier)),
            )


def _rule_line(text: str, identifier: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.replace("{", " ").split()
        if identifier in words and "rule" in words:
            return number
    return None


def validate_rules(text: str, *, origin: str = "rules") -> YaraRuleError | None:
    """Why ``text`` cannot be added as a rule file (with its line), or None when it can."""
    try:
        source = RuleSource(origin, _decode(origin, text.encode("utf-8", errors="replace")))
        _check_meta(source, _compile_one(source))
    except YaraRuleError as exc:
        return exc
    return None


def compile_sources(sources: Sequence[RuleSource]) -> Any:
    """Compile ``sources`` together (each in a namespace), or raise :class:`YaraRuleError`.

    Each file is first compiled alone, so that an error names its file.
    """
    for source in sources:
        _check_meta(source, _compile_one(source))
    namespaces = {source.origin: source.text for source in sources}
    try:
        return yara.compile(sources=namespaces, includes=False)
    except yara.Error as exc:  # pragma: no cover - each file compiled alone above
        raise YaraRuleError("rules", str(exc)) from None


# --- the scanner ------------------------------------------------------------------------------


class YaraScanner:
    """Match every member (its first ``max_bytes``) against the compiled rules.

    Built once and shared by every scan thread: compiled rules are read-only, yara-python releases
    the GIL while it matches. A rule error found when building is raised on use, as
    :class:`ScannerUnavailableError` (fail closed).
    """

    name = "yara"

    def __init__(
        self,
        sources: Sequence[RuleSource] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: int = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._sources = list(shipped_sources() if sources is None else sources)
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._version = rules_version(self._sources)
        self._error: str | None = None
        self._rules: Any = None
        try:
            self._rules = compile_sources(self._sources)
        except YaraRuleError as exc:
            self._error = str(exc)

    @classmethod
    def from_settings(
        cls,
        rules_dir: Path | None,
        *,
        extra: Sequence[RuleSource] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: int = DEFAULT_TIMEOUT_S,
    ) -> YaraScanner:
        """The shipped rules, those in ``rules_dir`` (``[scanning] yara_rules_dir``), then
        ``extra`` (rules kept elsewhere, e.g. added with ``stockade scan rules add``).

        Never raises: an unreadable folder or a broken rule is raised on use (fail closed).
        """
        sources = shipped_sources()
        try:
            if rules_dir is not None:
                sources += admin_sources(rules_dir)
            sources += extra
        except YaraRuleError as exc:
            scanner = cls(sources, max_bytes=max_bytes, timeout_s=timeout_s)
            scanner._error = str(exc)
            scanner._version = rules_version([*sources, RuleSource("error", str(exc))])
            return scanner
        return cls(sources, max_bytes=max_bytes, timeout_s=timeout_s)

    @property
    def version(self) -> str:
        return self._version

    @property
    def error(self) -> str | None:
        """Why the rules cannot be used (a file and a line), or None."""
        return self._error

    @property
    def origins(self) -> list[str]:
        return [source.origin for source in self._sources]

    def wants(self, path: str) -> bool:
        return True

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        if self._error is not None or self._rules is None:
            raise ScannerUnavailableError(self._error or "YARA rules are not loaded")
        data = member.data[: self._max_bytes]
        try:
            matches = self._rules.match(data=data, timeout=self._timeout_s)
        except yara.TimeoutError:
            raise ScannerUnavailableError(f"YARA timed out on {member.path}") from None
        except yara.Error as exc:
            raise ScannerUnavailableError(f"YARA failed on {member.path}: {exc}") from None
        truncated = member.truncated or len(member.data) > len(data)
        return [self._finding(match, member, data, truncated) for match in matches]

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        if self._error is not None:
            raise ScannerUnavailableError(self._error)
        return ()

    def _finding(self, match: Any, member: Member, data: bytes, truncated: bool) -> Finding:
        meta: dict[str, Any] = dict(match.meta)
        offset, identifier = _first_instance(match)
        details: dict[str, Any] = {
            "description": str(meta.get("description", "")),
            "origin": str(match.namespace),
            "offset": offset,
            "string": identifier,
        }
        if truncated:
            details["scanned_bytes"] = len(data)
        return Finding(
            scanner=self.name,
            rule=f"yara:{match.rule}",
            verdict=VERDICTS.get(str(meta.get("verdict", "malicious")), Verdict.MALICIOUS),
            member=member.path,
            evidence=_excerpt(data, offset) if offset is not None else "",
            details=details,
        )


def _first_instance(match: Any) -> tuple[int | None, str | None]:
    """Offset and identifier of the earliest string instance of ``match`` (None: no strings)."""
    best: tuple[int, str] | None = None
    for string in match.strings:
        for instance in string.instances:
            if best is None or int(instance.offset) < best[0]:
                best = (int(instance.offset), str(string.identifier))
    return (None, None) if best is None else best


def _excerpt(data: bytes, offset: int) -> str:
    """At most :data:`EVIDENCE_CHARS` printable characters of ``data`` from the match on one line."""
    lower = max(0, offset - 40)
    newline = data.rfind(b"\n", lower, offset)
    start = lower if newline < 0 else newline + 1
    text = data[start : start + EVIDENCE_CHARS * 2].decode("utf-8", errors="replace")
    shown = "".join(c if c.isprintable() else " " for c in text.split("\n", 1)[0])
    return shown.strip()[:EVIDENCE_CHARS]
