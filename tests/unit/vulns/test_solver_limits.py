"""The solver is shared by anonymous report requests: a bounded number run at once."""

from __future__ import annotations

import threading

import pytest

from stockade.core.errors import ErrorKind
from stockade.vulns import trees


def test_a_busy_solver_answers_429_instead_of_queueing_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trees, "_SOLVES", threading.BoundedSemaphore(1))
    monkeypatch.setattr(trees, "SOLVE_WAIT_S", 0.01)
    assert trees._SOLVES.acquire(timeout=1)  # one solve is running
    try:
        with pytest.raises(trees.SolverBusyError) as caught:
            trees.TreeBuilder._run_solver(["numpy"], [], "linux-64")
    finally:
        trees._SOLVES.release()
    assert caught.value.kind is ErrorKind.TOO_MANY
    assert caught.value.extra.get("retry_after") == 5


def test_an_invalid_spec_is_refused_before_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(trees.InvalidInputError):
        trees.TreeBuilder._run_solver(["numpy >>= 1"], [], "linux-64")
