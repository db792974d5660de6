"""The one URL parser and the one redaction (stockade.core.urls): every check decides on the
parsed, normalized form, so spellings (``FILE:``, ``HtTpS:``) and parser tricks change nothing."""

from __future__ import annotations

import pytest

from stockade.core.urls import URLParseError, origin_of, parse_url, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "scheme", "host", "origin"),
    [
        ("FILE:///etc", "file", "", "file://"),
        ("File:///srv/chan", "file", "", "file://"),
        ("HTTPS://Conda.Example/Chan", "https", "conda.example", "https://conda.example:443"),
        ("hTtP://127.1:8080/x", "http", "127.1", "http://127.1:8080"),
        ("http://[::1]/", "http", "::1", "http://[::1]:80"),
        (
            "http://[::FFFF:127.0.0.1]:81/",
            "http",
            "::ffff:127.0.0.1",
            "http://[::ffff:127.0.0.1]:81",
        ),
        ("LDAPS://dir.example", "ldaps", "dir.example", "ldaps://dir.example:636"),
    ],
)
def test_scheme_and_host_are_normalized(url: str, scheme: str, host: str, origin: str) -> None:
    parsed = parse_url(url)
    assert (parsed.scheme, parsed.host, parsed.origin) == (scheme, host, origin)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "no-scheme.example/path",
        "http://evil.example\\@good.example/",  # parsers disagree on the host
        "http://good.example /x",
        "http://good.example/\x00",
        "http://[::1/",
        "http://host:99999/",
        "x" * 5000,
    ],
)
def test_ambiguous_or_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(URLParseError) as caught:
        parse_url(url)
    assert "evil" not in str(caught.value)  # the message never repeats the URL


def test_userinfo_is_parsed_and_origin_ignores_it() -> None:
    parsed = parse_url("http://alice:s%40cret@proxy.example:3128")
    assert (parsed.username, parsed.password) == ("alice", "s@cret")
    assert parsed.origin == "http://proxy.example:3128"
    assert parsed.unsplit() == "http://proxy.example:3128"
    assert origin_of("HTTP://Proxy.Example:3128/") == origin_of("http://proxy.example:3128")
    assert origin_of("http://[::1") is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host/c", "https://user:***@host/c"),
        ("https://tokenonly@host/c", "https://***@host/c"),
        ("https://conda.anaconda.org/t/abc-123/chan", "https://conda.anaconda.org/t/***/chan"),
        ("https://host/c?token=abc&x=1", "https://host/c?token=***&x=1"),
        ("https://nvd.example/feed?apiKey=K3Y", "https://nvd.example/feed?apiKey=***"),
        ("file:///srv/chan", "file:///srv/chan"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_redacts_every_url_and_given_secret() -> None:
    text = "failed: http://u:hunter2@proxy:3128 then https://h/t/stk-abcdefgh12345678/c; key=XYZ"
    shown = redact_text(text, ("XYZ",))
    assert "hunter2" not in shown and "stk-abcdefgh12345678" not in shown and "XYZ" not in shown


@pytest.mark.parametrize("url", ["file:///srv/%00/etc", "http://h/%00", "https://h/\ud800"])
def test_nul_and_surrogates_are_refused(url: str) -> None:
    with pytest.raises(URLParseError):
        parse_url(url)
    assert redact_url("https://h/\ud800") == "<malformed url>"
