"""HTTP client of the REST API for CLI commands; problem bodies become clear CLI errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

from stockade.cli.profile import Profile, load_profile

err = Console(stderr=True)


class CliError(Exception):
    """Printed as ``error: …`` with a non-zero exit; never a traceback."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


class ApiClient:
    """Calls the REST API. ``request`` prints problems and exits; ``try_request`` raises CliError."""

    def __init__(self, profile: Profile, timeout: float = 120.0) -> None:
        self.profile = profile
        self.timeout = timeout
        self.headers = {"user-agent": "stockade-cli"}
        if profile.token:
            self.headers["authorization"] = f"Bearer {profile.token}"

    def try_request(self, method: str, path: str, **kwargs: Any) -> Any:
        base = self.profile.url + "/api/v1"
        try:
            with httpx.Client(base_url=base, headers=self.headers, timeout=self.timeout) as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.profile.url}: {exc.__class__.__name__}") from None
        return self.decode(response)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self.try_request(method, path, **kwargs)
        except CliError as exc:
            fail(str(exc))

    def try_raw(self, path: str, **kwargs: Any) -> bytes:
        """The response body as bytes (exports); problems print and exit like ``request``."""
        base = self.profile.url + "/api/v1"
        try:
            with httpx.Client(base_url=base, headers=self.headers, timeout=self.timeout) as http:
                response = http.get(path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.profile.url}: {exc.__class__.__name__}")
        if response.status_code >= 400:
            fail(describe_problem(response))
        return response.content

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise CliError(describe_problem(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


def describe_problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    detail = body.get("detail") or body.get("title") or "request failed"
    where = [f"{k}={body[k]}" for k in ("member", "field") if body.get(k)]
    suffix = f" ({', '.join(where)})" if where else ""
    return f"{detail}{suffix} [HTTP {response.status_code}, {body.get('code', 'error')}]"


def client() -> ApiClient:
    profile = load_profile()
    if profile is None:
        fail(
            "no server configured: run `stockade login URL`, or set STOCKADE_URL and STOCKADE_TOKEN"
        )
    return ApiClient(profile)


def paginate(api: ApiClient, path: str, **params: Any) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        page = api.get(path, params={**params, "after": after, "limit": 500})
        yield from page
        if len(page) < 500:
            return
        after = page[-1]["id"]
