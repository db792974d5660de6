"""Fault injection for crash tests: die on the spot at a named point of a multi-step operation.

Set ``STOCKADE_TEST_CRASH_AT`` to ``POINT`` (die the first time the point is reached) or to
``POINT@N`` (die the N-th time). The process then ends with ``os._exit(137)``, as if SIGKILLed: no
``finally`` block, no commit, no flush. Unset (always, outside tests), :func:`crash_point` is a
dictionary lookup and a return.

The variable is read once, at the first call. Points in the code:

- ``upload:after-blob``: the package bytes are in the blob store, the database row not yet committed.
- ``publication:after-blobs``: a subdir's new index files are in the blob store, the subdir not yet
  switched to them.
- ``publication:after-switch``: a subdir's index is switched in (committed, its channel's
  channeldata.json asked for), not yet rebuilt nor counted.
- ``signing:after-batch``: a batch of record signatures is stored, the publication that signs them
  not yet switched (a restart signs only what is left).
- ``mirror:after-batch``: a batch of a mirror run's new rows is staged and committed, the run not
  yet switched (a resumed attempt keeps the rows already staged).
- ``mirror:before-commit``: a mirror run's switching transaction is written, not yet committed.
- ``match:before-commit``: a batch's vulnerability matches are written and its match requests
  deleted, not yet committed (the requests stay leased; the match-request loop redoes them).
"""

from __future__ import annotations

import os
import threading

ENV_VAR = "STOCKADE_TEST_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL

_lock = threading.Lock()
_config: tuple[str, int] | None = None
_loaded = False
_hits = 0


def _parse(value: str) -> tuple[str, int] | None:
    value = value.strip()
    if not value:
        return None
    name, _, count = value.partition("@")
    return name, max(int(count), 1) if count else 1


def crash_point(name: str) -> None:
    """End the process at once if ``STOCKADE_TEST_CRASH_AT`` names this point (and hit count)."""
    global _config, _loaded, _hits  # noqa: PLW0603 - process-wide switch, read once
    if _loaded and _config is None:
        return
    with _lock:
        if not _loaded:
            _config = _parse(os.environ.get(ENV_VAR, ""))
            _loaded = True
        if _config is None or _config[0] != name:
            return
        _hits += 1
        if _hits >= _config[1]:
            os._exit(EXIT_CODE)
