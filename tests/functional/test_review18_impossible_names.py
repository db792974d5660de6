"""Review of issue 18 (servable map): names no channel, subdir or package file can have.

Longer than their columns (channel 512, subdir 64, filename 512 characters) or of a shape no way
in accepts (``channels/naming.py``; subdirs ``noarch`` or ``os-arch``): such a request is answered
404 from memory, without a database query and without being remembered (before, every one was a
query and an entry, keys whole, in maps bounded by count only). Names that may exist keep their
behaviour: looked up once, then answered from memory; the maps they fill stay bounded in bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.support.eventually import SERVING_BOUND_S, eventually
from tests.support.server import LiveServer

pytestmark = [pytest.mark.functional]

MARK = "zq9mark"  # in every name below: a query carrying it looked the name up
SHARD = "0" * 64 + ".msgpack.zst"

IMPOSSIBLE = {
    "subdir too long": f"{{c}}/linux-{MARK}{'x' * 64}/pkg-1-0.conda",
    "subdir upper case": f"{{c}}/Linux-{MARK}/pkg-1-0.conda",
    "subdir with a dot": f"{{c}}/linux.{MARK}/pkg-1-0.conda",
    "subdir without arch": f"{{c}}/{MARK}/pkg-1-0.conda",
    "filename too long": f"{{c}}/noarch/{MARK}{'f' * 512}.conda",
    "index of a long subdir": f"{{c}}/linux-{MARK}{'x' * 64}/repodata.json",
    "index of a bad subdir": f"{{c}}/{MARK}_x/repodata.json.zst",
    "shard of a bad subdir": f"{{c}}/{MARK}/shards/{SHARD}",
    "channel too long": f"{MARK}{'c' * 600}/noarch/repodata.json",
    "channel too deep": f"a/b/c/d/{MARK}/noarch/repodata.json",
    "channel reserved word": f"{{c}}/shards/{MARK}/noarch/repodata.json",
    "channel upper case": f"{MARK.upper()}/noarch/pkg-1-0.conda",
}


@contextmanager
def _queries_naming(live: LiveServer, mark: str) -> Iterator[list[str]]:
    """Statements sent to the database whose text or parameters carry ``mark``."""
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if mark.lower() in f"{statement} {params!r}".lower():
            seen.append(statement)

    engine = live.container.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _remembered(live: LiveServer, mark: str) -> list[object]:
    locator = live.container.locator
    keys: list[object] = [*locator.files._entries, *locator._indexes, *locator._shards]
    keys += list(locator._channels._data)
    return [k for k in keys if mark.lower() in repr(k).lower()]


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_a_name_nothing_can_have_is_404_without_a_query(live_server: LiveServer, case: str) -> None:
    channel = live_server.new_channel(prefix="imp")
    path = "/conda/" + IMPOSSIBLE[case].format(c=channel)
    with (
        _queries_naming(live_server, MARK) as queries,
        httpx.Client(base_url=live_server.process_url) as c,
    ):
        for method in ("GET", "HEAD"):
            assert c.request(method, path).status_code == 404
    assert queries == []
    assert _remembered(live_server, MARK) == []


def test_a_name_that_may_exist_is_looked_up_once(live_server: LiveServer) -> None:
    channel = live_server.new_channel(prefix="imp")

    def twice() -> None:
        path = f"/conda/{channel}/linux-{MARK}/pkg{uuid.uuid4().hex[:8]}-1-0.conda"
        with (
            _queries_naming(live_server, MARK) as queries,
            httpx.Client(base_url=live_server.process_url) as c,
        ):
            assert c.get(path).status_code == 404
            looked_up = len(queries)
            assert c.get(path).status_code == 404
        assert looked_up >= 1
        assert len(queries) == looked_up  # the second answer came from memory

    # A publication in this process between the two requests (another test's: the server is
    # shared) makes it look the name up again: what is checked is a pair nothing came between.
    eventually(twice, within=SERVING_BOUND_S)
    assert _remembered(live_server, MARK) != []


def test_many_misses_stay_within_the_bytes_bound(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    locator = live_server.container.locator
    bound = 64 * 1024
    monkeypatch.setattr(locator.files, "max_bytes", bound)
    monkeypatch.setattr(locator._indexes, "max_bytes", bound)
    channel = live_server.new_channel(prefix="imp")
    name = "p" * 400
    with httpx.Client(base_url=live_server.process_url) as c:
        for i in range(300):
            subdir = f"linux-{i}x{'a' * 50}"
            assert c.get(f"/conda/{channel}/{subdir}/{name}-{i}-0.conda").status_code == 404
            assert c.get(f"/conda/{channel}/{subdir}/repodata.json").status_code == 404
    assert 0 < locator.files.nbytes <= bound
    assert 0 < locator._indexes.nbytes <= bound
    assert len(locator.files) < 300  # the oldest went
