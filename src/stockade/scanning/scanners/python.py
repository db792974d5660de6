"""Python start-up hooks and import-time code (SPEC §8).

- ``.pth`` files in ``site-packages``: Python's ``site`` module ``exec``\\ s every line that starts
  with ``import`` followed by a space or tab, at *every* interpreter start. Real packages use this
  for small, well-known shims: ``distutils-precedence.pth`` (``import os; var = ...;
  __import__('_distutils_hack').add_shim()``), ``_virtualenv.pth``, ``easy-install.pth``'s
  ``sys.path`` bookkeeping, ``*-nspkg.pth`` namespace set-up, editable installs (``import
  __editable___x_finder; __editable___x_finder.install()``), ``coverage``'s ``process_startup``.
  Those import modules, read the environment and edit ``sys.path``: not flagged. A line that
  ``exec``\\ s or ``eval``\\ s, decodes data, starts processes or imports a computed name is
  ``python:pth-code`` (suspicious); one that runs decoded data or reaches the network is
  ``python:pth-exec-decoded`` or ``python:pth-network`` (malicious).
- ``sitecustomize.py`` and ``usercustomize.py``: imported at every start; shipping one is
  ``python:sitecustomize`` (suspicious), and ``-exec-decoded`` / ``-network`` when it does that.
- a package's ``__init__.py``: module-level code (not inside a function or class) that runs
  decoded data or reaches the network is ``python:init-exec-decoded`` / ``python:init-network``
  (malicious).

Files are parsed with :mod:`ast` up to 1 MiB; beyond, or when they do not parse (Python 2,
truncated), patterns are used. Limits: code assembled by string operations at run time
(``getattr(m, 'ur' + 'lopen')``), names rebound through several modules, and a payload loaded by
a module the ``__init__`` imports (the module itself is not an ``__init__`` and is not analyzed
here; the YARA rules cover obfuscated Python anywhere).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from stockade.scanning.interfaces import Finding, Member, ScanSubject, Verdict
from stockade.scanning.scanners import pycode
from stockade.scanning.scanners.linkscripts import evidence

NAME: Final = "python"
_LOGIC_REVISION: Final = "4"  # 2: case-insensitive, links; 3: oversized; 4: casefold
MAX_PARSED_PTH_LINES: Final = 1000  # real .pth files run a handful of lines
_CUSTOMIZE: Final = frozenset({"sitecustomize.py", "usercustomize.py"})

RULES: Final[dict[str, Verdict]] = {
    "python:pth-exec-decoded": Verdict.MALICIOUS,
    "python:pth-network": Verdict.MALICIOUS,
    "python:pth-code": Verdict.SUSPICIOUS,
    "python:sitecustomize-exec-decoded": Verdict.MALICIOUS,
    "python:sitecustomize-network": Verdict.MALICIOUS,
    "python:sitecustomize": Verdict.SUSPICIOUS,
    "python:init-exec-decoded": Verdict.MALICIOUS,
    "python:init-network": Verdict.MALICIOUS,
    # Bigger than the engine keeps of a member: the rest, where a payload can sit, is unread.
    "python:oversized": Verdict.MALICIOUS,
}


def _fingerprint() -> str:
    parts = [f"{rule}|{verdict}" for rule, verdict in sorted(RULES.items())]
    parts += [
        pycode.REGEX_EXEC_CALL.pattern,
        pycode.REGEX_DECODE_CALL.pattern,
        pycode.REGEX_LOADS_CODE.pattern,
        pycode.REGEX_NETWORK.pattern,
        pycode.REGEX_EXEC.pattern,
        pycode.REGEX_PROCESS.pattern,
        str(pycode.MAX_PARSE_BYTES),
        str(MAX_PARSED_PTH_LINES),
    ]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    return f"{_LOGIC_REVISION}+{digest}"


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _in_site_packages(path: str) -> bool:
    path = path.casefold()  # ``Lib/Site-Packages`` on Windows (casefold: also non-ASCII folds)
    return path.startswith("site-packages/") or "/site-packages/" in path


def is_pth(path: str) -> bool:
    return path.endswith(".pth") and _in_site_packages(path)


def is_customize(path: str) -> bool:
    return _basename(path) in _CUSTOMIZE


def is_package_init(path: str) -> bool:
    return _basename(path) == "__init__.py" and _in_site_packages(path)


def _finding(rule: str, member: Member, excerpt: str, reason: str) -> Finding:
    return Finding(NAME, rule, RULES[rule], member.path, evidence(excerpt), {"reason": reason})


def _judged(
    prefix: str, found: pycode.Capabilities, member: Member, *, other: bool
) -> Finding | None:
    """The heaviest rule ``found`` breaks under ``prefix``; ``other``: also the suspicious one."""
    if found.exec_decoded:
        return _finding(f"{prefix}-exec-decoded", member, found.exec_decoded, "runs decoded data")
    if found.network:
        return _finding(f"{prefix}-network", member, found.network, "reaches the network")
    if other and found.any_code():
        return _finding(
            prefix if prefix != "python:pth" else "python:pth-code",
            member,
            found.any_code(),
            "runs code beyond imports and sys.path set-up",
        )
    return None


def executed_pth_lines(text: str) -> list[str]:
    """The lines of a ``.pth`` file that Python's ``site`` module runs."""
    return [line for line in text.splitlines() if line.startswith(("import ", "import\t"))]


class PythonScanner:
    """Finds code-running ``.pth`` files, site customization and import-time payloads."""

    name: Final = NAME
    version: Final = _fingerprint()

    def wants(self, path: str) -> bool:
        return is_pth(path) or is_customize(path) or is_package_init(path)

    def scan_member(self, subject: ScanSubject, member: Member) -> Iterable[Finding]:
        found = list(self._judge(member))
        if member.truncated and not any(f.verdict == Verdict.MALICIOUS for f in found):
            found.append(
                _finding("python:oversized", member, f"{member.size} bytes", "too large to read")
            )
        return found

    def _judge(self, member: Member) -> Iterable[Finding]:
        text = member.data.decode("utf-8", errors="replace")
        if is_pth(member.path):
            return self._pth(member, text)
        if is_customize(member.path):
            found = pycode.analyze(text)
            judged = _judged("python:sitecustomize", found, member, other=False)
            return [
                judged
                or _finding(
                    "python:sitecustomize", member, member.path, "runs at every interpreter start"
                )
            ]
        found = pycode.analyze(text, module_level_only=True)
        judged = _judged("python:init", found, member, other=False)
        return [judged] if judged else []

    def _pth(self, member: Member, text: str) -> list[Finding]:
        worst: Finding | None = None
        lines = list(dict.fromkeys(executed_pth_lines(text)))  # each distinct line once
        parsed = [pycode.analyze(line) for line in lines[:MAX_PARSED_PTH_LINES]]
        if len(lines) > MAX_PARSED_PTH_LINES:  # not a real .pth file: the rest by patterns
            parsed.append(pycode.analyze_text("\n".join(lines[MAX_PARSED_PTH_LINES:])))
        for found in parsed:
            judged = _judged("python:pth", found, member, other=True)
            if judged and (worst is None or judged.verdict.rank > worst.verdict.rank):
                worst = judged
        return [worst] if worst else []

    def finish(self, subject: ScanSubject) -> Iterable[Finding]:
        return ()
