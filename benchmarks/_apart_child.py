"""A mirror run's own process for ``bench_mirror_scale.py`` (the default, ``--placement apart``).

It is ``stockade.jobs.apart``'s ``main``, as the job runtime starts it, with one addition: the
benchmark's write timer on the engine of the container it builds. The timer's figures go, as JSON,
to the file named by ``BENCH_WRITES_OUT``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench_mirror_scale import WriteTimer  # noqa: E402

from stockade.jobs import apart  # noqa: E402

timers: list[WriteTimer] = []
_build = apart.Container.build


def _timed_build(settings: Any) -> Any:
    container = _build(settings)
    timers.append(WriteTimer(container.engine))
    return container


_finish = apart.finish


def _write_then_finish(status: int) -> NoReturn:
    timer = timers[0]
    Path(os.environ["BENCH_WRITES_OUT"]).write_text(
        json.dumps({"longest": timer.longest, "what": timer.what, "count": timer.count})
    )
    _finish(status)


if __name__ == "__main__":
    apart.Container.build = _timed_build  # type: ignore[method-assign]
    apart.finish = _write_then_finish
    apart.main([apart.MIRROR_RUN, *sys.argv[1:]])
