"""Webhook delivery: the job that makes one call, and the housekeeper that finds due ones.

:func:`deliver` claims a delivery (``vulns.webhook_outbox.claim``: a conditional update, so two
workers never send the same attempt), POSTs its JSON body outside any transaction, and records
the outcome: a 2xx answer is ``delivered``; any other answer, a redirect (never followed), a
connection error or a timeout is retried after ``webhooks.backoff_s`` until
``webhooks.max_attempts`` calls have failed, then ``failed``.

A call is bounded: ``webhooks.timeout_s`` is the budget of the whole call (resolving, connecting,
sending, the answer's headers), enforced on every socket operation, so a receiver that drips its
answer cannot hold a worker past it; of the answer's body at most :data:`BODY_MAX` bytes are read
(undecoded) and the rest is dropped with the connection. The call passes the one outbound guard
(``stockade.core.outbound.GuardedBackend``, the ``[outbound]`` policy with loopback also allowed by
``webhooks.allow_loopback``): the host is resolved, every address checked, and the connection made
to a checked address (no second resolution); a refused destination fails the delivery at once
with the reason as its ``last_error``. A connection that fails is recorded as "cannot be reached",
never with the system's reason (that would tell the state of ports).

Headers: ``Content-Type: application/json``, ``User-Agent: Stockade-Webhook/1``,
``X-Stockade-Event``, ``X-Stockade-Delivery`` (the delivery's uuid), ``X-Stockade-Timestamp``
(unix seconds) and ``X-Stockade-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">``
keyed by the webhook's secret.

:func:`dispatch_due` hands due deliveries (retries whose time came, deliveries whose dispatch was
lost, claims of a worker that died) to the queue: a loop of the background runtime calls it every
``webhooks.poll_s`` (``vulns/tasks.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpcore
import httpx
import orjson
from sqlalchemy.orm import Session, sessionmaker

from stockade.core.errors import ConfigurationError
from stockade.core.outbound import GuardedBackend, RefusedDestinationError
from stockade.core.secrets import SecretBox
from stockade.db.engine import transaction
from stockade.settings import Settings
from stockade.vulns.models import WebhookEvent
from stockade.vulns.webhook_outbox import (
    USER_AGENT,
    Claimed,
    claim,
    due_deliveries,
    record_outcome,
    signature,
)

log = logging.getLogger("stockade.jobs")

__all__ = [
    "GuardedBackend",
    "RefusedDestinationError",
    "WebhookDeps",
    "deliver",
    "dispatch_due",
    "request_for",
]


class WebhookDeps(Protocol):
    """What sending needs (the container gives it)."""

    settings: Settings
    factory: sessionmaker[Session]
    secrets: SecretBox

    @property
    def dispatch_webhooks(self) -> Callable[[list[int]], None]: ...


#: How long past the timeout a claimed attempt stays ours before it is due again.
LEASE_MARGIN_S = 60.0
#: The most of an answer's body read (and dropped): the status code is what counts.
BODY_MAX = 64 * 1024


def request_for(
    claimed: Claimed, secret: str, public_url: str | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a call (the body is signed as sent)."""
    payload: dict[str, Any] = dict(claimed.payload)
    vuln = payload.get("vulnerability")
    if isinstance(vuln, dict) and "id" in vuln:
        page = f"/cves/{vuln['id']}"
        payload["url"] = f"{public_url.rstrip('/')}{page}" if public_url else page
    body = orjson.dumps(payload)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Stockade-Event": claimed.event,
        "X-Stockade-Delivery": claimed.delivery_id,
        "X-Stockade-Timestamp": str(timestamp),
        "X-Stockade-Signature": signature(secret, timestamp, body),
    }
    return body, headers


def deliver(deps: WebhookDeps, row_id: int) -> str:
    """One attempt at a delivery; returns the state written, ``""`` if it was not ours to send."""
    settings = deps.settings.webhooks
    with transaction(deps.factory) as session:
        claimed = claim(session, row_id, lease_s=settings.timeout_s + LEASE_MARGIN_S)
    if claimed is None:
        return ""
    status_code: int | None = None
    error: str | None = None
    give_up = False
    if not claimed.enabled and claimed.event != WebhookEvent.PING.value:
        error, give_up = "the webhook is disabled", True
    else:
        try:
            secret = deps.secrets.decrypt(claimed.secret_encrypted)
        except ConfigurationError as exc:
            error, give_up = exc.detail, True
        else:
            try:
                status_code, error = _post(claimed, secret, deps)
            except RefusedDestinationError as exc:  # why (the address) to the log only
                log.info("webhook delivery %s: %s", claimed.delivery_id, str(exc)[:200])
                error, give_up = f"the receiver is {RefusedDestinationError.public}", True
    with transaction(deps.factory) as session:
        state = record_outcome(
            session,
            claimed,
            status_code=status_code,
            error=error,
            max_attempts=settings.max_attempts,
            backoff_s=settings.backoff_s,
            give_up=give_up,
        )
    log.info(
        "webhook delivery %s (%s) attempt %s: %s",
        claimed.delivery_id,
        claimed.event,
        claimed.attempt,
        state or "superseded",
    )
    return state


def _post(claimed: Claimed, secret: str, deps: WebhookDeps) -> tuple[int | None, str | None]:
    """Make the call within the budget; the status code and the error to record."""
    body, headers = request_for(claimed, secret, deps.settings.public_url)
    settings = deps.settings.webhooks
    budget = settings.timeout_s
    policy = deps.settings.outbound.policy().with_loopback(settings.allow_loopback)
    backend = GuardedBackend(policy, deadline=time.monotonic() + budget)
    try:
        with (
            httpx.Client(
                transport=_transport(backend),
                follow_redirects=False,
                timeout=httpx.Timeout(budget),
                trust_env=False,  # no proxy: the destination checked is the one called
            ) as http,
            http.stream("POST", claimed.url, content=body, headers=headers) as response,
        ):
            _drain(response)
    except httpx.TimeoutException:
        return None, f"no answer within {budget:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError, OSError) as exc:
        log.info("webhook delivery %s: %s", claimed.delivery_id, str(exc)[:200])
        return None, "the receiver cannot be reached"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def _drain(response: httpx.Response) -> int:
    """Read at most :data:`BODY_MAX` bytes of the body, as sent (no decompression); the count.

    The answer is its status code: a body that is too long, too slow or broken does not change it.
    """
    read = 0
    try:
        for chunk in response.iter_raw(16 * 1024):
            read += len(chunk)
            if read >= BODY_MAX:
                break
    except (httpx.HTTPError, httpx.StreamError, OSError):
        pass
    return read


def _transport(backend: GuardedBackend) -> httpx.HTTPTransport:
    """httpx's transport over a connection pool whose sockets are opened by ``backend``."""
    transport = httpx.HTTPTransport()
    # httpx has no parameter for the network backend of its pool: the pool is replaced by the
    # same pool (TLS verified as httpx does it) with ours.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=1,
        network_backend=backend,
    )
    return transport


def dispatch_due(deps: WebhookDeps) -> list[int]:
    """Hand every due delivery to the queue; returns their ids."""
    with deps.factory() as session:
        due = due_deliveries(session)
    if due:
        deps.dispatch_webhooks(due)
    return due
