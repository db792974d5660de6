"""Content trust (SPEC §8): the chain's state and new metadata (``/api/v1/signing``), and the
public trust files conda's content-trust plugin fetches (``/signing/N.root.json``,
``/signing/key_mgr.json``; also at every channel root under ``/conda/``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from stockade.channels.signing_admin import SigningAdmin, SigningStatus
from stockade.db.engine import transaction
from stockade.signing.chain import metadata_file, require_chain
from stockade.web.api import API
from stockade.web.api.channels import base_url
from stockade.web.api.schemas import Strict
from stockade.web.deps import ContainerDep, SignedIn
from stockade.web.errors import problem

router = APIRouter(prefix=API, tags=["signing"])
files_router = APIRouter(include_in_schema=False)
TrustFile = Annotated[str, Path(pattern=r"^([0-9]{1,9}\.root|key_mgr)\.json$")]


class SignedChannelPublic(BaseModel):
    name: str
    records: int
    signed: int = Field(description="records signed by the current pkg_mgr key so far")
    signing: bool = Field(description="a publication is signing it now, or is due")


class SigningStatusPublic(BaseModel):
    set_up: bool
    root_version: int
    key_mgr_version: int
    root_expires: datetime | None
    key_mgr_expires: datetime | None
    root_keys: list[str]
    key_mgr_keys: list[str]
    pkg_mgr_keys: list[str]
    signer: str = Field(description="what signs records on this server, or why nothing can")
    signer_ready: bool
    warnings: list[str]
    channels: list[SignedChannelPublic]
    metadata_url: str = Field(description="signing_metadata_url_base for conda's .condarc")


class MetadataUpload(Strict):
    roots: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=100,
        description="new root versions, in order (N+1 signed by N's keys and its own)",
    )
    key_mgr: dict[str, Any] | None = Field(
        default=None, description="a new key_mgr.json, signed as the newest root delegates"
    )


def _public(status: SigningStatus, base_url: str) -> SigningStatusPublic:
    return SigningStatusPublic(
        **{k: v for k, v in vars(status).items() if k != "channels"},
        channels=[SignedChannelPublic(**vars(c)) for c in status.channels],
        metadata_url=f"{base_url}/signing",
    )


@router.get("/signing", response_model=SigningStatusPublic)
def signing_status(
    request: Request, principal: SignedIn, container: ContainerDep
) -> SigningStatusPublic:
    """The chain (versions, keys, expiries), what signs records here, and the signed channels."""
    settings = container.settings
    with container.read_factory() as session:
        status = SigningAdmin(session, settings.signing, settings.data_dir).status(principal)
    return _public(status, base_url(request))


@router.post("/signing/metadata", response_model=SigningStatusPublic)
def install_metadata(
    body: MetadataUpload, request: Request, principal: SignedIn, container: ContainerDep
) -> SigningStatusPublic:
    """Accept trust metadata made by `stockade signing init|rotate` (it must chain)."""
    settings = container.settings
    with transaction(container.factory) as session:
        status = SigningAdmin(session, settings.signing, settings.data_dir).install(
            principal, body.roots, body.key_mgr
        )
    return _public(status, base_url(request))


@files_router.get("/signing/{name}")
def trust_file(name: TrustFile, container: ContainerDep) -> Response:
    """Public: conda fetches these without credentials (they hold public keys only)."""
    with container.read_factory() as session:
        body = metadata_file(session, name)
    if body is None:
        return problem(404, "Not found", f"{name} not found", code="signing:not-found")
    return Response(body, media_type="application/json", headers={"cache-control": "no-cache"})


class CurrentMetadata(BaseModel):
    root: dict[str, Any]
    key_mgr: dict[str, Any]


@router.get("/signing/metadata", response_model=CurrentMetadata)
def current_metadata(principal: SignedIn, container: ContainerDep) -> CurrentMetadata:
    """The newest root and the current key_mgr (public data; rotation starts from them)."""
    del principal  # any signed-in caller: the same files are public under /signing/
    with container.read_factory() as session:
        chain = require_chain(session)
    return CurrentMetadata(root=chain.root, key_mgr=chain.key_mgr)
