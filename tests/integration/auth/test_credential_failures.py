"""A remembered failure of the credential cache is raised as a fresh copy on every hit.

Raising the one kept exception again added each request's frames (and through them its scope and
headers) to the same traceback: 200 requests with one wrong token left a traceback of 805 frames,
growing for as long as the entry lived, reachable without signing in (review 18).
"""

from __future__ import annotations

import traceback

import pytest

from stockade.auth.authenticator import Credentials
from stockade.container import Container
from stockade.core.errors import AuthenticationError

WRONG = Credentials(token="stk-" + "x" * 43)


def _fail(container: Container) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        container.authenticator.authenticate(WRONG)
    return caught.value


def test_a_cached_failure_does_not_grow_with_each_hit(container: Container) -> None:
    first = _fail(container)
    errors = [_fail(container) for _ in range(50)]
    depths = {len(traceback.extract_tb(e.__traceback__)) for e in errors}
    assert max(depths) <= len(traceback.extract_tb(first.__traceback__)) + 2, depths
    assert len({id(e) for e in errors}) == len(errors)  # a copy each time
    assert {(e.code, e.detail) for e in errors} == {(first.code, first.detail)}
