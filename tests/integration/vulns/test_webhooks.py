"""Webhook notifications (SPEC §7): the outbox the matcher writes, and the calls the job makes.

Real advisories (``osv-pypi/aiohttp``), real databases (SQLite and PostgreSQL), a real HTTP
receiver (``tests/support/webhook_receiver.py``). The expected advisories of a version are read
from the stored matches, so these tests check what is announced, not what matches.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.errors import InvalidInputError
from stockade.core.outbound import OutboundPolicy
from stockade.db.engine import transaction
from stockade.settings import WebhookSettings
from stockade.vulns.curation import CurationService
from stockade.vulns.display import display_summary
from stockade.vulns.matcher import Matcher
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.models import WebhookDelivery
from stockade.vulns.tasks import sync_feed
from stockade.vulns.webhook_delivery import BODY_MAX, deliver, request_for
from stockade.vulns.webhook_outbox import (
    Claimed,
    claim,
    record_outcome,
    refused_address,
    signature,
)
from stockade.vulns.webhooks import WebhookService, WebhookSpec
from tests.integration.vulns.support import (
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
    sync,
)
from tests.support.webhook_receiver import Receiver, receiving

ADVISORY = "PYSEC-2021-76"  # aiohttp: introduced 0, fixed 3.7.4
NOWHERE = "http://127.0.0.1:9/hook"  # never called in the outbox tests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found


@pytest.fixture(autouse=True)
def loopback_receivers(container: Container) -> None:
    """The receivers of these tests listen on 127.0.0.1: allowed here, refused by default."""
    container.settings.webhooks = WebhookSettings(allow_loopback=True)


def add_hook(
    container: Container,
    admin: Principal,
    channel: str,
    url: str = NOWHERE,
    **spec: Any,
) -> tuple[int, str]:
    with transaction(container.factory) as session:
        service = WebhookService(
            session, container.secrets, allow_loopback=container.settings.webhooks.allow_loopback
        )
        hook, secret = service.create(admin, channel, WebhookSpec(url=url, **spec))
        return hook.id, secret


def synced(container: Container, admin: Principal, tmp_path: Path, package: str) -> None:
    """A feed of the package's real advisories, synced."""
    folder = osv_folder(tmp_path / package, package).as_uri()
    sync(container, add_feed(container, admin, package, folder, "osv"))


def deliveries(container: Container) -> list[WebhookDelivery]:
    with container.factory() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        session.expunge_all()
        return list(rows)


def ping(container: Container, admin: Principal, channel: str, hook_id: int) -> int:
    with transaction(container.factory) as session:
        return WebhookService(session, container.secrets).ping(admin, channel, hook_id).id


def make_due(container: Container, row_id: int) -> None:
    with transaction(container.factory) as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def row(container: Container, row_id: int) -> WebhookDelivery:
    with container.factory() as session:
        found = session.get(WebhookDelivery, row_id)
        assert found is not None
        session.expunge(found)
        return found


def advisories_of(container: Container, version: str, build: str) -> set[str]:
    return {v for (v, n, ver, b), _ in matches(container).items() if (ver, b) == (version, build)}


# -- the outbox ------------------------------------------------------------------------------


def test_new_matches_write_grouped_deliveries_in_their_transaction(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    internal = channel_id(container, admin, "internal")
    quiet = channel_id(container, admin, "quiet")  # no webhook listening to new matches
    hook_id, _ = add_hook(container, admin, "internal")
    # on the quiet channel: a disabled webhook, and one that wants only "active"
    add_hook(container, admin, "quiet", enabled=False)
    add_hook(container, admin, "quiet", events=["vulnerability.active"])
    synced(container, admin, tmp_path, "aiohttp")
    ids = add_artifacts(
        container, internal, [("aiohttp", "3.7.3", "0"), ("aiohttp", "3.7.3", "1")], match=False
    )
    ids += add_artifacts(container, quiet, [("aiohttp", "3.7.3", "2")], match=False)

    # rolled back with the matches: nothing was announced
    with container.factory() as session:
        counts = Matcher(session).match_artifacts(ids)
        assert counts.added > 0 and counts.deliveries
        pending = session.scalars(select(WebhookDelivery.id)).all()
        assert sorted(pending) == sorted(counts.deliveries)
        session.rollback()
    assert deliveries(container) == []

    with transaction(container.factory) as session:
        counts = Matcher(session).match_artifacts(ids)
    found = deliveries(container)
    assert sorted(d.id for d in found) == sorted(counts.deliveries)
    expected = advisories_of(container, "3.7.3", "0")
    assert ADVISORY in expected
    # one delivery per advisory, listing both builds of the channel; none for the quiet channel
    assert sorted(d.payload["vulnerability"]["id"] for d in found) == sorted(expected)
    for d in found:
        assert d.webhook_id == hook_id and d.event == "vulnerability.matched"
        assert d.state == "pending" and d.attempts == 0
        assert d.payload["channel"] == "internal" and d.payload["event"] == d.event
        assert d.payload["delivery_id"] == d.delivery_id
        assert d.payload["status"] == "reported"
        assert [(a["filename"], a["subdir"]) for a in d.payload["artifacts"]] == [
            ("aiohttp-3.7.3-0.conda", "noarch"),
            ("aiohttp-3.7.3-1.conda", "noarch"),
        ]
    one = next(d for d in found if d.payload["vulnerability"]["id"] == ADVISORY)
    vuln = one.payload["vulnerability"]
    assert set(vuln) == {"id", "aliases", "summary", "severity", "score", "score_source", "kev"}
    with container.factory() as session:
        stored = session.scalar(select(VulnRow).where(VulnRow.vuln_id == ADVISORY))
        assert stored is not None
        assert vuln["aliases"] == stored.aliases and stored.aliases
        # the summary, else the start of the details (one fallback: vulns/display.py)
        assert vuln["summary"] == display_summary(stored.summary, stored.details)
        assert vuln["summary"] and vuln["score"] == stored.best_score
        assert vuln["severity"] == stored.severity and vuln["kev"] is False

    # matching again adds nothing, and so announces nothing
    with transaction(container.factory) as session:
        assert Matcher(session).match_artifacts(ids).deliveries == []
    assert len(deliveries(container)) == len(found)


def test_a_feed_sync_announces_and_dispatches(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    internal = channel_id(container, admin, "internal")
    quiet = channel_id(container, admin, "quiet")
    # no webhook at all: matching announces nothing
    synced(container, admin, tmp_path, "bleach")
    ids = add_artifacts(container, quiet, [("bleach", "3.1.0", "0")], match=False)
    with transaction(container.factory) as session:
        counts = Matcher(session).match_artifacts(ids)
    assert counts.added > 0 and counts.deliveries == []
    add_hook(container, admin, "internal", events=["vulnerability.matched"])
    add_artifacts(container, internal, [("aiohttp", "3.7.3", "0")], match=False)
    dispatched: list[int] = []
    container.dispatch_webhooks = dispatched.extend
    feed_id = add_feed(container, admin, "f", osv_folder(tmp_path, "aiohttp").as_uri(), "osv")
    counts = sync_feed(container, feed_id)
    assert counts is not None and counts.matches_added > 0
    found = deliveries(container)
    assert found and sorted(dispatched) == sorted(d.id for d in found)
    assert {d.payload["vulnerability"]["id"] for d in found} == advisories_of(
        container, "3.7.3", "0"
    )


def test_a_curation_to_active_announces_once(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    internal = channel_id(container, admin, "internal")
    synced(container, admin, tmp_path, "aiohttp")
    add_artifacts(
        container,
        internal,
        [("aiohttp", "3.7.3", "0"), ("aiohttp", "3.7.3", "1"), ("aiohttp", "3.7.2", "0")],
    )
    hook_id, _ = add_hook(container, admin, "internal", events=["vulnerability.active"])

    def curate(status: str) -> list[int]:
        with transaction(container.factory) as session:
            _, counts = CurationService(session).curate(
                admin, ADVISORY, "aiohttp", "3.7.3", status, "checked"
            )
        return counts.deliveries

    made = curate("active")
    found = deliveries(container)
    assert [d.id for d in found] == made and len(made) == 1
    payload = found[0].payload
    assert found[0].event == "vulnerability.active" and found[0].webhook_id == hook_id
    assert payload["status"] == "active" and payload["vulnerability"]["id"] == ADVISORY
    assert [a["build"] for a in payload["artifacts"]] == ["0", "1"]  # 3.7.2 was not curated
    assert {a["version"] for a in payload["artifacts"]} == {"3.7.3"}
    assert curate("active") == []  # already active: no change, no call
    assert curate("cleared") == []
    assert len(curate("active")) == 1  # active again


# -- the calls -------------------------------------------------------------------------------


def test_a_delivered_call_is_signed_with_the_secret(
    container: Container, admin: Principal, tmp_path: Path, receiver: Receiver
) -> None:
    internal = channel_id(container, admin, "internal")
    _, secret = add_hook(container, admin, "internal", url=f"{receiver.url}/hook")
    synced(container, admin, tmp_path, "aiohttp")
    add_artifacts(container, internal, [("aiohttp", "3.7.3", "0")])
    target = next(d for d in deliveries(container) if d.payload["vulnerability"]["id"] == ADVISORY)
    assert deliver(container, target.id) == "delivered"
    (call,) = receiver.on("/hook")
    assert call.verifies(secret)
    assert not call.verifies(secret + "x")
    assert call.headers["content-type"] == "application/json"
    assert call.headers["user-agent"] == "Stockade-Webhook/1"
    assert call.headers["x-stockade-event"] == "vulnerability.matched"
    assert call.headers["x-stockade-delivery"] == target.delivery_id
    assert call.headers["x-stockade-timestamp"].isdigit()
    body = call.json
    assert body["delivery_id"] == target.delivery_id and body["channel"] == "internal"
    assert body["vulnerability"]["id"] == ADVISORY
    assert body["url"] == f"/cves/{ADVISORY}"  # no public_url set: the path
    # with a public URL, the advisory's page under it; the signature covers the body as sent
    claimed = Claimed(target.id, target.delivery_id, target.event, target.payload, 1, "", "", True)
    sent, headers = request_for(claimed, secret, "https://stockade.example/")
    assert json.loads(sent)["url"] == f"https://stockade.example/cves/{ADVISORY}"
    timestamp = int(headers["X-Stockade-Timestamp"])
    assert headers["X-Stockade-Signature"] == signature(secret, timestamp, sent)
    done = row(container, target.id)
    assert done.state == "delivered" and done.attempts == 1 and done.last_status_code == 200
    assert done.delivered_at is not None and done.next_attempt_at is None
    assert deliver(container, target.id) == ""  # delivered: never sent again
    assert len(receiver.on("/hook")) == 1


def test_failed_calls_are_retried_with_backoff_then_given_up(
    container: Container, admin: Principal, receiver: Receiver
) -> None:
    container.settings.webhooks = WebhookSettings(
        max_attempts=3, backoff_s=[30, 120], allow_loopback=True
    )
    channel_id(container, admin, "internal")
    hook_id, secret = add_hook(container, admin, "internal", url=f"{receiver.url}/flaky")
    receiver.script("/flaky", [500, 503])
    delivery = ping(container, admin, "internal", hook_id)

    before = utcnow()
    assert deliver(container, delivery) == "pending"
    first = row(container, delivery)
    assert first.attempts == 1 and first.last_status_code == 500
    assert first.last_error == "HTTP 500"
    assert first.next_attempt_at is not None
    assert first.next_attempt_at >= before + timedelta(seconds=30)
    assert deliver(container, delivery) == ""  # not due yet: no call
    assert len(receiver.on("/flaky")) == 1

    make_due(container, delivery)
    before = utcnow()
    assert deliver(container, delivery) == "pending"
    second = row(container, delivery)
    assert second.attempts == 2 and second.last_status_code == 503
    assert second.next_attempt_at is not None
    assert second.next_attempt_at >= before + timedelta(seconds=120)

    make_due(container, delivery)
    assert deliver(container, delivery) == "delivered"
    third = row(container, delivery)
    assert third.attempts == 3 and third.last_status_code == 200 and third.last_error is None
    calls = receiver.on("/flaky")
    assert [c.status for c in calls] == [500, 503, 200]
    assert {c.headers["x-stockade-delivery"] for c in calls} == {third.delivery_id}
    assert all(c.verifies(secret) and c.event == "ping" for c in calls)

    # always failing: failed after max_attempts, then never tried again
    receiver.script("/flaky", [500, 500, 500, 500])
    doomed = ping(container, admin, "internal", hook_id)
    for _ in range(2):
        assert deliver(container, doomed) == "pending"
        make_due(container, doomed)
    assert deliver(container, doomed) == "failed"
    gone = row(container, doomed)
    assert gone.state == "failed" and gone.attempts == 3 and gone.next_attempt_at is None
    make_due(container, doomed)
    assert deliver(container, doomed) == ""

    # a redirect is not followed; an endpoint that does not answer is a failure
    moved, _ = add_hook(container, admin, "internal", url=f"{receiver.url}/moved")
    receiver.script("/moved", [302])
    delivery = ping(container, admin, "internal", moved)
    assert deliver(container, delivery) == "pending"  # a redirect is not followed
    assert row(container, delivery).last_status_code == 302
    assert [c.path for c in receiver.calls][-1] == "/moved"

    closed, _ = add_hook(container, admin, "internal", url=NOWHERE)
    delivery = ping(container, admin, "internal", closed)
    assert deliver(container, delivery) == "pending"
    failed = row(container, delivery)
    assert failed.last_status_code is None and failed.last_error


def test_a_claim_is_taken_once(container: Container, admin: Principal, receiver: Receiver) -> None:
    channel_id(container, admin, "internal")
    hook_id, _ = add_hook(container, admin, "internal", url=f"{receiver.url}/once")
    delivery = ping(container, admin, "internal", hook_id)
    with transaction(container.factory) as session:
        first = claim(session, delivery, lease_s=60)
    with transaction(container.factory) as session:
        assert claim(session, delivery, lease_s=60) is None  # taken (and not due until the lease)
    assert first is not None and first.attempt == 1

    # racing workers: one call
    delivery = ping(container, admin, "internal", hook_id)
    start = threading.Barrier(4)
    results: list[str] = []

    def worker() -> None:
        start.wait()
        results.append(deliver(container, delivery))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["", "", "", "delivered"]
    assert len(receiver.on("/once")) == 1

    # deleting the webhook drops its deliveries
    ping(container, admin, "internal", hook_id)
    with transaction(container.factory) as session:
        WebhookService(session, container.secrets).delete(admin, "internal", hook_id)
    assert deliveries(container) == []


def test_a_call_reads_little_of_the_answer_and_ends_within_its_budget(
    container: Container, admin: Principal, receiver: Receiver
) -> None:
    container.settings.webhooks = WebhookSettings(timeout_s=1.5, allow_loopback=True)
    channel_id(container, admin, "internal")

    def attempt(path: str, behaviour: str) -> tuple[str, WebhookDelivery, int]:
        receiver.misbehave(path, behaviour)
        hook_id, _ = add_hook(container, admin, "internal", url=f"{receiver.url}{path}")
        delivery = ping(container, admin, "internal", hook_id)
        state = deliver(container, delivery)
        # the receiver records the call once it could no longer send: the caller hung up
        (call,) = receiver.wait(lambda c: c.path == path)
        return state, row(container, delivery), call.sent

    # 300 MB announced: the status counts, the body is not read beyond a small bound
    state, done, sent = attempt("/huge", "huge")
    assert state == "delivered" and done.last_status_code == 200 and done.last_error is None
    assert sent < 300 * 1024 * 1024 // 10  # hung up after BODY_MAX (and the socket buffers)
    assert BODY_MAX <= 64 * 1024

    # a body dripped a byte at a time: the status counts, the call ends with its budget
    state, done, sent = attempt("/drip-body", "drip-body")
    assert state == "delivered" and done.last_status_code == 200
    assert sent < 1024 * 1024  # the 1 MB body was never all sent

    # headers dripped a byte at a time: no answer within the budget, retried later
    state, done, sent = attempt("/drip-headers", "drip-headers")
    assert state == "pending" and done.attempts == 1 and done.last_status_code is None
    assert done.last_error == "no answer within 1.5 s"
    assert sent < 2000  # the headers were never all sent


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.8.7", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.20", "private"),
        ("fd00::5", "private"),
        ("100.64.0.1", "private"),
        ("93.184.215.14", None),
    ],
)
def test_the_destination_policy(address: str, refused: str | None) -> None:
    reason = refused_address(address)
    assert (reason is None) if refused is None else (reason is not None and refused in reason)
    if refused == "loopback":
        assert refused_address(address, allow_loopback=True) is None
    elif refused == "private":  # on-premises receivers: an admin allows them (docs/adr/0010)
        assert refused_address(address, allow_private=True) is None
        assert refused_address(address, allow_loopback=True) is not None
    elif refused is not None:
        assert refused_address(address, allow_loopback=True) is not None
        assert refused_address(address, allow_private=True) is not None


def test_refused_destinations_at_creation_and_at_delivery(
    container: Container, admin: Principal, receiver: Receiver
) -> None:
    channel_id(container, admin, "internal")

    def create(url: str, allow_loopback: bool) -> None:
        with transaction(container.factory) as session:
            WebhookService(session, container.secrets, allow_loopback=allow_loopback).create(
                admin, "internal", WebhookSpec(url=url)
            )

    refused = [
        "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://localhost:8080/",  # a name resolving to loopback
    ]
    for url in refused:
        with pytest.raises(InvalidInputError) as caught:
            create(url, allow_loopback=False)
        assert caught.value.code == "webhook:refused-destination", url
    create("http://127.0.0.1/hook", allow_loopback=True)
    with pytest.raises(InvalidInputError, match="link-local"):
        create("http://169.254.169.254/", allow_loopback=True)
    with pytest.raises(InvalidInputError, match="private"):  # the LAN: when an admin allows it
        create("http://10.20.30.40/hook", allow_loopback=False)
    with transaction(container.factory) as session:
        lan = OutboundPolicy(allow_private=True)
        WebhookService(session, container.secrets, outbound=lan).create(
            admin, "internal", WebhookSpec(url="http://10.20.30.40/hook")
        )
    create("http://no-such-host.invalid/hook", allow_loopback=False)  # checked when called
    # an update is checked too
    hook_id, _ = add_hook(container, admin, "internal", url="http://93.184.215.14/")
    with transaction(container.factory) as session, pytest.raises(InvalidInputError):
        WebhookService(session, container.secrets).update(
            admin, "internal", hook_id, WebhookSpec(url="http://169.254.169.254/")
        )

    # at delivery, on the addresses resolved: a refused destination fails at once, uncalled
    container.settings.webhooks = WebhookSettings(allow_loopback=False)
    port = receiver.url.rsplit(":", 1)[1]
    # the delivery (read by the channel's managers) says refused, not what the host resolves to
    reason = "the receiver is refused by the server's outbound policy"
    for url in (f"{receiver.url}/direct", f"http://localhost:{port}/named"):
        with transaction(container.factory) as session:  # as stored before the policy
            hook = WebhookService(session, container.secrets, allow_loopback=True).create(
                admin, "internal", WebhookSpec(url=url)
            )[0]
            hook_id = hook.id
        delivery = ping(container, admin, "internal", hook_id)
        assert deliver(container, delivery) == "failed"
        done = row(container, delivery)
        assert done.last_error == reason, done.last_error
        assert done.last_status_code is None and done.attempts == 1
    assert receiver.calls == []
    # allowed again: the same receiver is called
    container.settings.webhooks = WebhookSettings(allow_loopback=True)
    assert deliver(container, ping(container, admin, "internal", hook_id)) == "delivered"
    assert [c.path for c in receiver.calls] == ["/named"]


def test_a_stale_attempt_does_not_record_over_a_redelivery(
    container: Container, admin: Principal, receiver: Receiver
) -> None:
    settings = container.settings.webhooks
    channel_id(container, admin, "internal")
    hook_id, _ = add_hook(container, admin, "internal", url=f"{receiver.url}/again")
    delivery = ping(container, admin, "internal", hook_id)
    delivery_id = row(container, delivery).delivery_id

    def redeliver() -> None:
        with transaction(container.factory) as session:
            WebhookService(session, container.secrets).redeliver(
                admin, "internal", hook_id, delivery_id
            )

    def outcome(claimed: Claimed, status_code: int, error: str | None = None) -> str:
        with transaction(container.factory) as session:
            return record_outcome(
                session,
                claimed,
                status_code=status_code,
                error=error,
                max_attempts=settings.max_attempts,
                backoff_s=settings.backoff_s,
            )

    with transaction(container.factory) as session:
        stale = claim(session, delivery, lease_s=60)
    assert stale is not None and stale.attempt == 1
    # redelivered while the first attempt is in flight: due now, attempts counted afresh
    redeliver()
    assert outcome(stale, 500, "HTTP 500") == ""  # no longer its attempt
    with transaction(container.factory) as session:
        fresh = claim(session, delivery, lease_s=60)
    assert fresh is not None and fresh.attempt == stale.attempt == 1  # the same count...
    assert outcome(stale, 500, "HTTP 500") == ""  # ...yet the stale attempt still loses
    current = row(container, delivery)
    assert current.state == "pending" and current.last_error is None
    assert current.attempts == 1
    assert outcome(fresh, 200) == "delivered"
    done = row(container, delivery)
    assert done.state == "delivered" and done.last_status_code == 200
    # the whole way, through the job: redelivered once delivered, sent again
    redeliver()
    assert deliver(container, delivery) == "delivered"
    assert len(receiver.on("/again")) == 1  # the two claims above were never sent
    assert outcome(fresh, 500, "HTTP 500") == ""
    assert row(container, delivery).state == "delivered"


def test_an_attempt_ending_during_a_redelivery_does_not_undo_it(
    container: Container, admin: Principal, receiver: Receiver
) -> None:
    """The in-flight attempt records ``delivered`` after the redelivery read the row (still
    ``pending``) and before it wrote: the redelivery still leaves the row pending and due (it
    was lost on PostgreSQL: the write kept the attempt's ``delivered``)."""
    settings = container.settings.webhooks
    channel_id(container, admin, "internal")
    hook_id, _ = add_hook(container, admin, "internal", url=f"{receiver.url}/raced")
    delivery = ping(container, admin, "internal", hook_id)
    delivery_id = row(container, delivery).delivery_id
    with transaction(container.factory) as session:
        in_flight = claim(session, delivery, lease_s=60)
    assert in_flight is not None
    outcomes: list[str] = []

    def attempt_ends() -> None:
        with transaction(container.factory) as session:
            outcomes.append(
                record_outcome(
                    session,
                    in_flight,
                    status_code=200,
                    error=None,
                    max_attempts=settings.max_attempts,
                    backoff_s=settings.backoff_s,
                )
            )

    ending = threading.Thread(target=attempt_ends)
    with transaction(container.factory) as session:

        def between_read_and_write(*_: object) -> None:
            ending.start()
            ending.join(1.0)  # done at once unless the redelivery holds the row (it must)

        event.listen(session, "before_flush", between_read_and_write, once=True)
        WebhookService(session, container.secrets).redeliver(
            admin, "internal", hook_id, delivery_id
        )
    ending.join(30)
    assert outcomes == [""]  # the attempt lost: the row was redelivered under it
    current = row(container, delivery)
    assert (current.state, current.attempts, current.delivered_at) == ("pending", 0, None)
    assert deliver(container, delivery) == "delivered"
    assert len(receiver.on("/raced")) == 1
