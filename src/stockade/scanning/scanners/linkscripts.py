"""Link-script and activation-script analysis (SPEC §8).

Which members: the scripts conda runs for a package, and nothing else.

- link scripts, run by conda at install and removal: ``bin/.<name>-{pre-link,post-link,
  pre-unlink}.sh`` (``/bin/bash`` on Linux and macOS), ``Scripts/.<name>-<action>.bat``
  (``%COMSPEC% /c`` on Windows), and ``python-scripts/.<name>-<action>.{sh,bat}`` of a
  ``noarch: python`` package (conda moves them to ``bin/`` or ``Scripts/``);
- activation scripts, sourced by every ``conda activate``: every file in
  ``etc/conda/activate.d/`` and ``etc/conda/deactivate.d/`` (``.sh``, ``.csh``, ``.fish``,
  ``.xsh``, ``.bat``, ``.ps1``, ...).

The copies under ``info/recipe/`` are not run by anything and are not scanned.

How: each script is normalized into logical lines (:mod:`.shelltext`: continuations joined,
comments dropped, quoting tricks undone, simple variables expanded), then matched against the rule
table (:mod:`.linkrules`); writes are found from redirections and the arguments of file-writing
commands and judged by their target. Known limits: values computed at run time, variables set in
another file, functions or aliases that rename a command, code assembled by string operations in
an interpreter, and downloads saved under a name built at run time are not followed; a pattern
quoted inside an ``echo`` still matches (a false positive we accept: no benign link script prints
``curl ... | sh``). A script over 256 KiB is read up to there and reported as
``link-script:oversized`` (suspicious). Matching is linear in a line's length (patterns are cut
at their gaps, command words are only tried at word starts), so a hostile script costs at most
about a second of CPU.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Final

from stockade.scanning.interfaces import Finding, Member, ScanSubject, Verdict
from stockade.scanning.scanners import linkrules
from stockade.scanning.scanners.linkrules import (
    ABSOLUTE_TARGET,
    ALL_ARG_WRITERS,
    ALLOWED_TARGET,
    FETCH,
    LAST_ARG_WRITERS,
    LINE_RULES,
    PARENT_SEGMENT,
    SENSITIVE_ONLY,
    SENSITIVE_TARGETS,
    SINK,
    WRITE_OUTSIDE_PREFIX,
)
from stockade.scanning.scanners.shelltext import MAX_SCRIPT_CHARS, dialect_of, logical_lines

NAME: Final = "link-script"
_LOGIC_REVISION: Final = "3"  # 2: paths case-insensitive, links followed; 3: oversized held
EVIDENCE_CHARS: Final = 200
FETCH_EXECUTE: Final = "link-script:fetch-execute"
OVERSIZED: Final = "link-script:oversized"
# Real link and activation scripts are a few kilobytes; one larger than this is not read past it
# (its rules would cost seconds) and is reported instead.
MAX_SCRIPT_BYTES: Final = MAX_SCRIPT_CHARS

# Case-insensitive: on Windows and macOS file systems ``BIN/.X-POST-LINK.SH`` is what conda runs.
_LINK_SCRIPT: Final = re.compile(
    r"^(?:bin|Scripts|python-scripts)/\.[^/]+-(?:pre-link|post-link|pre-unlink)\.(?:sh|bat)$",
    re.IGNORECASE,
)
_ACTIVATION: Final = re.compile(r"^etc/conda/(?:activate|deactivate)\.d/[^/]+$", re.IGNORECASE)
_REDIRECT: Final = re.compile(
    r"(?<![<>&\w=-])(?:\d|&)?>>?[|!]?\s*(?!&)(\"[^\"]*\"|'[^']*'|[^\s;&|<>()]+)"
)
# A separator's leading blanks are matched from where the blanks start only (``(?<!\s)``): tried
# from every blank of a long run, the pattern was quadratic in it (a link script of 20,000 spaces
# held the scanner for 23 s).
_SEGMENT_SPLIT: Final = re.compile(
    r"(?<!\s)\s*(?:;|&&|\|\||(?<![>&])\|(?!\|)|(?<![>&<\d])&(?![>&])|\$\(|`|\bthen\b|\bdo\b)\s*"
)
_PREFIX_WORDS: Final = frozenset(
    {
        "sudo",
        "doas",
        "env",
        "command",
        "exec",
        "nohup",
        "time",
        "if",
        "else",
        "elif",
        "!",
        "{",
        "(",
        "@",
        "call",
        "builtin",
    }
)
_VALUE_OPTIONS: Final = frozenset({"-m", "-o", "-g", "-S", "--mode", "--owner", "--group"})
_PS_TARGET_OPTIONS: Final = frozenset(
    {"-destination", "-path", "-filepath", "-literalpath", "--target-directory", "-t"}
)
_WORD: Final = re.compile(r"\"[^\"]*\"|'[^']*'|\S+")  # quoted words stay whole
_CMD_SWITCH: Final = re.compile(r"^/[A-Za-z?]{1,3}(?::\S*)?$")
_FETCH_WORD: Final = re.compile(FETCH, re.IGNORECASE)
_SAVED_AS: Final = re.compile(
    r"(?:\s-outfile|\s--output(?:-document)?[= ]|\s-[oO]|\s>)\s*[\"']?([^\s\"';|&>]{1,512})",
    re.IGNORECASE,
)
# What stands before a file's name when it is run (or made runnable), in the 64 characters before.
_RUN_BEFORE: Final = re.compile(
    rf"(?:^|[;&|(]\s*|{SINK}(?:\s+-\w+)*\s+|start-process\s+|\bstart\s+|\bcall\s+|"
    r"\bchmod\s+(?:[ugoa]*\+\w*x\w*|[0-7]?[0-7]*[1357][0-7]{2})\s+(?:\S+\s+)*?)[\"']?(?:\./)?$",
    re.IGNORECASE,
)
_RUN_WINDOW: Final = 64
MAX_RUN_CHECKS: Final = 256  # occurrences of a downloaded file's name looked at, per line
_NAME_END: Final = frozenset({"", " ", '"', "'", ";", "&", "|", ")"})
MAX_DOWNLOADS: Final = 16
_NON_PRINTABLE: Final = re.compile(r"[^\x20-\x7e]")


def _fingerprint() -> str:
    table = (
        linkrules.table_fingerprint()
        + OVERSIZED
        + str(MAX_SCRIPT_BYTES)
        + _SAVED_AS.pattern
        + _RUN_BEFORE.pattern
        + _REDIRECT.pattern
    )
    digest = hashlib.sha256(table.encode()).hexdigest()[:12]
    return f"{_LOGIC_REVISION}+{digest}"


def evidence(text: str) -> str:
    """A short printable excerpt of ``text`` for a finding."""
    return _NON_PRINTABLE.sub("?", text[: EVIDENCE_CHARS + 64].strip())[:EVIDENCE_CHARS]


def is_script(path: str) -> bool:
    """Whether conda runs ``path`` at install, removal or activation."""
    return _LINK_SCRIPT.match(path) is not None or _ACTIVATION.match(path) is not None


def _clean_token(token: str) -> str:
    return token.strip("\"'();{}`").rstrip(",")


def _command_words(segment: str) -> list[str]:
    """The words of one command, without redirections and leading ``sudo``/``VAR=x`` words."""
    words = _WORD.findall(segment)
    tokens = [token for token in (_clean_token(w) for w in words if ">" not in w) if token]
    while tokens and (tokens[0].lower() in _PREFIX_WORDS or re.match(r"^\w+=", tokens[0])):
        tokens = tokens[1:]
    return tokens


def _split_arguments(
    command: str, arguments: list[str], cmd_dialect: bool
) -> tuple[list[str], list[str]]:
    """(files named by an option such as ``-Destination`` or ``of=``, positional arguments)."""
    named: list[str] = []
    positional: list[str] = []
    pending = ""
    for token in arguments:
        lowered = token.lower()
        if pending:
            if pending == "target":
                named.append(token)
            pending = ""
        elif lowered in _PS_TARGET_OPTIONS:
            pending = "target"
        elif lowered in _VALUE_OPTIONS:
            pending = "value"
        elif lowered.startswith("--target-directory="):
            named.append(token.split("=", 1)[1])
        elif lowered.startswith("of=") and command == "dd":
            named.append(token[3:])
        elif not (token.startswith("-") or (cmd_dialect and _CMD_SWITCH.match(token))):
            positional.append(token)
    return named, positional


def _command_targets(segment: str, cmd_dialect: bool) -> tuple[list[str], bool]:
    """Files the command of ``segment`` writes, and whether they count for the prefix check."""
    tokens = _command_words(segment)
    if not tokens:
        return [], False
    command = tokens[0].rsplit("/", 1)[-1].rsplit("\\", 1)[-1].lower().removesuffix(".exe")
    if command == "sed" and not any(t.startswith(("-i", "--in-place")) for t in tokens[1:]):
        return [], False
    named, positional = _split_arguments(command, tokens[1:], cmd_dialect)
    if command in SENSITIVE_ONLY:
        return named + positional, False
    if command in LAST_ARG_WRITERS:
        return named or positional[-1:], True
    if command in ALL_ARG_WRITERS or command == "dd":
        return named + (positional if command != "mklink" else positional[:1]), True
    return [], False


def write_targets(line: str, cmd_dialect: bool) -> Iterator[tuple[str, bool]]:
    """Every file ``line`` writes, with whether it counts for the outside-the-prefix check."""
    for match in _REDIRECT.finditer(line):
        yield _clean_token(match.group(1)), True
    for segment in _SEGMENT_SPLIT.split(line):
        targets, counts = _command_targets(segment, cmd_dialect)
        for target in targets:
            yield target, counts


def judge_target(target: str) -> tuple[str, Verdict] | None:
    """The rule a write to ``target`` breaks, if any."""
    for rule, pattern in SENSITIVE_TARGETS:
        if pattern.search(target):
            return rule, Verdict.MALICIOUS
    if PARENT_SEGMENT.search(target):
        return WRITE_OUTSIDE_PREFIX, Verdict.SUSPICIOUS
    if ALLOWED_TARGET.match(target):
        return None
    if ABSOLUTE_TARGET.match(target):
        return WRITE_OUTSIDE_PREFIX, Verdict.SUSPICIOUS
    return None


def _downloads(lines: list[str]) -> Iterator[tuple[int, int, str]]:
    """(line number, where the command ends, file name) of each download saved to a file."""
    found = 0
    for number, line in enumerate(lines):
        fetch = _FETCH_WORD.search(line)
        saved = _SAVED_AS.search(line, fetch.end()) if fetch else None
        if saved is not None and found < MAX_DOWNLOADS:
            found += 1
            yield number, saved.end(), saved.group(1)


def _runs(text: str, name: str) -> bool:
    """Whether ``text`` runs, or makes runnable, the file ``name``."""
    start = 0
    checks = 0
    while (index := text.find(name, start)) >= 0 and checks < MAX_RUN_CHECKS:
        checks += 1
        after = text[index + len(name) : index + len(name) + 1]
        before = _RUN_BEFORE.search(text, max(0, index - _RUN_WINDOW), index)
        if after in _NAME_END and before is not None:
            return True
        start = index + 1
    return False


def _fetch_execute(lines: list[str]) -> str | None:
    """A line that runs (or makes runnable) a file an earlier line downloaded."""
    for number, end, name in _downloads(lines):
        for later in [lines[number][end:], *lines[number + 1 :]]:
            if _runs(later, name):
                return later
    return None


class LinkScriptScanner:
    """Finds hostile commands in link and activation scripts (rules in :mod:`.linkrules`)."""

    name: Final = NAME
    version: Final = _fingerprint()

    def wants(self, path: str) -> bool:
        return is_script(path)

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        lines = logical_lines(member.data, member.path)
        cmd_dialect = dialect_of(member.path) == "cmd"
        found: dict[str, Finding] = {}

        def add(rule: str, verdict: Verdict, line: str, what: str) -> None:
            if rule not in found:
                found[rule] = Finding(
                    NAME, rule, verdict, member.path, evidence(line), {"reason": what}
                )

        for line in lines:
            for rule in LINE_RULES:
                if rule.rule not in found and rule.search(line):
                    add(rule.rule, rule.verdict, line, rule.what)
            for target, counts in write_targets(line, cmd_dialect):
                judged = judge_target(target)
                if judged is None or judged[0] in found:
                    continue
                if counts or judged[1] is Verdict.MALICIOUS:
                    add(judged[0], judged[1], line, f"writes {evidence(target)}")
        if member.size > MAX_SCRIPT_BYTES or member.truncated:
            # Malicious, not suspicious: the unread rest runs at install, and channels serve
            # suspicious files by default (padding a script past the cap was a way through).
            add(OVERSIZED, Verdict.MALICIOUS, f"{member.size} bytes", "too large to read whole")
        executed = _fetch_execute(lines)
        if executed is not None:
            add(FETCH_EXECUTE, Verdict.MALICIOUS, executed, "runs a file it downloaded")
        return sorted(found.values(), key=lambda f: (-f.verdict.rank, f.rule))

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        return ()
