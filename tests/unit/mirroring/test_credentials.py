"""A mirror's credentials stay bound to what they were given for (issue 11, items 1-3)."""

from __future__ import annotations

import httpx
import pytest

from stockade.core.secrets import SecretBox
from stockade.mirroring import validation as check
from stockade.mirroring.credentials import (
    has_proxy_credentials,
    proxy_url,
    set_proxy,
    set_token,
    token_still_bound,
)
from stockade.mirroring.errors import InvalidMirrorError
from stockade.mirroring.models import Mirror
from stockade.mirroring.source_config import SourceConfig, bearer_for

BOX = SecretBox(b"unit-test-key")


@pytest.mark.parametrize(
    "url", ["FILE:///etc", "File:///x", "file:///x", "fIlE://localhost/x", "file:/x", "::::"]
)
def test_every_spelling_of_file_is_local(url: str) -> None:
    assert check.is_local_source(url)


@pytest.mark.parametrize("url", ["https://h/c", "HTTP://h/c", "Https://H:8443/c"])
def test_http_sources_are_not_local(url: str) -> None:
    assert not check.is_local_source(url)


def test_check_source_normalizes_the_parsed_form() -> None:
    assert check.check_source("HTTPS://Conda.Example/Chan/") == "https://conda.example/Chan"
    assert check.check_source("FILE://localhost/srv/chan") == "file:///srv/chan"
    with pytest.raises(InvalidMirrorError):
        check.check_source("file://otherhost/srv/c")


def _mirror(source: str = "https://up.example/c") -> Mirror:
    return Mirror(name="m", source_url=source, proxy=None, proxy_auth_enc=None)


def test_a_token_is_bound_to_its_origin() -> None:
    mirror = _mirror()
    set_token(mirror, BOX, "stk-secret")
    assert mirror.source_token_origin == "https://up.example:443"
    mirror.source_url = "HTTPS://UP.example:443/other"  # same origin, other spelling and path
    assert token_still_bound(mirror, proxy_changed=False)
    mirror.source_url = "https://evil.example/c"
    assert not token_still_bound(mirror, proxy_changed=False)
    mirror.source_url = "https://up.example/c"
    assert not token_still_bound(mirror, proxy_changed=True)


def test_the_token_is_sent_to_its_origin_only() -> None:
    bound = SourceConfig("https://evil.example/c", token="t", token_origin="https://up.example:443")
    assert bearer_for(bound) is None  # moved elsewhere: sent nowhere
    auth = bearer_for(SourceConfig("https://up.example/c", token="t"))
    assert auth is not None
    for url, sent in (
        ("https://up.example/c/linux-64/repodata.json", True),
        ("HTTPS://UP.EXAMPLE:443/x", True),
        ("http://up.example/c", False),
        ("https://up.example:8443/c", False),
        ("https://cdn.example/c", False),
    ):
        request = httpx.Request("GET", url)
        next(auth.auth_flow(request))
        assert ("authorization" in request.headers) is sent, url


def test_proxy_credentials_are_stored_apart_and_kept_for_the_same_proxy() -> None:
    mirror = _mirror()
    proxy, userinfo = check.check_proxy("HTTP://bob:s3cret@Proxy.Example:3128/")
    assert (proxy, userinfo) == ("http://proxy.example:3128", "bob:s3cret")
    assert not set_proxy(mirror, BOX, proxy, userinfo)
    assert mirror.proxy == "http://proxy.example:3128"
    assert mirror.proxy_auth_enc is not None and "s3cret" not in mirror.proxy_auth_enc
    assert proxy_url(mirror, BOX) == "http://bob:s3cret@proxy.example:3128"
    assert has_proxy_credentials(mirror)
    # the same proxy again, without credentials or with the shown ***: kept
    assert not set_proxy(mirror, BOX, "http://proxy.example:3128", None)
    assert not set_proxy(mirror, BOX, "http://proxy.example:3128", "bob:***")
    assert proxy_url(mirror, BOX) == "http://bob:s3cret@proxy.example:3128"
    # another proxy without credentials: dropped; *** for another proxy: refused
    with pytest.raises(InvalidMirrorError):
        set_proxy(mirror, BOX, "http://other.example:3128", "bob:***")
    assert set_proxy(mirror, BOX, "http://other.example:3128", None)
    assert mirror.proxy_auth_enc is None and proxy_url(mirror, BOX) == "http://other.example:3128"


@pytest.mark.parametrize(
    "proxy", ["socks5://h:1080", "ftp://h", "http://", "http://h:3128/path", "http://h\\@x"]
)
def test_bad_proxies_are_refused(proxy: str) -> None:
    with pytest.raises(InvalidMirrorError):
        check.check_proxy(proxy)
