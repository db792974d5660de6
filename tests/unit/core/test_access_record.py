"""The access line's own log record (``core.logging.AccessRecord``) carries every attribute a
``logging.LogRecord`` has, so any formatter or handler (pytest's, an operator's) takes it."""

from __future__ import annotations

import logging
import os
import threading

from stockade.core.logging import ACCESS_LOGGER, AccessRecord

EVERY_FIELD = (
    "%(asctime)s %(created)f %(msecs)d %(relativeCreated)d %(levelname)s %(levelno)d %(name)s "
    "%(process)d %(processName)s %(thread)d %(threadName)s %(pathname)s %(filename)s "
    "%(module)s %(lineno)d %(funcName)s %(message)s"
)


def test_it_has_every_attribute_of_a_log_record() -> None:
    full = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "line", None, None)
    ours = AccessRecord("line")
    assert set(vars(full)) - {"taskName"} <= set(vars(ours))
    assert (ours.name, ours.levelno, ours.getMessage()) == (ACCESS_LOGGER, logging.INFO, "line")
    assert ours.process == os.getpid() and ours.thread == threading.get_ident()


def test_any_formatter_formats_it() -> None:
    line = logging.Formatter(EVERY_FIELD).format(AccessRecord("GET /conda/x 304"))
    assert " INFO 20 stockade.access " in line
    assert line.endswith("GET /conda/x 304")
    assert threading.current_thread().name in line
