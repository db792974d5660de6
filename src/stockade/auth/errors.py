from stockade.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)


class InvalidCredentialsError(AuthenticationError):
    code = "auth:invalid-credentials"


class AccountLockedError(AuthenticationError):
    code = "auth:locked"


class UserExistsError(ConflictError):
    code = "user:exists"


class UserNotFoundError(NotFoundError):
    code = "user:not-found"


class TokenNotFoundError(NotFoundError):
    code = "token:not-found"


class WeakPasswordError(InvalidInputError):
    code = "user:weak-password"


class AccessDeniedError(PermissionDeniedError):
    code = "access:denied"


class GroupNotFoundError(NotFoundError):
    code = "group:not-found"


class GroupExistsError(ConflictError):
    code = "group:exists"


class RoleNotFoundError(NotFoundError):
    code = "role:not-found"


class RoleExistsError(ConflictError):
    code = "role:exists"


class ManagedElsewhereError(ConflictError):
    """The object comes from LDAP/OIDC or is built in; it cannot be changed here."""

    code = "managed-elsewhere"


class OidcError(InvalidInputError):
    """A single sign-on step failed for a reason the user can be told about (HTTP 400)."""

    code = "oidc:error"
    title = "Single sign-on failed"
