"""Vulnerability reports over HTTP, shared by the REST API and the web pages (both import this,
neither imports the other): the bounded body an environment file arrives in, and a report rendered
in the format asked for (JSON, CSV, CycloneDX, SPDX) with its media type and file name."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from stockade.core.errors import InvalidInputError, TooLargeError
from stockade.vulns.reports import ChannelReport, EnvironmentReport, render_csv, render_json

__all__ = ["MAX_BODY", "MEDIA", "SUFFIX", "read_bounded", "rendered"]

MAX_BODY = 5 * 1024 * 1024
MEDIA = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "cyclonedx": "application/vnd.cyclonedx+json",
    "spdx": "application/spdx+json",
}
SUFFIX = {"json": "json", "csv": "csv", "cyclonedx": "cdx.json", "spdx": "spdx.json"}


def rendered(report: EnvironmentReport | ChannelReport, fmt: str, stem: str) -> Response:
    if fmt == "json":
        body = render_json(report)
    elif fmt == "csv":
        body = render_csv(report)
    elif isinstance(report, EnvironmentReport):
        # the SBOM libraries (spdx-tools, cyclonedx: ~20 MiB per process) load on first use
        from stockade.vulns.sbom import cyclonedx_json, spdx_json

        body = cyclonedx_json(report) if fmt == "cyclonedx" else spdx_json(report)
    else:
        raise InvalidInputError(f"format {fmt!r} is not offered here", field="format")
    headers = {}
    if fmt != "json":
        headers["content-disposition"] = f'attachment; filename="{stem}.{SUFFIX[fmt]}"'
    return Response(body, media_type=MEDIA[fmt], headers=headers)


async def read_bounded(request: Request) -> bytes:
    """The request body, refused (413) past MAX_BODY whether or not it declared a length."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLargeError(f"the request body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLargeError(f"the request body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
