"""Stored policies: create, change, delete, assign to channels and mirrors (SPEC §6).

Who may do what:

- read policies: the global ``policy:read`` permission (roles ``policies=read`` and above);
- create, change, delete a policy: global ``policy:write`` / ``policy:manage``;
- assign a policy to a channel or a mirror: ``policy:manage`` on that channel (a channel manager may
  restrict their channel further);
- unassign: the global ``policy:manage`` (a channel manager cannot lift a policy security staff set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import column, func, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService, ChannelHiddenError
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Channel
from stockade.channels.service import ChannelService, channel_ref
from stockade.core.errors import InvalidInputError, NotFoundError
from stockade.policies.errors import PolicyExistsError, PolicyNotFoundError
from stockade.policies.model import Policy
from stockade.policies.models import PolicyAssignment, PolicyRow

NAME_MAX = 128
#: Names that are paths of the API and the web UI (``/policies/explain``, ``/policies/new``).
RESERVED_NAMES = frozenset({"new", "explain", "dry-run"})
# The mirrors table belongs to the mirroring domain, a layer above: names and ids only.
_MIRRORS = table("mirrors", column("id"), column("name"), column("channel_id"))


def parse_definition(name: str, definition: Mapping[str, Any]) -> Policy:
    """The engine's policy for a stored definition; raises InvalidInputError naming the field."""
    if not isinstance(definition, Mapping):
        raise InvalidInputError("a policy definition is a JSON object", field="definition")
    data = {k: v for k, v in definition.items() if k not in ("name", "description")}
    return Policy.from_dict({"name": name, **data})


#: Criteria no record can meet yet, refused in new and changed definitions (a stored one still
#: evaluates: it keeps nothing, each exclusion saying why). None today: ``signed_only`` is met by
#: upstream signatures verified against a mirror's trusted root (``stockade.signing.upstream``).
UNMET_CRITERIA: dict[str, str] = {}


def refuse_unmet_criteria(definition: Mapping[str, Any]) -> None:
    for key, why in UNMET_CRITERIA.items():
        if isinstance(definition, Mapping) and definition.get(key):
            raise InvalidInputError(f"{key}: {why}", code="policy:unmet-criterion", field=key)


def parse_new_definition(name: str, definition: Mapping[str, Any]) -> Policy:
    """A definition being written or tried as a draft: as :func:`parse_definition`, and criteria
    that nothing can meet yet are refused."""
    policy = parse_definition(name, definition)
    refuse_unmet_criteria(definition)
    return policy


def _check_name(name: str) -> str:
    clean = name.strip() if isinstance(name, str) else ""
    if (
        not clean
        or len(clean) > NAME_MAX
        or any(c in clean for c in "/\\ \t")
        or not clean.isprintable()
    ):
        raise InvalidInputError(
            f"policy names are 1-{NAME_MAX} printable characters without spaces or slashes",
            code="policy:invalid-name",
            field="name",
        )
    if clean.lower() in RESERVED_NAMES:
        raise InvalidInputError(
            f"{clean!r} is reserved; choose another policy name",
            code="policy:invalid-name",
            field="name",
        )
    return clean


def _clean_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The stored shape: only the fields that are set, name and description kept apart."""
    return {
        k: v
        for k, v in definition.items()
        if k not in ("name", "description") and v not in (None, [], (), "", False)
    }


@dataclass(frozen=True)
class AssignmentView:
    policy: str
    channel: str | None
    mirror: str | None


class PolicyService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.access = AccessService(session)
        self.channels = ChannelService(session)

    # -------------------------------------------------------------------------------- read

    def find(self, name: str) -> PolicyRow | None:
        return self.session.scalar(select(PolicyRow).where(PolicyRow.name == name))

    def get(self, principal: Principal, name: str) -> PolicyRow:
        self.access.require(principal, Permission.POLICY_READ)
        row = self.find(name)
        if row is None:
            raise PolicyNotFoundError(f"policy {name!r} not found")
        return row

    def list_all(self, principal: Principal) -> list[PolicyRow]:
        self.access.require(principal, Permission.POLICY_READ)
        return list(self.session.scalars(select(PolicyRow).order_by(PolicyRow.name)).all())

    def policy_of(self, row: PolicyRow) -> Policy:
        return parse_definition(row.name, row.definition)

    def assignments(
        self, principal: Principal, policy_ids: Sequence[int] | None = None
    ) -> list[AssignmentView]:
        """Where the policies are assigned, as far as ``principal`` may see: an assignment to a
        channel (or a mirror of a channel) the caller cannot read is left out, so listings never
        name hidden channels or mirrors."""
        query = (
            select(PolicyRow.name, PolicyAssignment.channel_id, PolicyAssignment.mirror_id)
            .join(PolicyRow, PolicyRow.id == PolicyAssignment.policy_id)
            .order_by(PolicyRow.name, PolicyAssignment.id)
        )
        if policy_ids is not None:
            query = query.where(PolicyAssignment.policy_id.in_(policy_ids))
        rows = self.session.execute(query).all()
        ids = [m for _, _, m in rows if m is not None]
        mirrors: dict[int, tuple[str, int]] = (
            {
                mid: (name, cid)
                for mid, name, cid in self.session.execute(
                    select(_MIRRORS.c.id, _MIRRORS.c.name, _MIRRORS.c.channel_id).where(
                        _MIRRORS.c.id.in_(ids)
                    )
                ).all()
            }
            if ids
            else {}
        )
        found: list[AssignmentView] = []
        for policy, channel_id, mirror_id in rows:
            if mirror_id is not None:
                mirror_name, feeds = mirrors.get(mirror_id, (None, None))
                channel = self._readable(principal, feeds, Permission.MIRROR_READ)
                if channel is not None and mirror_name is not None:
                    found.append(AssignmentView(policy, None, mirror_name))
                continue
            channel = self._readable(principal, channel_id, Permission.CHANNEL_READ)
            if channel is not None:
                found.append(AssignmentView(policy, channel.name, None))
        return found

    def _readable(
        self, principal: Principal, channel_id: int | None, permission: Permission
    ) -> Channel | None:
        channel = self.session.get(Channel, channel_id) if channel_id is not None else None
        if channel is None or not self.access.can(principal, permission, channel_ref(channel)):
            return None
        return channel

    def usage(self, policy_id: int) -> int:
        return int(
            self.session.scalar(select(func.count()).where(PolicyAssignment.policy_id == policy_id))
            or 0
        )

    def for_channel(self, channel_id: int) -> list[Policy]:
        return self._policies(PolicyAssignment.channel_id == channel_id)

    def for_mirror(self, mirror_id: int) -> list[Policy]:
        return self._policies(PolicyAssignment.mirror_id == mirror_id)

    def _policies(self, condition: Any) -> list[Policy]:
        rows = self.session.scalars(
            select(PolicyRow)
            .join(PolicyAssignment, PolicyAssignment.policy_id == PolicyRow.id)
            .where(condition)
            .order_by(PolicyRow.name)
        ).all()
        return [self.policy_of(r) for r in rows]

    # -------------------------------------------------------------------------------- write

    def create(
        self,
        principal: Principal,
        name: str,
        definition: Mapping[str, Any],
        *,
        description: str = "",
    ) -> PolicyRow:
        self.access.require(principal, Permission.POLICY_WRITE)
        name = _check_name(name)
        parse_new_definition(name, definition)
        if self.find(name) is not None:
            raise PolicyExistsError(f"policy {name!r} already exists", field="name")
        row = PolicyRow(
            name=name,
            description=description or "",
            definition=_clean_definition(definition),
            created_by_id=principal.user_id,
        )
        try:
            with self.session.begin_nested():  # a duplicate rolls back only the savepoint
                self.session.add(row)
                self.session.flush()
        except IntegrityError:
            raise PolicyExistsError(f"policy {name!r} already exists", field="name") from None
        AuditLog(self.session).record(
            "policy.create",
            principal,
            Target("policy", name, row.id),
            after={"definition": row.definition, "description": row.description},
        )
        return row

    def update(
        self,
        principal: Principal,
        name: str,
        *,
        definition: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> PolicyRow:
        self.access.require(principal, Permission.POLICY_WRITE)
        row = self.get(principal, name)
        before = {"definition": row.definition, "description": row.description}
        if definition is not None:
            parse_new_definition(row.name, definition)
            row.definition = _clean_definition(definition)
        if description is not None:
            row.description = description
        self.session.flush()
        AuditLog(self.session).record(
            "policy.update",
            principal,
            Target("policy", row.name, row.id),
            before=before,
            after={"definition": row.definition, "description": row.description},
        )
        return row

    def delete(self, principal: Principal, name: str) -> None:
        self.access.require(principal, Permission.POLICY_MANAGE)
        row = self.get(principal, name)
        AuditLog(self.session).record(
            "policy.delete",
            principal,
            Target("policy", row.name, row.id),
            before={"definition": row.definition, "assignments": self.usage(row.id)},
        )
        self.session.delete(row)
        self.session.flush()

    def assign(
        self,
        principal: Principal,
        name: str,
        *,
        channel: str | None = None,
        mirror: str | None = None,
    ) -> AssignmentView:
        row = self.get(principal, name)
        channel_id, mirror_id = self._target(principal, channel, mirror)
        exists = self.session.scalar(
            select(PolicyAssignment.id).where(
                PolicyAssignment.policy_id == row.id,
                PolicyAssignment.channel_id == channel_id
                if channel_id is not None
                else PolicyAssignment.mirror_id == mirror_id,
            )
        )
        if exists is None:
            # a policy stored before such criteria were refused is not spread to more mirrors
            refuse_unmet_criteria(row.definition)
            self.session.add(
                PolicyAssignment(
                    policy_id=row.id,
                    channel_id=channel_id,
                    mirror_id=mirror_id,
                    created_by_id=principal.user_id,
                )
            )
            self.session.flush()
            AuditLog(self.session).record(
                "policy.assign",
                principal,
                Target("policy", row.name, row.id),
                details={"channel": channel, "mirror": mirror},
            )
        return AssignmentView(
            row.name, channel if channel_id else None, mirror if mirror_id else None
        )

    def unassign(
        self,
        principal: Principal,
        name: str,
        *,
        channel: str | None = None,
        mirror: str | None = None,
    ) -> None:
        self.access.require(principal, Permission.POLICY_MANAGE)
        row = self.get(principal, name)
        channel_id, mirror_id = self._target(principal, channel, mirror)
        found = self.session.scalar(
            select(PolicyAssignment).where(
                PolicyAssignment.policy_id == row.id,
                PolicyAssignment.channel_id == channel_id
                if channel_id is not None
                else PolicyAssignment.mirror_id == mirror_id,
            )
        )
        if found is None:
            where = f"channel {channel!r}" if channel else f"mirror {mirror!r}"
            raise NotFoundError(
                f"policy {name!r} is not assigned to {where}", code="policy:not-assigned"
            )
        self.session.delete(found)
        self.session.flush()
        AuditLog(self.session).record(
            "policy.unassign",
            principal,
            Target("policy", row.name, row.id),
            details={"channel": channel, "mirror": mirror},
        )

    def _target(
        self, principal: Principal, channel: str | None, mirror: str | None
    ) -> tuple[int | None, int | None]:
        if (channel is None) == (mirror is None):
            raise InvalidInputError(
                "give either a channel or a mirror", code="policy:target", field="channel"
            )
        if channel is not None:
            found = self.channels.get(principal, channel, Permission.POLICY_MANAGE)
            return found.id, None
        found_mirror = self.session.execute(
            select(_MIRRORS.c.id, Channel.name)
            .join(Channel, Channel.id == _MIRRORS.c.channel_id)
            .where(_MIRRORS.c.name == mirror)
        ).first()
        hidden = NotFoundError(f"mirror {mirror!r} not found", code="mirror:not-found")
        if found_mirror is None:
            raise hidden
        mirror_id, channel_name = found_mirror
        try:
            self.channels.get(principal, channel_name, Permission.POLICY_MANAGE)
        except ChannelHiddenError:  # a hidden mirror looks like a missing one (no channel name)
            raise hidden from None
        return None, mirror_id
