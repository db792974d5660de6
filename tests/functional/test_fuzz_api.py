"""Property-based fuzzing of the REST API from its own OpenAPI document (SPEC §12).

Every operation of the document gets generated requests, valid and invalid (schemathesis'
positive and negative data), sent to a live server of its own (the admin's calls delete and
change things at random, so no other test may share it), once with the admin's token and once
with no credentials at all; and once more with the admin's token aimed at objects that exist
(``test_fuzz_existing_objects``: a path's channel, mirror, policy, group or role replaced by one
the fixture made, so generated bodies reach the code past the lookup, e.g. a mirror update with
``null`` fields). The document is the application's own, read at collection time so
each operation is its own test; ``test_the_live_server_serves_this_document`` makes sure it is
exactly what the server publishes at ``/api/v1/openapi.json``.

Checks, on every response:

- ``not_a_server_error``: never a 5xx;
- success responses (2xx) conform to the document: documented status code, content type and
  body schema (schemathesis' ``status_code_conformance``, ``content_type_conformance`` and
  ``response_schema_conformance``);
- error responses are RFC 9457 problems (``application/problem+json`` with ``status``, ``title``
  and ``detail``) with a status from the API's error vocabulary (``web/errors.py``).

Why errors are not held to the document: FastAPI documents, for each operation, the success code
and its default ``422`` (as ``HTTPValidationError`` in ``application/json``), while the API
answers every error as a problem and also uses 401/403/404/409/413/429/503. Holding errors to the
document would fail nearly every call; the problem check above is what the API promises instead.
(Documenting the error responses in the OpenAPI document would let the built-in checks cover
them too.)

Nothing is excluded. The admin's calls may revoke the very token they use (``DELETE
/tokens/{token_id}`` with a small id): then a fresh admin token is made straight in the server's
database and the call is sent again, so the run keeps its credentials. The admin cannot delete
or disable itself, nor remove the last admin role (the API refuses those), so it cannot lock
itself out otherwise.

How it runs: schemathesis' pytest integration (``@schema.parametrize()``) cannot be used with
pytest 9.2, which builds a test's node id from its ``originalname`` and so gives all of
schemathesis' per-operation items one id (pytest-xdist then runs one operation per function),
and its lazy ``from_fixture`` mode fails on the removed ``Node._nodeid``. So operations are
parametrized here and each one runs a Hypothesis test over schemathesis' strategies
(``APIOperation.as_strategy``), bounded for CI: ``MAX_EXAMPLES`` per operation and principal,
``derandomize`` (the same examples on every run), no example database, no deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from stockade.auth.models import User
from stockade.auth.tokens import TokenService
from stockade.db.engine import transaction
from tests.conftest import TESTDATA
from tests.support.offline_app import openapi_document
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = pytest.mark.functional

MAX_EXAMPLES = 20
REQUEST_TIMEOUT = 60
#: What ``web/errors.py`` answers for a refused request.
ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503})

DOCUMENT = openapi_document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@dataclass
class FuzzServer:
    live: LiveServer
    token: str
    channel: str
    #: Existing objects by path prefix, for the ``existing`` mode (``/mirrors/`` -> a mirror).
    names: dict[str, str]

    @property
    def url(self) -> str:
        return self.live.url

    def headers(self, principal: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if principal == "admin" else {}

    def renew_admin_token(self) -> None:
        """A new admin token made in the server's database (the fuzzer revoked the last one)."""
        container = self.live.container
        with transaction(container.factory) as session:
            admin = session.scalar(select(User).where(User.username == "admin"))
            assert admin is not None
            self.token = TokenService(session, max_days=30).create(admin.id, "fuzz", 30).secret
        container.authenticator.forget_all()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    with fresh_database("sqlite", data_dir, None) as db_url, run_server(data_dir, db_url) as live:
        # Something for generated names to run into: a public channel with a package.
        channel = live.new_channel(prefix="fuzz")
        package = TESTDATA / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
        assert live.upload(channel, package).status_code == 201
        yield FuzzServer(live, live.admin_token, channel, _existing_objects(live, channel))


def _existing_objects(live: LiveServer, channel: str) -> dict[str, str]:
    """A mirror, a policy, a group and a role for the ``existing`` mode's requests to reach."""
    source = (TESTDATA / "channels" / "test-recipes").as_uri()
    creations = [
        (
            "/api/v1/mirrors",  # subdirs the channel has: the source is checked at creation
            {
                "name": "fuzz-mirror",
                "source": source,
                "channel": "fuzz-mirror",
                "subdirs": ["noarch"],
            },
        ),
        ("/api/v1/policies", {"name": "fuzz-policy"}),
        ("/api/v1/groups", {"name": "fuzz-group"}),
        ("/api/v1/roles", {"name": "fuzz-role"}),
    ]
    for path, body in creations:
        response = live.admin.post(path, json=body)
        assert response.status_code == 201, f"{path}: {response.text}"
    return {
        "/api/v1/mirrors/": "fuzz-mirror",
        "/api/v1/policies/": "fuzz-policy",
        "/api/v1/groups/": "fuzz-group",
        "/api/v1/roles/": "fuzz-role",
        "/api/v1/channels/": channel,
    }


def test_the_live_server_serves_this_document(fuzz_server: FuzzServer) -> None:
    response = httpx.get(f"{fuzz_server.url}/api/v1/openapi.json", timeout=60)
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert len(OPERATIONS) == sum(len(item) for item in DOCUMENT["paths"].values())


def integer_parameters() -> list[tuple[str, str, str, str]]:
    """(method, path, parameter, location) of every integer parameter of the document."""
    found = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                types = {schema.get("type"), *(s.get("type") for s in schema.get("anyOf", []))}
                if "integer" in types:
                    found.append((method.upper(), path, parameter["name"], parameter["in"]))
    return found


INTEGERS = integer_parameters()


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1], ids=["2**63", "-2**63-1"])
@pytest.mark.parametrize(
    ("method", "path", "name", "where"), INTEGERS, ids=[f"{m} {p} {n}" for m, p, n, _ in INTEGERS]
)
def test_integers_beyond_64_bits_are_refused(
    fuzz_server: FuzzServer, method: str, path: str, name: str, where: str, value: int
) -> None:
    """Random draws rarely leave 64 bits; the database does not take such numbers: a 4xx."""
    url = path.replace("{channel}", fuzz_server.channel)
    params = {}
    if where == "path":
        url = url.replace(f"{{{name}}}", str(value))
    else:
        params[name] = str(value)
    response = httpx.request(
        method, fuzz_server.url + url, params=params, headers=fuzz_server.headers("admin")
    )
    assert 400 <= response.status_code < 500, f"{method} {url} {params}: {response.status_code}"
    assert response.headers["content-type"] == "application/problem+json"


# -- checks --------------------------------------------------------------------------------------


def errors_are_problems(_ctx: Any, response: Any, case: Any) -> bool | None:
    """An error is an RFC 9457 problem with a status from the API's error vocabulary."""
    status = response.status_code
    if status < 400:
        return None
    assert status in ERROR_STATUSES, f"unexpected error status {status}"
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/problem+json"), (
        f"error {status} as {content_type!r}, not application/problem+json"
    )
    if case.method.upper() == "HEAD":
        return None
    problem = response.json()
    assert problem.get("status") == status, f"problem status {problem.get('status')} != {status}"
    assert problem.get("title"), "a problem needs a title"
    assert isinstance(problem.get("detail"), str), "a problem needs a detail"
    return None


def on_success(check: Any) -> Any:
    """Run a conformance check on 2xx answers only (errors are held to ``errors_are_problems``)."""

    def run(ctx: Any, response: Any, case: Any) -> bool | None:
        if not 200 <= response.status_code < 300:
            return None
        result: bool | None = check(ctx, response, case)
        return result

    run.__name__ = check.__name__
    return run


CHECKS = [
    not_a_server_error,
    errors_are_problems,
    on_success(status_code_conformance),
    on_success(content_type_conformance),
    on_success(response_schema_conformance),
]


# -- the fuzzing ---------------------------------------------------------------------------------


def cases(operation: Any) -> st.SearchStrategy[Any]:
    """Valid and invalid requests (an operation whose inputs are free strings has no invalid
    ones: that branch is simply filtered out)."""
    return st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )


def aim_at_existing(case: Any, server: FuzzServer) -> None:
    """Path parameters naming a channel, mirror, policy, group or role name an existing one, so
    that generated bodies and queries reach the code past the lookup (random names give 404)."""
    parameters = case.path_parameters or {}
    if "channel" in parameters:
        parameters["channel"] = server.channel
    if "name" in parameters:
        for prefix, name in server.names.items():
            if case.path.startswith(prefix):
                parameters["name"] = name


#: Operations whose path names an object ``aim_at_existing`` can point at (not deletions: the
#: objects must survive for the other operations).
AIMED = [
    op
    for op in OPERATIONS
    if op.method.upper() != "DELETE"
    and ("{channel}" in op.path or ("{name}" in op.path and "/cve/" not in op.path))
    and not op.path.endswith(("/freeze", "/unfreeze"))
]


@pytest.mark.parametrize("operation", AIMED, ids=[op.label for op in AIMED])
def test_fuzz_existing_objects(operation: Any, fuzz_server: FuzzServer) -> None:
    """The admin's generated requests against objects that exist (``null`` fields of a mirror
    update, say, are only reached on a mirror that exists)."""
    run_fuzz(operation, "admin", fuzz_server, aim=True)


@pytest.mark.parametrize("principal", ["admin", "anonymous"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_fuzz(operation: Any, principal: str, fuzz_server: FuzzServer) -> None:
    run_fuzz(operation, principal, fuzz_server, aim=False)


def run_fuzz(operation: Any, principal: str, fuzz_server: FuzzServer, *, aim: bool) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(case=cases(operation))
    def fuzz(case: Any) -> None:
        if aim:
            aim_at_existing(case, fuzz_server)
        response = send(case, fuzz_server, principal)
        if response.status_code == 401 and principal == "admin":  # it revoked its own token
            fuzz_server.renew_admin_token()
            response = send(case, fuzz_server, principal)
        case.validate_response(response, checks=CHECKS)

    fuzz()


def send(case: Any, fuzz_server: FuzzServer, principal: str) -> Any:
    """One generated request. The timeout is a hang guard, not a speed check: schemathesis'
    default of 10 s was once reached on a busy CI machine by a plain GET."""
    return case.call(
        base_url=fuzz_server.url, headers=fuzz_server.headers(principal), timeout=REQUEST_TIMEOUT
    )
