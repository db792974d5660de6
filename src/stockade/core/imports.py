"""Optional modules kept out of a serving process: libraries that import extras when installed.

Rich, Pygments and click are installed for the CLI (progress bars, help). Two libraries of the
server import them too when they can, for features never used here: ``httpx`` its own command
line (``httpx._main``), ``structlog`` Rich's tracebacks (these logs are plain: Rich's show local
variables, and a local can be a secret). Together ~80 modules, ~60 ms of a start and several MiB
in every process. Each library copes with their absence, which :func:`hidden_modules` gives it
for the length of its import."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


@contextmanager
def hidden_modules(names: Iterable[str]) -> Iterator[None]:
    """Within the block, ``import name`` raises ImportError for each of ``names`` not imported
    yet; afterwards they import normally again."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
