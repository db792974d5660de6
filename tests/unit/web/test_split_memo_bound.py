"""The conda paths ``web/channel/routes.py`` remembers split stay bounded in bytes whatever
clients send (review of issue 18): at most 4096 paths of at most 512 characters."""

from __future__ import annotations

import tracemalloc

from stockade.web.channel.routes import _split_path, _split_usual


def test_the_split_memo_is_bounded_in_bytes() -> None:
    _split_usual.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(6000):
            _split_path(f"/conda/{n:06d}{'c' * 200}/{'s' * 100}/{'f' * 190}.conda")
        for n in range(100):  # longer paths are split each time, never remembered
            _split_path(f"/conda/{n:06d}{'c' * 600}/noarch/x-1-0.conda")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        _split_usual.cache_clear()
    assert held < 8 * 1024**2, f"{held} bytes held by the split memo"
