"""The feed source check (issue 12, item 12) on its own: ``https://`` through the outbound guard
against a real TLS server, what "looks like the format" means, and the ``[vulns]`` settings."""

from __future__ import annotations

import gzip
import json
import ssl
import time
from pathlib import Path

import pytest

from stockade.core.errors import ConfigurationError
from stockade.core.outbound import ClientOptions, OutboundPolicy, guarded_client
from stockade.settings import load_settings
from stockade.vulns.errors import FeedSourceError
from stockade.vulns.feed_check import check_feed_source, looks_like
from tests.integration.vulns.support import VULNS
from tests.support.upstream import Upstream, self_signed_cert, server_tls_context


def test_an_https_source_is_asked_once_and_judged_by_its_first_bytes(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "kev.json").write_text(json.dumps({"catalogVersion": "1", "vulnerabilities": []}))
    (served / "page.html").write_text("<html>a login page</html>")
    cert, key = self_signed_cert(tmp_path)
    options = ClientOptions(verify=ssl.create_default_context(cafile=cert), timeout=10)
    with (
        Upstream(served, ssl_context=server_tls_context(cert, key)) as up,
        guarded_client(OutboundPolicy(allow_loopback=True), options) as client,
    ):
        check_feed_source(f"{up.url}/kev.json", "kev", client=client)
        with pytest.raises(FeedSourceError, match="answers HTTP 404"):
            check_feed_source(f"{up.url}/gone.json", "kev", client=client)
        with pytest.raises(FeedSourceError, match="does not answer CISA KEV JSON"):
            check_feed_source(f"{up.url}/page.html", "kev", client=client)
        with pytest.raises(FeedSourceError, match="refused by the server's outbound policy") as no:
            check_feed_source(f"{up.url}/kev.json?apiKey=K3Y", "kev")  # the strict default
        deadline = time.monotonic() + 10  # the server logs a request after answering it
        while len(up.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        asked = sorted((r.path, r.status) for r in up.requests)
    assert "K3Y" not in no.value.detail
    assert asked == [("gone.json", 404), ("kev.json", 200), ("page.html", 200)]  # once each


def test_what_each_format_looks_like() -> None:
    nvd = (VULNS / "nvd-api-2.0" / "cves-1999.json").read_bytes()[:4096]
    osv_yaml = next((VULNS / "osv-pypi" / "flask").iterdir()).read_bytes()[:4096]
    epss = gzip.compress(b"#model_version:v1\ncve,epss,percentile\n")
    assert looks_like("nvd", nvd) and looks_like("cve5", b'\xef\xbb\xbf {"x": 1}')
    assert looks_like("osv", osv_yaml) and looks_like("osv", b"PK\x03\x04...")
    assert looks_like("epss", epss) and looks_like("epss", b"cve,epss,percentile\n")
    assert looks_like("bundle", b"PK\x03\x04...")
    assert not looks_like("nvd", b"<html>") and not looks_like("kev", b"")
    assert not looks_like("epss", nvd) and not looks_like("bundle", nvd)
    assert not looks_like("osv", b"\x00\x01binary")


def test_a_bad_url_is_a_source_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(FeedSourceError) as caught:
        check_feed_source("ftp://example.org/feed.json", "osv")
    assert caught.value.extra["field"] == "url"
    with pytest.raises(FeedSourceError, match="is a folder"):
        check_feed_source(tmp_path.as_uri(), "bundle")


def test_default_feed_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOCKADE_VULNS__DEFAULT_FEEDS", "false")
    monkeypatch.setenv("STOCKADE_VULNS__DEFAULT_FEED_URLS", '{"nvd": "file:///srv/nvd"}')
    settings = load_settings(data_dir=tmp_path)
    assert settings.vulns.default_feeds is False
    assert settings.vulns.default_feed_urls == {"nvd": "file:///srv/nvd"}
    monkeypatch.setenv("STOCKADE_VULNS__DEFAULT_FEED_URLS", '{"nvdd": "file:///srv/nvd"}')
    with pytest.raises(ConfigurationError, match="STOCKADE_VULNS__DEFAULT_FEED_URLS"):
        load_settings(data_dir=tmp_path)
    monkeypatch.setenv("STOCKADE_VULNS__DEFAULT_FEED_URLS", '{"nvd": "http://plain/x"}')
    with pytest.raises(ConfigurationError, match="https:// or file://"):
        load_settings(data_dir=tmp_path)
    monkeypatch.delenv("STOCKADE_VULNS__DEFAULT_FEEDS")
    monkeypatch.delenv("STOCKADE_VULNS__DEFAULT_FEED_URLS")
    assert load_settings(data_dir=tmp_path).vulns.default_feeds is True  # the product's default
