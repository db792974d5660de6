"""The rule table of the link-script scanner: one pattern per rule, matched on normalized lines.

Each rule id is stable (``link-script:<what>``); its verdict is part of the table, and the table's
hash is part of the scanner's version, so changing a pattern triggers a rescan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from stockade.scanning.interfaces import Verdict

_I: Final = re.IGNORECASE

# A command word at the start of a pipeline stage: after a pipe, `sudo`, `env`, or a path to it.
# It starts a word (so a search tries it only at word starts: linear on any line), then an optional
# path such as ``/usr/bin/``.
_RUNNER: Final = (
    r"(?<![^\s;&|(`'\"=])(?:(?:sudo|doas|env|command|exec|nohup)(?:\s+-\S+)*\s+)*"
    r"(?:/?(?:[\w.${}%-]+[/\\])*)"
)
SHELLS: Final = r"(?:ba|z|da|k|c|tc|a|mk)?sh|fish|xonsh|busybox\s+sh"
INTERPRETERS: Final = r"python[\d.]*|pypy[\d.]*|perl|ruby|node|nodejs|php|lua|Rscript|osascript"
_PS_EXEC: Final = r"iex|invoke-expression"
# Where a command starts (not inside an ``echo`` message): the line's start, after ``;``, ``&&``,
# ``|``, ``$(``, a backtick, or a keyword, then ``sudo``-like words and a path.
_COMMAND_START: Final = (
    r"(?:^|[;&|(`]\s*|\$\(\s*|(?:\b(?:then|do|else|if)|!)\s+)"
    r"(?:(?:sudo|doas|env|command|exec|nohup)(?:\s+-\S+)*\s+)*(?:/?(?:[\w.${}%-]+[/\\])*)"
)
SINK: Final = rf"{_RUNNER}(?:{SHELLS}|{INTERPRETERS}|pwsh|powershell(?:\.exe)?|cmd(?:\.exe)?)\b"
FETCHERS: Final = (
    r"curl|wget|wget2|fetch|aria2c|lwp-request|lwp-download|http(?:ie)?|axel|tftp|"
    r"invoke-webrequest|invoke-restmethod|iwr|irm|start-bitstransfer|bitsadmin"
)
FETCH: Final = rf"(?<![\w.$%-])(?:{FETCHERS})(?:\.exe)?\b"
_WEBCLIENT: Final = r"(?:net\.webclient|downloadstring|downloaddata|downloadfile|webrequest]::)"
_PIPE: Final = r"(?<!\|)\|(?!\|)\s*"
_DECODERS: Final = (
    r"base64\s+(?:-\w+\s+)*(?:-[a-ce-z]*[dD]\w*|--decode)\b|base32\s+(?:-\w+\s+)*-d\b|"
    r"openssl\s+(?:enc\s+)?(?:-\S+\s+)*-(?:d|a|base64)\b|xxd\s+(?:-\w+\s+)*-r\b|uudecode|"
    r"gunzip|zcat|(?:gzip|bzip2|xz|zstd)\s+(?:-\w+\s+)*-d\b|\brev\b|tr\s+['\"]?a-z['\"]?\s+['\"]?n-za-m"
)
_PY_DECODE: Final = (
    r"b64decode|b32decode|b85decode|a85decode|decodebytes|decodestring|unhexlify|a2b_base64|"
    r"fromhex|decompress|marshal\.loads|pickle\.loads|codecs\.decode|rot.?13|decode\(['\"]hex"
)
_PY_NETWORK: Final = (
    r"urllib|urlopen|urlretrieve|requests\.(?:get|post|request)|http\.client|httpx|urllib3|"
    r"socket\.(?:create_connection|socket)|ftplib|LWP::|IO::Socket|HTTP::Tiny|open-uri|"
    r"Net::HTTP|https?\.get\(|https?\.request\(|require\(['\"]https?['\"]\)|file_get_contents\(['\"]?https?:"
)
_INLINE: Final = rf"(?<![\w.-])(?:{INTERPRETERS})(?:\s+-[\w-]+)*\s+-[ceE]\b"


# In a pattern, "anything on the same line, then". A pattern is cut at its gaps and the parts are
# searched for in order, each from where the previous one ended: linear in the line's length,
# where one regular expression with ``[^\n]*`` would be quadratic on a hostile line.
GAP: Final = "(?#gap)"


# Python's ``re`` runs these patterns about twice as fast with ASCII classes (``re.ASCII``), and on
# a line of ASCII characters both give the same answer, except that Unicode ``\s`` also takes the
# separators \x1c-\x1f: a line with none of those and nothing beyond ASCII takes the ASCII twins.
_NEEDS_UNICODE: Final = re.compile(r"[^\x00-\x1b\x20-\x7f]")


@dataclass(frozen=True)
class LineRule:
    """Patterns any of which, found on one logical line of a script, gives a finding."""

    rule: str
    verdict: Verdict
    alternatives: tuple[tuple[re.Pattern[str], ...], ...]
    what: str
    ascii_alternatives: tuple[tuple[re.Pattern[str], ...], ...] = field(
        default=(), repr=False, compare=False
    )  # the same patterns with ``re.ASCII``, for the lines where they agree (see above)

    def search(self, line: str) -> bool:
        """Whether one of the patterns is on ``line``."""
        alternatives = self.alternatives
        if self.ascii_alternatives and _NEEDS_UNICODE.search(line) is None:
            alternatives = self.ascii_alternatives
        for parts in alternatives:
            position = 0
            for part in parts:
                match = part.search(line, position)
                if match is None:
                    break
                position = match.end()
            else:
                return True
        return False

    @property
    def source(self) -> str:
        return "|".join(GAP.join(p.pattern for p in parts) for parts in self.alternatives)


def _rule(rule: str, verdict: Verdict, what: str, *patterns: str) -> LineRule:
    def compiled(flags: int) -> tuple[tuple[re.Pattern[str], ...], ...]:
        return tuple(
            tuple(re.compile(part, flags) for part in pattern.split(GAP)) for pattern in patterns
        )

    return LineRule(f"link-script:{rule}", verdict, compiled(_I), what, compiled(_I | re.ASCII))


M, S = Verdict.MALICIOUS, Verdict.SUSPICIOUS

LINE_RULES: Final[tuple[LineRule, ...]] = (
    _rule(
        "fetch-pipe-shell",
        M,
        "downloads code and runs it through a shell or interpreter",
        rf"{FETCH}(?#gap){_PIPE}{SINK}",
        rf"(?:{FETCH}|{_WEBCLIENT})(?#gap){_PIPE}(?:{_PS_EXEC})\b",
        rf"(?:\b(?:{_PS_EXEC})\b|\.invoke\(|scriptblock\]::create)(?#gap)(?:{FETCH}|{_WEBCLIENT})",
        rf"(?:\beval|\bsource|(?<![\w.])\.|{SINK}(?:\s+-\w+)*)\s+[\"']?\s*(?:\$\(|<\(|`)\s*{FETCH}",
        rf"{_RUNNER}(?:{SHELLS})\s+-c\s+[\"']?\s*(?:\$\(|`)\s*{FETCH}",
        # Windows programs that run a script they fetch: mshta, regsvr32 /i:URL, rundll32 + script
        r"\bmshta(?:\.exe)?\s+[\"']?(?:https?|ftp)://",
        r"\bregsvr32(?:\.exe)?\s+(?#gap)/i:[\"']?(?:https?|ftp)://",
        r"\brundll32(?:\.exe)?\s+(?#gap)(?:javascript|vbscript):",
    ),
    _rule(
        "inline-interpreter-fetch",
        M,
        "an inline interpreter program that reaches the network",
        rf"{_INLINE}(?#gap)(?:{_PY_NETWORK})",
    ),
    _rule(
        "decode-exec",
        M,
        "decodes hidden data and runs it",
        rf"(?:{_DECODERS})(?#gap){_PIPE}{SINK}",
        rf"(?:\beval|\bsource|(?<![\w.])\.|{SINK}(?:\s+-\w+)*)\s+[\"']?\s*(?:\$\(|<\(|`)(?#gap)(?:{_DECODERS})",
        rf"{_INLINE}(?#gap)\b(?:exec|eval|compile)\s*\((?#gap)(?:{_PY_DECODE})",
        r"(?:powershell|pwsh)(?:\.exe)?\s+(?:-\w+\s+)*-e(?:nc|ncodedcommand)?\s+[A-Za-z0-9+/=]{16,}",
        rf"frombase64string(?#gap)(?:\b(?:{_PS_EXEC})\b|\.invoke\(|scriptblock\]::create)",
        rf"(?:\b(?:{_PS_EXEC})\b|\.invoke\(|scriptblock\]::create)(?#gap)frombase64string",
        r"(?:perl|ruby)\s+(?:-\w+\s+)*-e\s+(?#gap)\beval\b(?#gap)(?:decode_base64|decode64|unpack)",
    ),
    _rule(
        "reverse-shell",
        M,
        "opens a shell for a remote party",
        r"/dev/(?:tcp|udp)/",
        r"(?<![\w.-])(?:nc|ncat|netcat|nc\.traditional|nc\.openbsd)\s+(?#gap)(?<!\S)-[a-z]*[ec]\s",
        rf"(?<![\w.-])(?:{SHELLS})\s+-i\b(?#gap)[<>]&",
        r"\bsocat\b(?#gap)\b(?:exec|system):",
        r"\bmkfifo\b(?#gap)\b(?:nc|ncat|netcat|telnet|openssl\s+s_client)\b",
        r"socket(?#gap)connect(?#gap)(?:dup2|pty\.spawn|subprocess|/bin/(?:ba)?sh)",
        r"net\.sockets\.tcpclient",
    ),
    _rule(
        "ssh-keys",
        M,
        "touches ssh keys or the ssh configuration",
        r"authorized_keys2?\b",
        r"\bssh-copy-id\b",
    ),
    _rule(
        "cron",
        M,
        "installs a scheduled job",
        r"(?:^|[;&|(]\s*|\b(?:sudo|doas)\s+)crontab\b(?!\s+-l\b)",
        r"\bschtasks(?:\.exe)?\s+/create\b",
        r"\bregister-scheduledtask\b",
        r"\bat\s+now\b",
    ),
    _rule(
        "privilege",
        M,
        "grants elevated privileges (setuid, sudoers, capabilities)",
        r"\bchmod\s+(?:-\w+\s+)*(?:[ugoa]*[+=][rwxXt]*s|0?[2-7][0-7]{3}\b)",
        r"/etc/sudoers|\bvisudo\b|\bsetcap\b",
        r"\busermod\s+(?#gap)-a?G\s*(?:sudo|wheel|admin)\b",
        r"/etc/ld\.so\.preload|/etc/(?:passwd|shadow)\b",
    ),
    _rule(
        "disable-security",
        M,
        "turns off a security control",
        r"\bsetenforce\s+(?:0|permissive)\b|\bufw\s+disable\b|\bauditctl\s+-e\s*0\b",
        r"\b(?:systemctl|service)\s+(?#gap)\b(?:stop|disable|mask|kill)\b(?#gap)"
        r"\b(?:auditd|apparmor|firewalld|ufw|clamav\S*|falcon-sensor|osqueryd|wazuh\S*|"
        r"ossec\S*|sysmon|rsyslog|syslog)\b",
        r"\bservice\s+(?:auditd|apparmor|firewalld|ufw)\s+stop\b",
        r"\biptables\s+(?:-\w+\s+)*-F\b|\bspctl\s+--master-disable\b|\bcsrutil\s+disable\b",
        r"\bset-mppreference\b(?#gap)-disable\w*",
        r"\badd-mppreference\b(?#gap)-exclusion\w*",
        r"\bnetsh\s+(?:adv)?firewall\s+(?#gap)\bstate\s+off\b",
        r"\bsc(?:\.exe)?\s+(?:stop|config|delete)\s+(?:windefend|wscsvc|mpssvc)\b",
        r"\bunset\s+HISTFILE\b|\bhistory\s+-c\b",
    ),
    _rule(
        "network-fetch",
        S,
        "reaches the network at install or activation time",
        rf"{_COMMAND_START}{FETCH}(?#gap)(?:https?|ftp|tftp)://",
        rf"{_WEBCLIENT}",
        r"\bcertutil(?:\.exe)?\s+(?#gap)-urlcache\b",
        rf"{_COMMAND_START}(?:pip[\d.]*|conda|mamba|micromamba|npm|gem)\s+install\b",
        rf"{_COMMAND_START}(?:git\s+clone\b|scp\s+\S+@)",
    ),
)

# Paths a script must not write to: the category names the rule, the verdict is malicious.
SENSITIVE_TARGETS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    (
        "link-script:shell-profile",
        re.compile(
            r"(?:^|[/\\])\.(?:bashrc|bash_profile|bash_login|bash_logout|profile|zshrc|zprofile|"
            r"zshenv|zlogin|cshrc|tcshrc|kshrc|mkshrc|login|xonshrc|inputrc)$|"
            r"/etc/(?:profile|bash\.bashrc|bashrc|zsh|zshrc|zprofile|environment|csh\.|fish/)|"
            r"\.config/fish/|powershell_profile\.ps1$|^\$profile\b",
            _I,
        ),
    ),
    ("link-script:cron", re.compile(r"/etc/cron|/var/spool/cron|/etc/anacrontab|crontabs?/", _I)),
    ("link-script:ssh-keys", re.compile(r"(?:^|[/\\])\.ssh(?:[/\\]|$)|/etc/ssh/", _I)),
    (
        "link-script:privilege",
        re.compile(r"/etc/(?:sudoers|passwd|shadow|group|gshadow|ld\.so\.preload|pam\.d)", _I),
    ),
    (
        "link-script:autostart",
        re.compile(
            r"/etc/systemd/|\.config/systemd/|/etc/init\.d/|/etc/rc\.local|/etc/xdg/autostart|"
            r"\.config/autostart|launchagents[/\\]|launchdaemons[/\\]|"
            r"start menu[/\\]programs[/\\]startup|currentversion[/\\]run",
            _I,
        ),
    ),
)

WRITE_OUTSIDE_PREFIX: Final = "link-script:write-outside-prefix"

# Where writing is not "outside the prefix": the prefix itself, temporary files, the null device.
ALLOWED_TARGET: Final = re.compile(
    r"^(?:\$\{?(?:PREFIX|CONDA_PREFIX|SP_DIR|TMPDIR|TMP|TEMP)\b\}?|"
    r"%(?:PREFIX|CONDA_PREFIX|TEMP|TMP)%|\$env:(?:PREFIX|CONDA_PREFIX|TEMP|TMP)\b|"
    r"/dev/(?:null|stdout|stderr|tty|fd/)|/tmp/|/var/tmp/|/tmp$|nul$|\$null$)",
    _I,
)
ABSOLUTE_TARGET: Final = re.compile(
    r"^(?:/|~|\$\{?HOME\b|%(?:USERPROFILE|HOMEDRIVE|HOMEPATH|APPDATA|LOCALAPPDATA|PROGRAMDATA|"
    r"ALLUSERSPROFILE|SYSTEMROOT|WINDIR|PROGRAMFILES[^%]*|PUBLIC)%|"
    r"\$env:(?:USERPROFILE|APPDATA|LOCALAPPDATA|PROGRAMDATA|SYSTEMROOT|WINDIR|HOME)\b|"
    r"\$profile\b|[A-Za-z]:[\\/]|\\\\)",
    _I,
)
PARENT_SEGMENT: Final = re.compile(r"(?:^|[/\\])\.\.(?:[/\\]|$)")

# Commands whose arguments are files they write (or change): cp-like ones write the last one.
LAST_ARG_WRITERS: Final = frozenset(
    {
        "cp",
        "mv",
        "install",
        "ln",
        "rsync",
        "copy",
        "xcopy",
        "move",
        "robocopy",
        "copy-item",
        "move-item",
        "cpi",
        "mi",
        "sed",
    }
)
ALL_ARG_WRITERS: Final = frozenset(
    {
        "tee",
        "touch",
        "truncate",
        "set-content",
        "add-content",
        "out-file",
        "new-item",
        "ac",
        "mklink",
    }
)
# Commands whose arguments are checked against the sensitive paths only (they change, not write).
SENSITIVE_ONLY: Final = frozenset({"chmod", "chown", "chgrp", "reg", "icacls", "attrib"})


def table_fingerprint() -> str:
    """Every pattern and verdict of this table, as one string to hash into the version."""
    parts = [f"{r.rule}|{r.verdict}|{r.source}" for r in LINE_RULES]
    parts += [f"{rule}|{pattern.pattern}" for rule, pattern in SENSITIVE_TARGETS]
    parts += [
        WRITE_OUTSIDE_PREFIX,
        ALLOWED_TARGET.pattern,
        ABSOLUTE_TARGET.pattern,
        PARENT_SEGMENT.pattern,
    ]
    parts += sorted(LAST_ARG_WRITERS) + sorted(ALL_ARG_WRITERS) + sorted(SENSITIVE_ONLY)
    return "\n".join(parts)
