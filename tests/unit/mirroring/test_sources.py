"""Upstream sources without a network: URLs, redaction, the .zst fallback, validators (MockTransport)."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import zstandard

from stockade.core import urls
from stockade.core.errors import InvalidInputError
from stockade.mirroring.sources import (
    ChecksumMismatchError,
    FileSource,
    HttpSource,
    SourceConfig,
    UpstreamError,
    Validators,
    http_client_options,
    open_source,
    redact_url,
)
from stockade.mirroring.transfer import RetryPolicy

BASE = "https://upstream.example/conda/chan"
TOKEN = "stk_secret_token_0123456789"
REPODATA = b'{"info": {"subdir": "linux-64"}, "packages": {}, "packages.conda": {}}'
ZST_BYTES = zstandard.ZstdCompressor().compress(REPODATA)

Handler = Callable[[httpx.Request], httpx.Response]


def source(handler: Handler, *, token: str | None = None, retries: int = 2) -> HttpSource:
    config = SourceConfig(BASE, token=token)
    return HttpSource(
        config,
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(retries=retries, backoff_s=0),
    )


class Recorder:
    """A fake upstream: ``files`` path -> (bytes, etag); logs requests."""

    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        self.files = files
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        found = self.files.get(request.url.path)
        if found is None:
            return httpx.Response(404)
        body, etag = found
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"etag": etag})
        return httpx.Response(200, content=body, headers={"etag": etag, "last-modified": "x"})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


# ------------------------------------------------------------------------------- URLs


def test_redact_url_is_the_one_redaction() -> None:
    """The cases are in tests/unit/core/test_urls.py; mirroring re-exports the same function."""
    assert redact_url is urls.redact_url


def test_config_repr_hides_the_token() -> None:
    config = SourceConfig("https://u:pw@h/c", token=TOKEN, proxy="http://p:proxypw@proxy:3128")
    assert TOKEN not in repr(config)
    assert "pw" not in repr(config)
    assert set(config.secrets()) == {TOKEN, "pw", "proxypw"}


def test_open_source_picks_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_source(SourceConfig("http://h/c")), HttpSource)
    assert isinstance(open_source(SourceConfig("https://h:8443/c/")), HttpSource)
    assert isinstance(open_source(SourceConfig(tmp_path.as_uri())), FileSource)


@pytest.mark.parametrize(
    "url", ["ftp://h/c", "h/c", "https:///c", "http://h:notaport/c", "file://remote/c", "", "x"]
)
def test_open_source_refuses_bad_urls(url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        open_source(SourceConfig(url, token=TOKEN))
    assert info.value.code == "mirror:bad-source"
    assert TOKEN not in str(info.value)


def test_open_source_refuses_a_missing_ca_bundle(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        open_source(SourceConfig("https://h/c", ca_bundle=tmp_path / "nope.pem"))
    assert info.value.code == "mirror:bad-source"


def test_client_options_carry_proxy_timeout_and_auth() -> None:
    options = http_client_options(SourceConfig(BASE, token=TOKEN, proxy="http://proxy:3128"))
    assert options.proxy == "http://proxy:3128"
    assert options.timeout == httpx.Timeout(60.0)
    assert options.auth is not None
    assert options.verify is True
    assert http_client_options(SourceConfig(BASE)).auth is None


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, f"{BASE}/linux-64/a-1-0.conda"),
        (
            "https://cdn.example/pkgs/main/linux-64",
            "https://cdn.example/pkgs/main/linux-64/a-1-0.conda",
        ),
        ("https://cdn.example/pkgs/", "https://cdn.example/pkgs/a-1-0.conda"),
        ("../../files/linux-64/", "https://upstream.example/conda/files/linux-64/a-1-0.conda"),
        ("./", f"{BASE}/linux-64/a-1-0.conda"),
    ],
)
def test_file_url_follows_cep15_base_url(base_url: str | None, expected: str) -> None:
    assert open_source(SourceConfig(BASE)).file_url("linux-64", "a-1-0.conda", base_url) == expected


def test_file_url_quotes_and_refuses_odd_names() -> None:
    src = open_source(SourceConfig(BASE))
    assert src.file_url("noarch", "a-1.0+cpu-0.conda").endswith("/noarch/a-1.0+cpu-0.conda")
    for name in ("../x.conda", "a/b.conda", ".hidden", ""):
        with pytest.raises(InvalidInputError):
            src.file_url("noarch", name)
    with pytest.raises(InvalidInputError):
        src.file_url("../etc", "a.conda")
    with pytest.raises(UpstreamError) as info:
        src.file_url("noarch", "a.conda", "file:///etc/")
    assert info.value.code == "mirror:bad-repodata"


# ------------------------------------------------------------------------------- repodata


def test_zst_is_preferred_and_decompressed() -> None:
    fake = Recorder({"/conda/chan/linux-64/repodata.json.zst": (ZST_BYTES, '"z1"')})
    fetch = source(fake).fetch_repodata("linux-64", None)
    assert not fetch.not_modified
    assert fetch.variant == "repodata.json.zst"
    assert fetch.raw == ZST_BYTES
    assert fetch.json_bytes() == REPODATA
    assert fetch.validators == Validators(
        '"z1"', "x", "repodata.json.zst", hashlib.sha256(ZST_BYTES).hexdigest()
    )
    assert fake.paths() == ["/conda/chan/linux-64/repodata.json.zst"]
    assert "if-none-match" not in fake.requests[0].headers


def test_conditional_get_answers_not_modified() -> None:
    fake = Recorder({"/conda/chan/linux-64/repodata.json.zst": (ZST_BYTES, '"z1"')})
    src = source(fake)
    first = src.fetch_repodata("linux-64", None)
    second = src.fetch_repodata("linux-64", first.validators)
    assert second.not_modified
    assert second.raw is None
    assert second.validators == first.validators
    assert fake.requests[1].headers["if-none-match"] == '"z1"'
    assert fake.requests[1].headers["if-modified-since"] == "x"


def test_same_body_with_a_new_etag_is_not_modified() -> None:
    fake = Recorder({"/conda/chan/linux-64/repodata.json.zst": (ZST_BYTES, '"z1"')})
    src = source(fake)
    first = src.fetch_repodata("linux-64", None)
    fake.files["/conda/chan/linux-64/repodata.json.zst"] = (ZST_BYTES, '"z2"')
    second = src.fetch_repodata("linux-64", first.validators)
    assert second.not_modified
    assert second.validators.etag == '"z2"'


def test_fallback_to_repodata_json_when_zst_is_missing() -> None:
    fake = Recorder({"/conda/chan/noarch/repodata.json": (REPODATA, '"j1"')})
    src = source(fake)
    fetch = src.fetch_repodata("noarch", None)
    assert fetch.variant == "repodata.json"
    assert fetch.json_bytes() == REPODATA
    assert fake.paths() == [
        "/conda/chan/noarch/repodata.json.zst",
        "/conda/chan/noarch/repodata.json",
    ]
    again = src.fetch_repodata("noarch", fetch.validators)
    assert again.not_modified
    # the .zst is asked again (upstream may have added it), without the json's validators
    assert "if-none-match" not in fake.requests[2].headers
    assert fake.requests[3].headers["if-none-match"] == '"j1"'


def test_zst_appearing_later_is_taken() -> None:
    fake = Recorder({"/conda/chan/noarch/repodata.json": (REPODATA, '"j1"')})
    src = source(fake)
    first = src.fetch_repodata("noarch", None)
    fake.files["/conda/chan/noarch/repodata.json.zst"] = (ZST_BYTES, '"z1"')
    second = src.fetch_repodata("noarch", first.validators)
    assert not second.not_modified
    assert second.variant == "repodata.json.zst"


def test_missing_subdir() -> None:
    with pytest.raises(UpstreamError) as info:
        source(Recorder({})).fetch_repodata("linux-64", None)
    assert info.value.code == "mirror:no-subdir"


def test_never_repodata_from_packages() -> None:
    fake = Recorder({"/conda/chan/noarch/repodata_from_packages.json": (REPODATA, '"p"')})
    with pytest.raises(UpstreamError):
        source(fake).fetch_repodata("noarch", None)
    assert all("from_packages" not in p for p in fake.paths())


def test_transient_errors_are_retried() -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(calls) == 2:
            return httpx.Response(503)
        return httpx.Response(200, content=ZST_BYTES)

    assert source(flaky).fetch_repodata("linux-64", None).raw == ZST_BYTES
    assert len(calls) == 3


def test_status_and_unreachable_errors_redact_the_token() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {TOKEN}", request=request)

    with pytest.raises(UpstreamError) as info:
        source(down, token=TOKEN, retries=1).fetch_repodata("linux-64", None)
    assert info.value.code == "mirror:upstream-unreachable"
    assert TOKEN not in str(info.value)
    assert "upstream.example" in str(info.value)

    with pytest.raises(UpstreamError) as info:
        source(lambda r: httpx.Response(401), token=TOKEN).fetch_repodata("linux-64", None)
    assert info.value.code == "mirror:upstream-auth"
    with pytest.raises(UpstreamError) as info:
        source(lambda r: httpx.Response(418)).fetch_repodata("linux-64", None)
    assert info.value.code == "mirror:upstream-status"
    assert info.value.extra["status"] == 418


def test_tls_failures_have_their_own_code() -> None:
    def bad_cert(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    with pytest.raises(UpstreamError) as info:
        source(bad_cert).fetch_repodata("linux-64", None)
    assert info.value.code == "mirror:upstream-tls"


def test_token_goes_to_the_source_origin_only(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}
    body = b"package bytes"

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(
            200, content=body if request.url.path.endswith(".conda") else ZST_BYTES
        )

    src = source(handler, token=TOKEN)
    src.fetch_repodata("linux-64", None)
    cdn = src.file_url("linux-64", "a-1-0.conda", "https://cdn.example/linux-64/")
    src.fetch_file(
        "linux-64",
        "a-1-0.conda",
        tmp_path,
        sha256=hashlib.sha256(body).hexdigest(),
        size=None,
        url=cdn,
    )
    assert seen == {"upstream.example": f"Bearer {TOKEN}", "cdn.example": None}


def test_corrupt_zst_is_bad_repodata() -> None:
    fake = Recorder({"/conda/chan/linux-64/repodata.json.zst": (b"not zstd at all", '"z"')})
    fetch = source(fake).fetch_repodata("linux-64", None)
    with pytest.raises(UpstreamError) as info:
        fetch.json_bytes()
    assert info.value.code == "mirror:bad-repodata"
    truncated = Recorder({"/conda/chan/linux-64/repodata.json.zst": (ZST_BYTES[:-4], '"t"')})
    with pytest.raises(UpstreamError):
        source(truncated).fetch_repodata("linux-64", None).json_bytes()


# ------------------------------------------------------------------------------- files


def test_fetch_file_verifies(tmp_path: Path) -> None:
    body = b"x" * 3_000_000
    good = hashlib.sha256(body).hexdigest()
    src = source(lambda r: httpx.Response(200, content=body))
    path = src.fetch_file("noarch", "a-1-0.conda", tmp_path, sha256=good, size=len(body))
    assert path.read_bytes() == body
    assert path.parent == tmp_path
    path.unlink()

    with pytest.raises(ChecksumMismatchError) as info:
        src.fetch_file("noarch", "a-1-0.conda", tmp_path, sha256="0" * 64, size=None)
    assert info.value.code == "mirror:sha256-mismatch"
    assert "0" * 64 in str(info.value) and good in str(info.value)
    with pytest.raises(ChecksumMismatchError) as info:
        src.fetch_file("noarch", "a-1-0.conda", tmp_path, sha256=good, size=10)
    assert info.value.code == "mirror:size-mismatch"
    assert list(tmp_path.iterdir()) == []


def test_fetch_file_does_not_retry_a_404(tmp_path: Path) -> None:
    calls: list[int] = []

    def missing(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404)

    with pytest.raises(UpstreamError) as info:
        source(missing).fetch_file("noarch", "a.conda", tmp_path, sha256="0" * 64, size=None)
    assert info.value.code == "mirror:upstream-status"
    assert len(calls) == 1
