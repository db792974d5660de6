"""Review of issue 11 item 9: a patch holds text only. A lone surrogate (a JSON ``\\ud800``
escape) or a NUL in a patch value, a nested key or a filename, set one by one or imported as
``patch_instructions.json``, is a 422 naming the field, never a 500 or a stored patch that no
encoder (audit chain, repodata, PostgreSQL) can write."""

from __future__ import annotations

import pytest

from tests.support.server import LiveServer

pytestmark = pytest.mark.functional
FILE = "dependency-1.0-0.conda"
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "changes",
    [
        b'{"license": "\\ud800"}',
        b'{"license": "\\udc00 trailing"}',
        b'{"depends": ["python \\ud83d"]}',
        b'{"run_exports": {"weak\\ud800": ["x"]}}',
        b'{"anything": {"deep": ["\\u0000"]}}',
    ],
)
def test_a_patch_value_that_is_not_text_is_refused(live_server: LiveServer, changes: bytes) -> None:
    channel = live_server.new_channel(prefix="ptext")
    admin = live_server.admin
    body = b'{"changes": ' + changes + b"}"
    put = admin.put(f"/api/v1/channels/{channel}/patches/noarch/{FILE}", content=body, headers=JSON)
    assert put.status_code == 422, put.text
    doc = b'{"packages.conda": {"' + FILE.encode() + b'": ' + changes + b"}}"
    imported = admin.post(f"/api/v1/channels/{channel}/patches/noarch", content=doc, headers=JSON)
    assert imported.status_code == 422, imported.text
    assert imported.json()["code"] == "patch:invalid"
    assert admin.get(f"/api/v1/channels/{channel}/patches").json() == []


@pytest.mark.parametrize(
    "doc",
    [
        b'{"packages.conda": {"\\ud800.conda": {"license": "x"}}}',
        b'{"revoke": ["a\\u0000.conda"]}',
        b'{"remove": ["' + b"a" * 600 + b'.conda"]}',
    ],
)
def test_an_imported_filename_that_is_not_a_filename_is_refused(
    live_server: LiveServer, doc: bytes
) -> None:
    channel = live_server.new_channel(prefix="pname")
    admin = live_server.admin
    imported = admin.post(f"/api/v1/channels/{channel}/patches/noarch", content=doc, headers=JSON)
    assert imported.status_code == 422, imported.text
    assert imported.json()["code"] == "patch:invalid"
    assert admin.get(f"/api/v1/channels/{channel}/patches").json() == []


def test_a_surrogate_pair_is_text(live_server: LiveServer) -> None:
    channel = live_server.new_channel(prefix="pemoji")
    body = b'{"changes": {"license": "MIT \\ud83d\\ude00"}}'
    put = live_server.admin.put(
        f"/api/v1/channels/{channel}/patches/noarch/{FILE}", content=body, headers=JSON
    )
    assert put.status_code == 200, put.text
    assert put.json()["changes"] == {"license": "MIT \U0001f600"}
