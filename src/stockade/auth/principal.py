"""Who is acting: a user, a service account, or anonymous. Built per request by the edge."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    user_id: int | None
    username: str
    is_admin: bool = False
    kind: str = "anonymous"  # anonymous | user | service
    token_id: int | None = None
    via: str = "none"  # none | password | token | session
    group_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None


ANONYMOUS = Principal(user_id=None, username="anonymous")
