"""Encrypt secrets we must be able to send on (an upstream mirror's token), unlike our own
passwords and tokens, which are only ever hashed.

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``. The key comes from settings
(``secret_key``, the same on every replica) or, in the embedded default, from a key file created
once under the data folder with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from stockade.core.errors import ConfigurationError

KEY_FILE = "secret.key"


class SecretBox:
    def __init__(self, key_material: bytes) -> None:
        # Any string becomes a Fernet key by hashing, so admins may set a passphrase.
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(key_material).digest()))

    @classmethod
    def from_settings(cls, secret_key: str | None, data_dir: Path) -> SecretBox:
        if secret_key:
            return cls(secret_key.encode())
        return cls(_key_file(data_dir / KEY_FILE))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored credential cannot be decrypted: secret_key differs from the one that "
                "encrypted it (set the same STOCKADE_SECRET_KEY everywhere, or store the "
                "credential again)"
            ) from None


def _key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
