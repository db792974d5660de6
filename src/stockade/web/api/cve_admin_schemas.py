"""REST schemas of CVE data administration: imports, the name map."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from stockade.web.api.schemas import Strict


class CveImportResult(BaseModel):
    format: str = Field(description="bundle, osv, nvd or cve5")
    added: int = Field(description="advisories new to this Stockade")
    updated: int = Field(description="advisories stored again because they changed")
    unchanged: int
    withdrawn: int
    files: int = Field(description="files read from the zip")
    enrichment: int = Field(description="KEV/EPSS rows of the bundle")
    name_map: int = Field(description="name-map entries added")
    curations: int = Field(default=0, description="curation decisions added (cve.zip)")
    matches_added: int
    matches_removed: int
    matches_restatused: int


class NameMapEntryCreate(Strict):
    conda_name: str = Field(min_length=1, max_length=256, examples=["pytorch"])
    identifier: str = Field(
        min_length=1,
        max_length=512,
        description="a purl (pkg:pypi/torch) or a CPE vendor:product (python:requests)",
        examples=["pkg:pypi/torch", "python:requests"],
    )
    note: str = Field(default="", max_length=1000)


class NameMapEntryPublic(BaseModel):
    id: int
    conda_name: str
    identifier: str
    origin: str = Field(description="shipped, metadata or admin")
    suppressed: bool = Field(description="an admin entry taking this identifier away")
    note: str
    created_at: datetime
    href: str


class NameMapChange(BaseModel):
    entry: NameMapEntryPublic | None = Field(description="the entry added, or the suppression")
    removed: bool = Field(description="an admin entry was deleted")
    matches_added: int
    matches_removed: int


class NameMapImportResult(BaseModel):
    rows: int
    added: int
    already_there: int
    matches_added: int
    matches_removed: int
