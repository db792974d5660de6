"""Errors of search: a filter or query the index cannot answer (HTTP 422, CLI exit 2)."""

from __future__ import annotations

from stockade.core.errors import InvalidInputError


class SearchFilterError(InvalidInputError):
    code = "search:bad-filter"
    title = "Bad search filter"


class SearchQueryError(InvalidInputError):
    code = "search:bad-query"
    title = "Bad search query"
