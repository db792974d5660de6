"""REST schemas of channel webhooks and their deliveries (SPEC §7 notifications)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from stockade.web.api.schemas import Strict

EventLiteral = Literal[
    "vulnerability.matched", "vulnerability.active", "artifact.quarantined", "artifact.held"
]
ALL_EVENTS: tuple[EventLiteral, ...] = (
    "vulnerability.matched",
    "vulnerability.active",
    "artifact.quarantined",
    "artifact.held",
)


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=4096, examples=["https://hooks.example.org/stockade"])
    events: list[EventLiteral] = Field(
        default_factory=lambda: list(ALL_EVENTS),
        max_length=8,
        description="what to be called for (default: both)",
    )
    description: str = Field(default="", max_length=4000)
    enabled: bool = True
    secret: str | None = Field(
        default=None,
        max_length=4096,
        description="signs each call; 16 to 256 printable characters (default: generated)",
    )


class WebhookUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=4096)
    events: list[EventLiteral] | None = Field(default=None, max_length=8)
    description: str | None = Field(default=None, max_length=4000)
    enabled: bool | None = None
    secret: str | None = Field(default=None, max_length=4096, description="a new secret")
    rotate_secret: bool = Field(default=False, description="generate a new secret")


class WebhookPublic(BaseModel):
    id: int
    channel: str
    url: str
    events: list[str]
    enabled: bool
    description: str
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    href: str


class WebhookWithSecret(WebhookPublic):
    secret: str | None = Field(
        description="the secret, in this answer only: when the webhook is created or its secret "
        "changed (null otherwise); it is never shown again"
    )


class DeliveryPublic(BaseModel):
    delivery_id: str = Field(description="sent as X-Stockade-Delivery")
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
