"""Every request body the server reads is bounded while it is read (issue 11).

A server of its own with small limits (4 KiB archives, 6 KiB multipart requests, 2 KiB other
bodies), so each oversize body is a few KiB. Each upload surface is sent a body past its limit,
once with a ``Content-Length`` and once chunked (no length: the limit holds while reading); the
answer is a 413 problem, and no partial spool is left in the staging folder. (That file parts
never go to /tmp is tested in tests/unit/web/test_bodies.py.)
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.functional.test_ui import csrf_of, sign_in
from tests.support.server import ADMIN_PASSWORD, LiveServer, fresh_database, run_server

pytestmark = pytest.mark.functional

ARCHIVE_LIMIT = 4096
REQUEST_LIMIT = 6144
BODY_LIMIT = 2048


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("limits")
    with (
        fresh_database("sqlite", data_dir, None) as db_url,
        run_server(
            data_dir,
            db_url,
            upload={"max_archive_size": ARCHIVE_LIMIT, "max_request_size": REQUEST_LIMIT},
            server={"max_body_size": BODY_LIMIT},
        ) as live,
    ):
        yield live


def _chunked(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 512):
        yield body[start : start + 512]


def _send(
    live: LiveServer, method: str, path: str, body: bytes, chunked: bool, **headers: str
) -> httpx.Response:
    with live.client(live.admin_token) as client:
        content: bytes | Iterator[bytes] = _chunked(body) if chunked else body
        return client.request(method, path, content=content, headers=headers)


def _assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 413
    assert problem["detail"]


def _assert_nothing_spooled(live: LiveServer) -> None:
    """No partial upload in the staging folder (``put-`` files are the publisher's own)."""
    staging = live.container.blobs.staging_dir()
    assert [p.name for p in staging.iterdir() if p.name.startswith("upload-")] == []


def _multipart(*files: tuple[str, bytes]) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://x/",
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )
    return request.read(), request.headers["content-type"]


def _assert_multipart_refused(
    live: LiveServer, chunked: bool, files: list[tuple[str, bytes]], code: str
) -> None:
    """A multipart upload of ``files`` is a 413 with ``code`` and leaves nothing spooled."""
    channel = live.new_channel(prefix="mp")
    body, content_type = _multipart(*files)
    response = _send(
        live,
        "POST",
        f"/api/v1/channels/{channel}/files",
        body,
        chunked,
        **{"content-type": content_type},
    )
    _assert_too_large(response)
    assert response.json()["code"] == code
    _assert_nothing_spooled(live)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_multipart_file_past_the_archive_limit(small: LiveServer, chunked: bool) -> None:
    files = [("big-1.0-0.conda", b"x" * (ARCHIVE_LIMIT + 1))]
    _assert_multipart_refused(small, chunked, files, "package:archive-size")


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_multipart_request_past_the_request_limit(small: LiveServer, chunked: bool) -> None:
    """Each file is under the archive limit, all of them together are not."""
    files = [(f"f{i}-1.0-0.conda", b"y" * (ARCHIVE_LIMIT - 100)) for i in range(3)]
    _assert_multipart_refused(small, chunked, files, "request:too-large")


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_streamed_put_past_the_archive_limit(small: LiveServer, chunked: bool) -> None:
    channel = small.new_channel(prefix="put")
    response = _send(
        small,
        "PUT",
        f"/api/v1/channels/{channel}/files/big-1.0-0.conda",
        b"z" * (ARCHIVE_LIMIT + 1),
        chunked,
    )
    _assert_too_large(response)
    _assert_nothing_spooled(small)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_cve_import_past_the_archive_limit(small: LiveServer, chunked: bool) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", b"{" + b" " * (ARCHIVE_LIMIT + 10) + b"}")
    response = _send(small, "POST", "/api/v1/cve/imports", buffer.getvalue(), chunked)
    _assert_too_large(response)
    _assert_nothing_spooled(small)


def test_name_map_import_past_its_limit(small: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from stockade.web.api import cve_admin

    monkeypatch.setattr(cve_admin, "NAME_MAP_FILE_MAX", 3000)
    body = b"conda_name,cpe_product\n" + b"a,b\n" * 1000
    for chunked in (False, True):
        response = _send(small, "POST", "/api/v1/cve/name-map/import", body, chunked)
        _assert_too_large(response)
    _assert_nothing_spooled(small)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_json_body_past_the_body_limit(small: LiveServer, chunked: bool) -> None:
    body = b'{"name": "big", "description": "' + b"d" * BODY_LIMIT + b'"}'
    response = _send(
        small, "POST", "/api/v1/channels", body, chunked, **{"content-type": "application/json"}
    )
    _assert_too_large(response)
    assert response.json()["code"] == "request:too-large"


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_ui_form_post_past_the_body_limit(small: LiveServer, chunked: bool) -> None:
    body = b"username=admin&password=" + b"p" * BODY_LIMIT
    content_type = "application/x-www-form-urlencoded"
    with httpx.Client(base_url=small.url, timeout=30) as client:
        content: bytes | Iterator[bytes] = _chunked(body) if chunked else body
        response = client.post("/login", content=content, headers={"content-type": content_type})
    _assert_too_large(response)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_report_body_past_the_body_limit(small: LiveServer, chunked: bool) -> None:
    body, content_type = _multipart(("environment.yml", b"dependencies:\n" + b"  - x\n" * 500))
    response = _send(
        small, "POST", "/api/v1/reports/env", body, chunked, **{"content-type": content_type}
    )
    _assert_too_large(response)
    _assert_nothing_spooled(small)


def test_a_body_within_the_limits_still_works(small: LiveServer, testdata: Path) -> None:
    response = _send(
        small,
        "POST",
        "/api/v1/channels",
        b'{"name": "fits", "description": "small"}',
        True,
        **{"content-type": "application/json"},
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_ui_report_page_past_the_body_limit(small: LiveServer, chunked: bool) -> None:
    body, content_type = _multipart(("environment.yml", b"dependencies:\n" + b"  - x\n" * 500))
    with httpx.Client(base_url=small.url, timeout=30) as client:
        content: bytes | Iterator[bytes] = _chunked(body) if chunked else body
        response = client.post(
            "/reports/env", content=content, headers={"content-type": content_type}
        )
    _assert_too_large(response)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize(
    "files",
    [
        [("big-1.0-0.conda", b"x" * (ARCHIVE_LIMIT + 1))],  # one file past the archive limit
        [(f"f{i}-1.0-0.conda", b"y" * (ARCHIVE_LIMIT - 100)) for i in range(3)],  # the request
    ],
    ids=["archive", "request"],
)
def test_ui_upload_form_past_the_limits(
    small: LiveServer, chunked: bool, files: list[tuple[str, bytes]]
) -> None:
    """The channel files page's no-JavaScript upload: a 413 page saying why, nothing spooled."""
    channel = small.new_channel(prefix="uiup")
    with httpx.Client(base_url=small.url, timeout=30) as client:
        assert sign_in(client, "admin", ADMIN_PASSWORD).status_code == 303
        token = csrf_of(client.get(f"/channels/{channel}/files").text)
        request = httpx.Request(
            "POST",
            "http://x/",
            data={"csrf_token": token},
            files=[("files", (name, data, "application/octet-stream")) for name, data in files],
        )
        body, content_type = request.read(), request.headers["content-type"]
        content: bytes | Iterator[bytes] = _chunked(body) if chunked else body
        response = client.post(
            f"/channels/{channel}/files", content=content, headers={"content-type": content_type}
        )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="form-error"' in response.text and "larger than" in response.text
    _assert_nothing_spooled(small)
