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
