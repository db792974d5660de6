"""Passwords (argon2id) and random secrets (tokens, sessions: sha256 of 256 random bits)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TOKEN_PREFIX = "stk-"  # noqa: S105 (a public prefix, not a secret)
LEGACY_TOKEN_PREFIX = "stk_"  # noqa: S105 (tokens issued before issue 11; still accepted)
TOKEN_PREFIXES = (TOKEN_PREFIX, LEGACY_TOKEN_PREFIX)
# [A-Za-z0-9] only: conda finds a URL token with ``/t/([a-zA-Z0-9-]*)`` (SPEC §4).
TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 43  # 43 characters of 62: 256 bits


# argon2id; the library's recommended parameters until the composition root sets the configured
# ones (``[auth.password_hash]``, ``configure_password_hashing``), once per process at start.
class _Hashing:
    hasher = PasswordHasher()


def _hasher() -> PasswordHasher:
    return _Hashing.hasher


@functools.cache
def _dummy_hash() -> str:
    """A fixed hash to verify against when the user does not exist, so timing does not reveal
    it; made on first use (an argon2 hash costs ~0.2 s of CPU, at every process start before)."""
    return _hasher().hash("stockade-dummy-password")


def configure_password_hashing(*, time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Hash new passwords with these argon2id parameters (validated by the settings)."""
    now = _Hashing.hasher
    if (time_cost, memory_kib, parallelism) == (now.time_cost, now.memory_cost, now.parallelism):
        return
    _Hashing.hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
    )
    _dummy_hash.cache_clear()  # an unknown name costs what a known one does


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return (
            _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """``stk-`` + 43 letters and digits (256 bits): recognisable by secret scanners, and
    whole in every URL form a conda client parses (no ``_``, which conda's token pattern stops at).
    """
    return TOKEN_PREFIX + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def looks_like_token(value: str) -> bool:
    """A Stockade token: ``stk-…`` (issued now) or ``stk_…`` (issued before; still accepted)."""
    return value.startswith(TOKEN_PREFIXES) and 20 <= len(value) <= 128


def hash_secret(secret: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough (no dictionary to guess from)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_password() -> str:
    return secrets.token_urlsafe(18)
