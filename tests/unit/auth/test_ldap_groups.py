"""Group resolution for LDAP users, on an in-memory directory (no slapd)."""

from __future__ import annotations

import pytest

from stockade.auth.identity import ExternalGroup
from stockade.auth.ldap_groups import (
    Attributes,
    all_values,
    first_value,
    is_under,
    ldap_filter,
    normalize_dn,
    resolve_groups,
)

BASE = "ou=groups,dc=ex"


class FakeLookup:
    """Groups by name; ``parents`` maps a name to the names of the groups containing it."""

    def __init__(self, direct: list[str], parents: dict[str, list[str]]) -> None:
        self._direct = direct
        self._parents = parents

    def direct(self, user_dn: str, attributes: Attributes) -> list[str]:
        return [f"cn={n},{BASE}" for n in self._direct]

    def group(self, dn: str) -> ExternalGroup | None:
        name = dn.split(",", maxsplit=1)[0].split("=")[1]
        return None if name.startswith("ignored") else ExternalGroup(dn, name)

    def parents(self, group_dn: str) -> list[str]:
        name = group_dn.split(",", maxsplit=1)[0].split("=")[1]
        return [f"CN={n}, OU=Groups,DC=ex" for n in self._parents.get(name, [])]


def names(lookup: FakeLookup, *, nested: bool = True) -> list[str]:
    return [g.name for g in resolve_groups(lookup, "uid=u", {}, nested=nested)]


def test_nested_groups_are_followed_through_cycles() -> None:
    lookup = FakeLookup(["a"], {"a": ["b"], "b": ["c", "a"], "c": ["a"]})
    assert names(lookup) == ["a", "b", "c"]
    assert names(lookup, nested=False) == ["a"]


def test_groups_not_imported_are_skipped_and_not_followed() -> None:
    lookup = FakeLookup(["ignored-x", "a"], {"ignored-x": ["b"]})
    assert names(lookup) == ["a"]


def test_normalize_dn_ignores_case_and_spaces() -> None:
    assert normalize_dn("CN=Dev Team , OU=Groups,DC=Ex") == "cn=dev team,ou=groups,dc=ex"
    assert normalize_dn("not a dn") == "not a dn"


@pytest.mark.parametrize(
    ("dn", "base", "under"),
    [
        ("cn=a,ou=groups,dc=ex", "ou=groups,dc=ex", True),
        ("cn=a,OU=Groups,dc=ex", "ou=groups, dc=ex", True),
        ("ou=groups,dc=ex", "ou=groups,dc=ex", True),
        ("cn=a,ou=othergroups,dc=ex", "ou=groups,dc=ex", False),
        ("cn=a,ou=x,dc=ex", "", True),
    ],
)
def test_is_under(dn: str, base: str, under: bool) -> None:
    assert is_under(dn, base) is under


def test_filters_and_attribute_values() -> None:
    assert ldap_filter("objectClass=person") == "(objectClass=person)"
    assert ldap_filter(" (uid=*) ") == "(uid=*)"
    attributes = {"mail": ["a@x", "b@x"], "cn": "Ann", "empty": [], "blank": ""}
    assert first_value(attributes, "mail") == "a@x"
    assert first_value(attributes, "cn") == "Ann"
    assert first_value(attributes, "empty") is None and first_value(attributes, "blank") is None
    assert all_values(attributes, "missing") == []
