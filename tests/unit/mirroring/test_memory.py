"""A run gives memory back (a full garbage collection and malloc_trim) only when it was big."""

from __future__ import annotations

import pytest

from stockade.mirroring import memory


def test_only_a_big_run_gives_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "return_memory", lambda: calls.append(1) or True)
    assert memory.after_run(50) is False
    assert memory.after_run(memory.BIG_RUN - 1) is False
    assert calls == []
    assert memory.after_run(memory.BIG_RUN) is True
    assert memory.after_run(600_000) is True
    assert calls == [1, 1]
