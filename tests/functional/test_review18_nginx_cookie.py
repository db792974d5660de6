"""Review of issue 18 (nginx front): nginx's cache key and Stockade's decision must read the
same credential.

The key holds ``$cookie_stockade_session``: nginx takes the FIRST ``stockade_session`` cookie of
the request. Stockade (``web/credentials.py``) decides with the LAST one (the last Cookie header
holding it, parsed with the last value winning). A request carrying two of them is decided for
one session and cached under the other. Whoever can put a cookie of a known value in a signed-in
user's browser (a same-site subdomain setting ``stockade_session=KNOWN`` with a longer Path, which
browsers send first) and make it fetch a private file, then fetches that URL with only
``stockade_session=KNOWN`` within 2 s, and is sent the private file by nginx.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.functional.test_nginx_front import (  # noqa: F401 (fixtures)
    PASSWORD,
    channel_with,
    front,
    member,
    package,
    pytestmark,
    server,
)
from tests.functional.test_ui import sign_in
from tests.support.nginx_front import Front
from tests.support.server import LiveServer

KNOWN = "attacker-chosen-value"


def test_a_cached_yes_is_never_replayed_for_another_session_cookie(
    server: LiveServer,  # noqa: F811
    front: Front,  # noqa: F811
    package: Path,  # noqa: F811
) -> None:
    channel = channel_with(server, package, "private")
    name, _, _ = member(server, channel)
    browser = server.client()
    sign_in(browser, name, PASSWORD)
    session = browser.cookies.get("stockade_session")
    assert session, "no session cookie after signing in"
    url = f"{front.url}/conda/{channel}/noarch/{package.name}"
    with httpx.Client(timeout=30) as http:
        both = f"stockade_session={KNOWN}; stockade_session={session}"
        victim = http.get(url, headers={"cookie": both})  # the signed-in user's browser
        assert victim.status_code == 200
        replay = http.get(url, headers={"cookie": f"stockade_session={KNOWN}"})
    assert replay.content != package.read_bytes(), (
        f"HTTP {replay.status_code}: nginx sent the private file to a request with only the "
        "made-up session cookie"
    )
