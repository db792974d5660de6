"""Turn a link or activation script into lines the link-script rules can match.

Not a shell parser: a few normalizing passes that undo the common ways of hiding a command from a
line-based pattern, so that ``curl \\<newline> http://x | sh``, ``U=http://x; curl $U | sh``,
``c''url``, ``c\\url``, ``${IFS}`` instead of spaces, ``^`` escapes in ``cmd`` and backtick escapes
in PowerShell all read as the plain command.

Limits (documented in the scanner): values computed at run time (``$(printf ...)``, arithmetic,
arrays, ``read`` from a file), variables set in another file, brace expansion, aliases and functions
that rename a command, and text hidden in an encoding the rules do not name are not recovered.
"""

from __future__ import annotations

import re
from typing import Final, Literal

Dialect = Literal["posix", "cmd", "powershell"]

MAX_SCRIPT_CHARS: Final = 256 * 1024  # beyond this, the rest of a script is not read
_MAX_EXPANDED_CHARS: Final = 1024 * 1024
_MAX_VALUE_CHARS: Final = 1000
_EXPANSION_ROUNDS: Final = 3

_CMD_SUFFIXES: Final = (".bat", ".cmd")
_PS_SUFFIXES: Final = (".ps1", ".psm1")

_POSIX_ASSIGN: Final = re.compile(
    r"(?:^|[;&|]\s*|\b(?:export|local|readonly|declare(?:\s+-\w+)*|typeset)\s+)"
    r"([A-Za-z_]\w*)=(\"[^\"\n]*\"|'[^'\n]*'|[^\s;&|]*)",
    re.MULTILINE,
)
_CSH_FISH_ASSIGN: Final = re.compile(
    r"^\s*(?:set(?:\s+-[a-zA-Z]+)*|setenv)\s+([A-Za-z_]\w*)\s*=?\s*(\"[^\"\n]*\"|'[^'\n]*'|\S+)",
    re.MULTILINE,
)
_CMD_ASSIGN: Final = re.compile(
    r"^\s*@?set\s+(?:/a\s+)?\"?([A-Za-z_][\w.-]*)=([^\"\n]*)\"?", re.MULTILINE | re.IGNORECASE
)
_PS_ASSIGN: Final = re.compile(
    r"\$(?:env:)?([A-Za-z_]\w*)\s*=\s*(\"[^\"\n]*\"|'[^'\n]*'|[^\s;|]+)", re.IGNORECASE
)
_FULL_LINE_COMMENT: Final = {
    "posix": re.compile(r"^\s*#(?!!).*$", re.MULTILINE),
    "cmd": re.compile(r"^\s*@?(?:rem(?:\s.*)?|::.*)$", re.MULTILINE | re.IGNORECASE),
    "powershell": re.compile(r"^\s*#.*$", re.MULTILINE),
}
_CONTINUATION: Final = {
    "posix": re.compile(r"\\\r?\n"),
    "cmd": re.compile(r"\^\r?\n"),
    "powershell": re.compile(r"`\r?\n"),
}
_OPEN_PIPE_END: Final = re.compile(r"(\|\||&&|\|)[ \t]*\r?\n")
_IFS: Final = re.compile(r"\$\{IFS\}|\$IFS\b")
_EMPTY_QUOTES: Final = re.compile(r"''|\"\"")
_BACKSLASH_LETTER: Final = re.compile(r"\\(?=[A-Za-z0-9_./:-])")
_WHITESPACE: Final = re.compile(r"[ \t]+")


def dialect_of(path: str) -> Dialect:
    """The shell a script at ``path`` is written for, judged by its suffix."""
    lowered = path.lower()
    if lowered.endswith(_CMD_SUFFIXES):
        return "cmd"
    if lowered.endswith(_PS_SUFFIXES):
        return "powershell"
    return "posix"  # sh, bash, zsh, csh, fish, xonsh: the patterns are shared


def decode_script(data: bytes) -> str:
    """The text of a script: UTF-16 when it has a UTF-16 byte-order mark, else UTF-8 (lossy)."""
    head = data[: MAX_SCRIPT_CHARS * 2]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="replace")[:MAX_SCRIPT_CHARS]
    return head[:MAX_SCRIPT_CHARS].decode("utf-8", errors="replace").removeprefix("\ufeff")


def _assignments(text: str, dialect: Dialect) -> dict[str, str]:
    patterns = {
        "posix": (_POSIX_ASSIGN, _CSH_FISH_ASSIGN),
        "cmd": (_CMD_ASSIGN,),
        "powershell": (_PS_ASSIGN,),
    }[dialect]
    found: dict[str, str] = {}
    for pattern in patterns:
        for match in pattern.finditer(text):
            value = match.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if len(value) <= _MAX_VALUE_CHARS:
                found.setdefault(match.group(1), value)
    return found


def _expand(text: str, dialect: Dialect) -> str:
    values = _assignments(text, dialect)
    if not values:
        return text
    names = "|".join(re.escape(name) for name in sorted(values, key=len, reverse=True))
    if dialect == "cmd":
        reference = re.compile(rf"%({names})%|!({names})!", re.IGNORECASE)
    elif dialect == "powershell":
        reference = re.compile(rf"\$(?:env:)?\{{?({names})\b\}}?(?!\s*=[^=])", re.IGNORECASE)
    else:
        reference = re.compile(rf"\$\{{({names})\}}|\$({names})\b")
    lowered = {name.lower(): value for name, value in values.items()}

    def substitute(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return lowered.get(name.lower(), match.group(0))

    for _ in range(_EXPANSION_ROUNDS):
        expanded = reference.sub(substitute, text)
        if expanded == text or len(expanded) > _MAX_EXPANDED_CHARS:
            break
        text = expanded
    return text


def _deobfuscate(text: str, dialect: Dialect) -> str:
    if dialect == "cmd":
        text = re.sub(r"\^(?=.)", "", text)
    elif dialect == "powershell":
        text = re.sub(r"`(?=[A-Za-z0-9-])", "", text)
    else:
        text = _IFS.sub(" ", text)
        text = _BACKSLASH_LETTER.sub("", text)
    return _EMPTY_QUOTES.sub("", text)


def logical_lines(data: bytes, path: str) -> list[str]:
    """The script's commands, one logical line each, normalized (see the module docstring).

    Every line comes twice when quotes change it: as written and with every quote removed, so
    that ``"c"url`` and ``'/etc/cron.d/x'`` match the same patterns as their plain spelling.
    """
    dialect = dialect_of(path)
    text = decode_script(data).replace("\r\n", "\n")
    text = _CONTINUATION[dialect].sub(" ", text)
    text = _FULL_LINE_COMMENT[dialect].sub("", text)
    text = _OPEN_PIPE_END.sub(r"\1 ", text)
    text = _deobfuscate(text, dialect)
    text = _expand(text, dialect)
    lines: list[str] = []
    for raw in text.split("\n"):
        line = _WHITESPACE.sub(" ", raw).strip()
        if not line:
            continue
        lines.append(line)
        unquoted = line.replace('"', "").replace("'", "")
        if unquoted != line:
            lines.append(unquoted)
    return lines
