"""YAML from strangers: safe construction, and no aliases.

``yaml.safe_load`` builds no objects, but it still expands aliases: a 600-byte document of nested
``&a [*b, *b, …]`` anchors becomes gigabytes (the "billion laughs"). Environment files and feed
records never need aliases, so a document that uses one is refused before it is built. Nesting
too deep for the parser is refused too (``RecursionError`` is not a ``YAMLError``).
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["YamlRefusedError", "load"]

_SAFE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BASE: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


class YamlRefusedError(yaml.YAMLError):
    """A well-formed document we do not read (an alias, or nesting too deep)."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


def load(text: str | bytes, *, strings_only: bool = False) -> Any:
    """Parse ``text``; with ``strings_only`` every scalar stays a string (``1.10`` is not 1.1)."""
    loader = _BASE if strings_only else _SAFE
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                raise YamlRefusedError("YAML aliases (*name) are not accepted", event.start_mark)
        return yaml.load(text, Loader=loader)  # noqa: S506 - safe and base loaders build no objects
    except RecursionError:
        raise YamlRefusedError("the document is nested too deeply") from None
