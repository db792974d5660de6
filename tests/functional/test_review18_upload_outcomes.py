"""Review of issue 18 (POST /channels/{c}/uploads): one outcome per file sent, in the order sent.

The CLI pairs the answer's ``files`` with the files of its batch by position
(``cli/upload_batches._paired``). The server orders outcomes by the first position of their file
name; two files of one name (the same ``name-version-build`` built for two subdirs, common with
build string ``0``) share one position, and the accepted ones come first: when the first of them
is refused and the second accepted, the answer says the first was accepted and the CLI reports
the wrong file as refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.server import LiveServer

pytestmark = [pytest.mark.functional]

NAME = "arch-package-1.0-0.conda"


def test_outcomes_follow_the_order_sent_for_files_of_one_name(
    live_server: LiveServer, testdata: Path
) -> None:
    channel = live_server.new_channel(prefix="outcomes")
    good = (testdata / "channels" / "test-recipes" / "osx-fake" / NAME).read_bytes()
    parts = [
        ("files", (NAME, b"not a package at all", "application/octet-stream")),
        ("files", (NAME, good, "application/octet-stream")),
    ]
    answer = live_server.admin.post(f"/api/v1/channels/{channel}/uploads", files=parts)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["refused"]) == (1, 1)
    statuses = [f["status"] for f in body["files"]]
    assert statuses == ["refused", "accepted"], body["files"]
