"""Errors raised while reading and validating conda packages.

Every error names the rule that failed (``package:<rule>``) and, where it helps, the archive member
or the ``info/index.json`` field involved, so an edge can report it in a problem body.
"""

from __future__ import annotations

from typing import Any

from stockade.core.errors import InvalidInputError, TooLargeError

_MAX_SHOWN = 300


def printable(value: str) -> str:
    """Return ``value`` safe to put in a message: control characters escaped, length bounded."""
    shown = repr(value)[1:-1]
    if len(shown) > _MAX_SHOWN:
        shown = shown[:_MAX_SHOWN] + "..."
    return shown


def _extra(rule: str, member: str | None, field: str | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"rule": rule}
    if member is not None:
        extra["member"] = printable(member)
    if field is not None:
        extra["field"] = field
    return extra


class PackageValidationError(InvalidInputError):
    """The package breaks a validation rule; ``code`` is ``package:<rule>``."""

    title = "Invalid package"

    def __init__(
        self, rule: str, detail: str, *, member: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(detail, code=f"package:{rule}", **_extra(rule, member, field))
        self.rule = rule
        self.member = member
        self.field = field


class PackageTooLargeError(TooLargeError):
    """The package is over a size, ratio or count cap; ``code`` is ``package:<rule>``."""

    title = "Package too large"

    def __init__(
        self, rule: str, detail: str, *, member: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(detail, code=f"package:{rule}", **_extra(rule, member, field))
        self.rule = rule
        self.member = member
        self.field = field
