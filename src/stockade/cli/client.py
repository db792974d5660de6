"""HTTP client of the REST API for CLI commands; problem bodies become clear CLI errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from stockade.cli.profile import Profile, load_profile

if TYPE_CHECKING:  # imported when a request is made: ``--help`` does not load httpx
    import httpx

    from stockade.cli.retry import RetryingClient, RetryState

err = Console(stderr=True)


class CliError(Exception):
    """Printed as ``error: …`` with a non-zero exit; never a traceback."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


class ApiClient:
    """Calls the REST API. ``request`` prints problems and exits; ``try_request`` raises CliError.

    Every request retries transient answers (503 and the like) within a bounded wait: see
    :mod:`stockade.cli.retry` for what is retried and when.
    """

    def __init__(self, profile: Profile, timeout: float = 120.0) -> None:
        self.profile = profile
        self.timeout = timeout
        self.headers = {"user-agent": "stockade-cli"}
        if profile.token:
            self.headers["authorization"] = f"Bearer {profile.token}"
        self._retry: RetryState | None = None

    def http(self, base: str | None = None, **kwargs: Any) -> RetryingClient:
        """An HTTP client for the API (``base``: default ``URL/api/v1``) with this client's
        headers, timeout and retries; close it (``with``)."""
        from stockade.cli.retry import RetryingClient, RetryState

        if self._retry is None:
            self._retry = RetryState(notify=lambda message: err.print(message, style="dim"))
        options: dict[str, Any] = {"headers": self.headers, "timeout": self.timeout, **kwargs}
        base = self.profile.url + "/api/v1" if base is None else base
        return RetryingClient(retry=self._retry, base_url=base, **options)

    def try_request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            with self.http() as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(unreachable(self.profile.url, exc)) from None
        return self.decode(response)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self.try_request(method, path, **kwargs)
        except CliError as exc:
            fail(str(exc))

    def try_raw(self, path: str, **kwargs: Any) -> bytes:
        """The response body as bytes (exports); problems print and exit like ``request``."""
        import httpx

        try:
            with self.http() as http:
                response = http.get(path, **kwargs)
        except httpx.HTTPError as exc:
            fail(unreachable(self.profile.url, exc))
        problem = answer_problem(response)
        if problem:
            fail(problem)
        return response.content

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise CliError(describe_problem(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(not_stockade(response)) from None

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
        body = None
    if not isinstance(body, dict):
        return not_stockade(response)
    detail = body.get("detail") or body.get("title") or "request failed"
    where = [f"{k}={body[k]}" for k in ("member", "field") if body.get(k)]
    suffix = f" ({', '.join(where)})" if where else ""
    return f"{detail}{suffix} [HTTP {response.status_code}, {body.get('code', 'error')}]" + (
        _tried(response)
    )


def _tried(response: httpx.Response) -> str:
    """``; tried N times over Ss`` when the answer came after retries (see cli/retry.py)."""
    attempts = response.extensions.get("stockade_attempts")
    described = attempts.describe() if attempts is not None else ""
    return f"; {described}, giving up" if described else ""


def answer_problem(response: httpx.Response) -> str | None:
    """What is wrong with a raw (non-JSON) answer: a problem, or a web page instead of the API's."""
    if response.status_code >= 400:
        return describe_problem(response)
    if response.headers.get("content-type", "").startswith("text/html"):
        return not_stockade(response)
    return None


def not_stockade(response: httpx.Response) -> str:
    """An answer that is not the Stockade API's JSON: most often a URL that is not the base URL.
    A password in the URL (``user:password@``) is never shown."""
    from stockade.core.urls import redact_text

    return redact_text(_not_stockade(response))


def _not_stockade(response: httpx.Response) -> str:
    url = str(response.request.url).split("?")[0]
    base = url.split("/api/v1")[0]
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if response.status_code in (502, 503, 504):
        return (
            f"{url} answered {status} ({kind}): a proxy answered for the Stockade server at "
            f"{base}, which is not answering: is it running?{_tried(response)}"
        )
    return (
        f"{url} answered {status} ({kind}), not the Stockade API: is {base} the server's base "
        "URL? Give the URL you open in a browser, e.g. http://host:8000 (without /conda or /api)"
    )


def unreachable(url: str, exc: httpx.HTTPError) -> str:
    """Why ``url`` could not be reached, in words, with what to check; never a traceback, nor a
    password in the URL."""
    from stockade.core.urls import redact_text

    return redact_text(f"cannot reach the Stockade server at {url}: {_cause(exc)}")


# words in an exception chain → what went wrong and what to check
_CAUSES = (
    (
        ("certificate", "ssl", "tls", "wrong version number"),
        "TLS error ({error}): if the server speaks plain HTTP use http://; if its certificate is "
        "signed by your own CA, point SSL_CERT_FILE at that CA's certificate",
    ),
    (
        ("name or service not known", "nodename nor servname", "name resolution", "getaddrinfo"),
        "host name not found (DNS): check the spelling of the host",
    ),
    (("refused",), "connection refused: is the server running, and on this host and port?"),
)


def _cause(exc: httpx.HTTPError) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time (timed out): are the host and port right, and the server up?"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "not a valid http(s) URL: write it like http://host:8000"
    text = " ".join(str(e) for e in _chain(exc)).lower()
    for words, message in _CAUSES:
        if any(w in text for w in words):
            return message.format(error=_first_line(exc))
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection or did not answer in HTTP"
    return f"{exc.__class__.__name__}: {_first_line(exc)}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [exc.__class__.__name__])[0][:200]


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
