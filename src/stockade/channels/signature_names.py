"""The names of the signature states (``signature_state``), with no database layer: the CLI
offers them as choices and must answer ``--help`` without loading SQLAlchemy."""

from __future__ import annotations

from enum import StrEnum


class SignatureState(StrEnum):
    SIGNED = "signed"
    UPSTREAM_VERIFIED = "upstream-verified"
    UPSTREAM_UNVERIFIED = "upstream-unverified"
    UPSTREAM_INVALID = "upstream-invalid"
    UPSTREAM_DROPPED = "upstream-dropped"
    UNSIGNED = "unsigned"
