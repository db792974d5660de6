"""Domain errors.

Every error the domain raises derives from :class:`StockadeError`. Edges (web, CLI, jobs) map the
``kind`` of an error to their own vocabulary: an HTTP status and an RFC 9457 problem body, a CLI exit
code, a failed job. Domain code never knows about HTTP.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    INVALID = "invalid"  # the input is malformed or breaks a rule (HTTP 400/422)
    UNAUTHENTICATED = "unauthenticated"  # no or bad credentials (401)
    FORBIDDEN = "forbidden"  # authenticated, not allowed, and existence may be known (403)
    NOT_FOUND = "not-found"  # does not exist or must not be revealed (404)
    CONFLICT = "conflict"  # clashes with current state (409)
    TOO_LARGE = "too-large"  # over a configured size cap (413)
    UNAVAILABLE = "unavailable"  # a dependency is down or the resource is busy (503)
    TOO_MANY = "too-many"  # rate limited (429)


class StockadeError(Exception):
    """Base of all domain errors.

    ``code`` is a short stable identifier of the rule that failed (``package:path-traversal``),
    ``detail`` a human sentence, ``extra`` machine-readable context (member, field, ...).
    Messages must never contain secrets.
    """

    kind: ErrorKind = ErrorKind.INVALID
    code: str = "error"
    title: str = "Request failed"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra: dict[str, Any] = extra


class InvalidInputError(StockadeError):
    kind = ErrorKind.INVALID
    code = "invalid-input"
    title = "Invalid input"


class NotFoundError(StockadeError):
    kind = ErrorKind.NOT_FOUND
    code = "not-found"
    title = "Not found"


class ConflictError(StockadeError):
    kind = ErrorKind.CONFLICT
    code = "conflict"
    title = "Conflict"


class AuthenticationError(StockadeError):
    kind = ErrorKind.UNAUTHENTICATED
    code = "unauthenticated"
    title = "Authentication required"


class PermissionDeniedError(StockadeError):
    kind = ErrorKind.FORBIDDEN
    code = "forbidden"
    title = "Permission denied"


class TooLargeError(StockadeError):
    kind = ErrorKind.TOO_LARGE
    code = "too-large"
    title = "Too large"


class UnavailableError(StockadeError):
    kind = ErrorKind.UNAVAILABLE
    code = "unavailable"
    title = "Service unavailable"


class TooManyRequestsError(StockadeError):
    """Rate limited; ``retry_after`` (seconds) goes into the ``Retry-After`` header."""

    kind = ErrorKind.TOO_MANY
    code = "rate-limited"
    title = "Too many requests"


class ConfigurationError(StockadeError):
    """A setting is missing or wrong; raised at start-up with a message naming the setting."""

    kind = ErrorKind.INVALID
    code = "configuration"
    title = "Configuration error"
