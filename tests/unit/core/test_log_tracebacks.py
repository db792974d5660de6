"""An error's traceback reaches the log as text, in both formats, with its secrets scrubbed.

The JSON format used to print ``exc_info`` as the repr of a tuple (a class, a message and
``<traceback object at ...>``): a 500's answer says "see the server log", and the log had no
traceback. Libraries' records (huey's "Error reading from queue") went the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from stockade.core.logging import configure_logging, scrub
from stockade.core.urls import redact_text

TOKEN = "stk-" + "Ab3" * 10
URL = f"https://deploy:hunter2-pass@mirror.example/t/{TOKEN}/conda-forge"


def fail_deep_inside() -> None:
    raise ConnectionError(f"cannot reach {URL}")


@pytest.fixture
def restore() -> Iterator[None]:
    yield
    configure_logging("info", "json")


def logged(capsys: pytest.CaptureFixture[str], fmt: str, library: bool) -> str:
    configure_logging("info", fmt)
    try:
        fail_deep_inside()
    except ConnectionError as exc:
        if library:  # a stdlib logger, as huey's and uvicorn's are
            logging.getLogger("some.library").exception("Error reading from queue")
        else:
            structlog.get_logger("stockade.web").error("unhandled error", exc_info=exc)
    return capsys.readouterr().err


@pytest.mark.parametrize("library", [False, True], ids=["ours", "a library's"])
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_the_traceback_is_text_and_scrubbed(
    capsys: pytest.CaptureFixture[str], restore: None, fmt: str, library: bool
) -> None:
    text = logged(capsys, fmt, library)
    if fmt == "json":
        line = json.loads(text.strip().splitlines()[-1])
        text = line["exception"]
        assert "exc_info" not in line
    assert "Traceback (most recent call last)" in text
    assert "fail_deep_inside" in text and "ConnectionError: cannot reach" in text
    assert "hunter2-pass" not in text and TOKEN not in text
    assert "https://deploy:***@mirror.example/t/***/conda-forge" in text


def test_userinfo_of_any_scheme_is_scrubbed() -> None:
    assert scrub("redis://:sesame@cache:6379/0") == "redis://:***@cache:6379/0"
    assert scrub("postgresql://app:pw@db/stockade ok") == "postgresql://app:***@db/stockade ok"
    assert scrub("https://stk-anything-long@host/c") == "https://***@host/c"
    assert (
        scrub("shown already: https://user:***@host/c") == "shown already: https://user:***@host/c"
    )
    assert scrub("see https://example.org/a@b") == "see https://example.org/a@b"
    assert scrub("mail admin@example.org") == "mail admin@example.org"


@pytest.mark.parametrize("clean", [scrub, redact_text], ids=["scrub", "redact_text"])
def test_long_words_are_scrubbed_in_linear_time(clean: object) -> None:
    """A scheme is looked for where a word starts only: tried from every letter, 400,000
    letters took minutes (a hang, caught by the test's timeout, not timed)."""
    assert callable(clean)
    word = "s" * 400_000
    assert clean(f"GET /conda/c/{word}/repodata.json") == f"GET /conda/c/{word}/repodata.json"
    many = "x://" * 50_000
    assert clean(many) == many
    assert clean(f"{word} https://u:p@h/") == f"{word} https://u:***@h/"
