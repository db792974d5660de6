"""Webhook deliveries for scan verdicts: a channel's file quarantined or held (SPEC §8).

Written in the transaction that records the verdict (an outbox row per subscribed webhook of the
file's channel); the webhook housekeeper sends them, signed, as every other delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from stockade.channels.models import Artifact
from stockade.vulns.models import WebhookEvent
from stockade.vulns.webhook_outbox import WebhookIndex, new_delivery

MAX_FINDINGS = 20


def enqueue_scan_event(
    session: Session,
    artifact: Artifact,
    channel: str,
    status: str,
    findings: Sequence[dict[str, Any]],
) -> list[int]:
    """Deliveries to the channel's webhooks subscribed to the verdict's event; their row ids."""
    event = WebhookEvent.QUARANTINED if status == "malicious" else WebhookEvent.HELD
    hooks = WebhookIndex.load(session).subscribed(artifact.channel_id, event.value)
    if not hooks:
        return []
    rows = [
        new_delivery(
            hook_id,
            event,
            partial(
                _payload,
                event=event,
                channel=channel,
                artifact=artifact,
                status=status,
                findings=findings,
            ),
        )
        for hook_id in hooks
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def _payload(
    delivery_id: str,
    now: datetime,
    *,
    event: WebhookEvent,
    channel: str,
    artifact: Artifact,
    status: str,
    findings: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "event": event.value,
        "delivery_id": delivery_id,
        "created_at": now.isoformat(),
        "channel": channel,
        "artifact": {
            "id": artifact.id,
            "subdir": artifact.subdir,
            "filename": artifact.filename,
            "name": artifact.name,
            "version": artifact.version,
            "sha256": artifact.sha256,
        },
        "status": status,
        "findings": [
            {k: f.get(k) for k in ("scanner", "rule", "verdict", "member")}
            for f in findings[:MAX_FINDINGS]
        ],
    }
