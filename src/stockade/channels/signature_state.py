"""The signature state shown to users (SPEC §8, §10): package pages, the API, the CLI.

One state per file, from what a conda client with content trust would find in its record:

- ``signed``: the channel signs (``channels.sign``) and the file is servable, so its record is
  served with this server's pkg_mgr signature (``channels/publication_signing.py``);
- ``upstream-verified`` / ``upstream-unverified`` / ``upstream-invalid`` / ``upstream-dropped``:
  a mirrored record's upstream signature, as the mirror judged it (``artifacts.signature_status``,
  set by ``signing/upstream.py``);
- ``unsigned``: neither.

A record can be both signed here and carry a verified upstream signature (both are served side by
side): the state is then ``signed`` and :attr:`SignatureInfo.upstream_status` keeps the upstream
verdict, with its detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, and_, false, not_, or_

from stockade.channels.models import Artifact
from stockade.channels.signature_names import SignatureState

#: ``artifacts.signature_status`` -> the state it gives a file this server does not sign.
UPSTREAM_STATES: Final = {
    "verified": SignatureState.UPSTREAM_VERIFIED,
    "unverified": SignatureState.UPSTREAM_UNVERIFIED,
    "invalid": SignatureState.UPSTREAM_INVALID,
    "dropped": SignatureState.UPSTREAM_DROPPED,
}

EXPLANATIONS: Final = {
    SignatureState.SIGNED: "signed by this server: conda with content trust checks it against "
    "this server's root",
    SignatureState.UPSTREAM_VERIFIED: "the upstream channel's signature, verified by the mirror "
    "against the trusted upstream root; served as upstream signed it",
    SignatureState.UPSTREAM_UNVERIFIED: "the upstream channel's signature is served as given, "
    "but the mirror could not check it (no trusted root, or no key_mgr.json)",
    SignatureState.UPSTREAM_INVALID: "the upstream signature did not verify: it is not served",
    SignatureState.UPSTREAM_DROPPED: "the record was changed on its way in (a patch or a policy), "
    "so the upstream signature no longer covers it and is not served",
    SignatureState.UNSIGNED: "no signature: conda's content-trust checks have nothing to verify",
}


@dataclass(frozen=True)
class SignatureInfo:
    state: SignatureState
    upstream_status: str | None  # artifacts.signature_status, whatever the state
    detail: str | None  # why (the upstream check's detail), when known

    @property
    def explanation(self) -> str:
        return EXPLANATIONS[self.state]


def signature_info(artifact: Artifact, channel_signs: bool) -> SignatureInfo:
    """The state of one file of a channel that signs (``channel_signs``) or not."""
    upstream = artifact.signature_status or None
    if channel_signs and artifact.servable:
        state = SignatureState.SIGNED
    else:
        state = UPSTREAM_STATES.get(upstream or "", SignatureState.UNSIGNED)
    return SignatureInfo(state, upstream, artifact.signature_detail or None)


def signed_clause(signing_channel_ids: list[int]) -> ColumnElement[bool]:
    """Artifacts whose record carries a signature a client can check: in a channel this server
    signs (callers add the ``servable`` rule they already ask), or upstream-verified."""
    return or_(
        Artifact.channel_id.in_(signing_channel_ids),
        Artifact.signature_status == "verified",
    )


def signature_clause(channel_signs: bool, state: SignatureState) -> ColumnElement[bool]:
    """:func:`signature_info`'s state as SQL over ``artifacts`` of one channel (list filters)."""
    signed_here: ColumnElement[bool] = Artifact.servable.is_(True) if channel_signs else false()
    if state is SignatureState.SIGNED:
        return signed_here
    if state is SignatureState.UNSIGNED:
        known = Artifact.signature_status.in_(list(UPSTREAM_STATES))
        return and_(not_(signed_here), or_(Artifact.signature_status.is_(None), not_(known)))
    status = next(k for k, v in UPSTREAM_STATES.items() if v is state)
    return and_(not_(signed_here), Artifact.signature_status == status)
