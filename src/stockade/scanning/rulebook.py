"""Admins' own YARA rules, kept in the database so every replica scans with the same set.

A rule set is compiled before it is stored (a rule that does not compile, or lacks its verdict,
is refused with the line), and every change makes the scanners' fingerprint change, which queues a
rescan of every artifact (:mod:`stockade.scanning.rescans`).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError
from stockade.db.unit_of_work import changed
from stockade.scanning.models import ScanRule
from stockade.scanning.recording import ScanEvent
from stockade.scanning.scanners.yara import validate_rules

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_SOURCE = 1024 * 1024


class RuleNotFoundError(NotFoundError):
    code = "scan-rule:not-found"


class RuleExistsError(ConflictError):
    code = "scan-rule:exists"


class InvalidRuleError(InvalidInputError):
    code = "scan-rule:invalid"


class RuleBook:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.access = AccessService(session)

    def list(self, principal: Principal) -> list[ScanRule]:
        self.access.require(principal, Permission.SECURITY_READ)
        return list(self.session.scalars(select(ScanRule).order_by(ScanRule.name)).all())

    def add(self, principal: Principal, name: str, source: str) -> ScanRule:
        self.access.require(principal, Permission.SECURITY_MANAGE)
        if not NAME_RE.match(name or ""):
            raise InvalidRuleError(
                "a rule set's name is letters, digits, '.', '_' or '-' (at most 128)",
                field="name",
            )
        if len(source.encode()) > MAX_SOURCE:
            raise InvalidRuleError(f"the rules are larger than {MAX_SOURCE} bytes", field="source")
        error = validate_rules(source, origin=f"rule {name}")
        if error is not None:
            raise InvalidRuleError(str(error), field="source")
        if self.session.scalar(select(ScanRule.id).where(ScanRule.name == name)) is not None:
            raise RuleExistsError(f"a rule set named {name!r} exists", field="name")
        rule = ScanRule(name=name, source=source, enabled=True, created_by_id=principal.user_id)
        self.session.add(rule)
        self.session.flush()
        changed(self.session)  # scanners rebuilt, outdated verdicts queued
        AuditLog(self.session).record(
            ScanEvent.RULE_ADD, principal, Target("scan-rule", name, rule.id)
        )
        return rule

    def remove(self, principal: Principal, name: str) -> None:
        self.access.require(principal, Permission.SECURITY_MANAGE)
        rule = self.session.scalar(select(ScanRule).where(ScanRule.name == name))
        if rule is None:
            raise RuleNotFoundError(f"no rule set named {name!r}")
        AuditLog(self.session).record(
            ScanEvent.RULE_REMOVE, principal, Target("scan-rule", name, rule.id)
        )
        self.session.delete(rule)
        self.session.flush()
        changed(self.session)
