from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError, UnavailableError


class TrustMetadataError(InvalidInputError):
    """Trust metadata (root or key_mgr) that is malformed or does not verify."""

    code = "signing:bad-metadata"


class SigningNotSetUpError(NotFoundError):
    code = "signing:not-set-up"


class SigningExistsError(ConflictError):
    code = "signing:exists"


class KeyFileError(InvalidInputError):
    code = "signing:bad-key"


class SignerUnavailableError(UnavailableError):
    """No private key (file or external signer) matches the key the chain delegates to."""

    code = "signing:no-signer"
