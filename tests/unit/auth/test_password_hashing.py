"""argon2id parameters of password hashes: the library's by default, set by ``[auth.password_hash]``
(the test suite runs at the floor, tests/conftest.py), never below OWASP's minimum."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import extract_parameters

from stockade.auth import secrets
from stockade.core.errors import ConfigurationError
from stockade.settings import PasswordHashSettings, load_settings


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    before = secrets._Hashing.hasher
    yield
    secrets._Hashing.hasher = before
    secrets._dummy_hash.cache_clear()


def test_production_defaults_are_the_libraries() -> None:
    default = PasswordHashSettings()
    assert (default.time_cost, default.memory_kib, default.parallelism) == (3, 65536, 4)


def test_configured_parameters_are_used_and_older_hashes_still_verify() -> None:
    old = secrets.hash_password("correct horse")
    secrets.configure_password_hashing(time_cost=4, memory_kib=20000, parallelism=2)
    new = secrets.hash_password("correct horse")
    parameters = extract_parameters(new)
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (4, 20000, 2)
    assert secrets.verify_password(old, "correct horse")
    assert secrets.verify_password(new, "correct horse")
    assert not secrets.verify_password(new, "wrong")
    assert not secrets.verify_password(None, "correct horse")  # an unknown name


@pytest.mark.parametrize(
    ("field", "value"), [("time_cost", 1), ("memory_kib", 8192), ("parallelism", 0)]
)
def test_below_the_floor_is_refused_at_start(field: str, value: int) -> None:
    with pytest.raises(ConfigurationError, match=field):
        load_settings(auth={"password_hash": {field: value}})
