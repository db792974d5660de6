from stockade.core.errors import ConflictError, NotFoundError


class PolicyNotFoundError(NotFoundError):
    code = "policy:not-found"


class PolicyExistsError(ConflictError):
    code = "policy:exists"


class PolicyInUseError(ConflictError):
    code = "policy:in-use"
