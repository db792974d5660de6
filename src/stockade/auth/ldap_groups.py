"""Which directory groups an LDAP user is in, nested groups included (for ``auth/ldap.py``).

Two layouts: groups list their members (``group-member``: OpenLDAP ``groupOfNames``, the
``member`` attribute), or entries list their groups (``memberOf``: Active Directory, OpenLDAP's
memberof overlay). Two ways to ask: :class:`LiveGroups` queries the directory for one user (a
sign-in); :class:`GroupIndex` reads every group once (a sync). :func:`resolve_groups` walks either
one, following groups of groups when asked, and stops on cycles.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stockade.auth.identity import ExternalGroup
from stockade.settings import LdapSettings

with warnings.catch_warnings():
    # ldap3 2.9.1 imports pyasn1's ``tagMap``/``typeMap``, deprecated since pyasn1 0.5
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ldap3")
    import ldap3  # type: ignore[import-untyped]  # ldap3 ships no type information
    from ldap3.core.exceptions import LDAPInvalidDnError  # type: ignore[import-untyped]  # as above
    from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]  # as above
    from ldap3.utils.dn import parse_dn  # type: ignore[import-untyped]  # as above

Attributes = Mapping[str, Any]


class Search(Protocol):
    """A bound connection's search: entries (DN, attributes) under ``base``, every page."""

    def __call__(
        self, base: str, search_filter: str, attributes: Sequence[str], *, scope: str = ...
    ) -> Iterator[tuple[str, Attributes]]: ...


def ldap_filter(value: str) -> str:
    """Settings may omit the outer parentheses of a filter."""
    value = value.strip()
    return value if value.startswith("(") else f"({value})"


def normalize_dn(dn: str) -> str:
    """A comparable form of a DN (case and spacing ignored)."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPInvalidDnError:
        return dn.strip().lower()
    return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _ in parts)


def is_under(dn: str, base: str) -> bool:
    if not base:
        return True
    dn, base = normalize_dn(dn), normalize_dn(base)
    return dn == base or dn.endswith("," + base)


def all_values(attributes: Attributes, name: str) -> list[str]:
    value = attributes.get(name)
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)] if value != "" else []


def first_value(attributes: Attributes, name: str) -> str | None:
    values = all_values(attributes, name)
    return values[0] if values else None


class GroupLookup(Protocol):
    """Where a user's groups and a group's parent groups come from."""

    def direct(self, user_dn: str, attributes: Attributes) -> list[str]: ...
    def group(self, dn: str) -> ExternalGroup | None: ...
    def parents(self, group_dn: str) -> list[str]: ...


def resolve_groups(
    lookup: GroupLookup, user_dn: str, attributes: Attributes, *, nested: bool
) -> tuple[ExternalGroup, ...]:
    """The user's groups, and with ``nested`` the groups of those groups (cycles are fine)."""
    found: dict[str, ExternalGroup] = {}
    seen: set[str] = set()
    pending = list(lookup.direct(user_dn, attributes))
    while pending:
        dn = pending.pop()
        key = normalize_dn(dn)
        if key in seen:
            continue
        seen.add(key)
        group = lookup.group(dn)
        if group is None:
            continue  # not a group Stockade imports (outside group_base, or not group_filter)
        found[normalize_dn(group.external_id)] = group
        if nested:
            pending.extend(lookup.parents(dn))
    return tuple(sorted(found.values(), key=lambda g: (g.name, g.external_id)))


class LiveGroups:
    """One user's groups, asked of the directory (a sign-in): a few small searches."""

    def __init__(self, settings: LdapSettings, search: Search) -> None:
        self.settings = settings
        self.search = search
        self._groups: dict[str, ExternalGroup | None] = {}
        self._parents: dict[str, list[str]] = {}

    @property
    def by_member(self) -> bool:
        return self.settings.membership != "memberOf"

    def direct(self, user_dn: str, attributes: Attributes) -> list[str]:
        if self.by_member:
            return self._containing(user_dn)
        return all_values(attributes, "memberOf")

    def _containing(self, dn: str) -> list[str]:
        """Groups whose member attribute names ``dn``."""
        s = self.settings
        member = f"({s.group_member_attribute}={escape_filter_chars(dn)})"
        found = []
        for group_dn, attributes in self.search(
            s.group_base, f"(&{ldap_filter(s.group_filter)}{member})", [s.group_name_attribute]
        ):
            self._remember(group_dn, attributes)
            found.append(group_dn)
        return found

    def _remember(self, dn: str, attributes: Attributes) -> ExternalGroup | None:
        name = first_value(attributes, self.settings.group_name_attribute)
        group = ExternalGroup(dn, name) if name else None
        self._groups[normalize_dn(dn)] = group
        self._parents[normalize_dn(dn)] = all_values(attributes, "memberOf")
        return group

    def group(self, dn: str) -> ExternalGroup | None:
        key = normalize_dn(dn)
        if key in self._groups:
            return self._groups[key]
        s = self.settings
        if not is_under(dn, s.group_base):
            return None
        wanted = [s.group_name_attribute, "memberOf"]
        for found_dn, attributes in self.search(
            dn, ldap_filter(s.group_filter), wanted, scope=ldap3.BASE
        ):
            return self._remember(found_dn, attributes)
        self._groups[key] = None
        return None

    def parents(self, group_dn: str) -> list[str]:
        if self.by_member:
            return self._containing(group_dn)
        return self._parents.get(normalize_dn(group_dn), [])


@dataclass
class GroupIndex:
    """Every group under ``group_base``, read once (a sync): no search per user."""

    by_member: bool
    groups: dict[str, ExternalGroup]
    parents_of: dict[str, list[str]]  # normalized DN of a member -> DNs of its groups

    @classmethod
    def load(cls, settings: LdapSettings, search: Search) -> GroupIndex:
        by_member = settings.membership != "memberOf"
        link = settings.group_member_attribute if by_member else "memberOf"
        groups: dict[str, ExternalGroup] = {}
        parents: dict[str, list[str]] = defaultdict(list)
        wanted = [settings.group_name_attribute, link]
        for dn, attributes in search(
            settings.group_base, ldap_filter(settings.group_filter), wanted
        ):
            name = first_value(attributes, settings.group_name_attribute)
            if name:
                groups[normalize_dn(dn)] = ExternalGroup(dn, name)
            for value in all_values(attributes, link):
                if by_member:
                    parents[normalize_dn(value)].append(dn)
                else:
                    parents[normalize_dn(dn)].append(value)
        return cls(by_member, groups, dict(parents))

    def direct(self, user_dn: str, attributes: Attributes) -> list[str]:
        if self.by_member:
            return self.parents(user_dn)
        return all_values(attributes, "memberOf")

    def group(self, dn: str) -> ExternalGroup | None:
        return self.groups.get(normalize_dn(dn))

    def parents(self, group_dn: str) -> list[str]:
        return self.parents_of.get(normalize_dn(group_dn), [])
