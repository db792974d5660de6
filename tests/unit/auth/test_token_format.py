"""Tokens in every URL form a conda client parses (issue 11, item 5).

conda finds a token in a channel URL with this function (conda/common/url.py, conda 4.x to 26.9),
reproduced here as it is::

    def split_anaconda_token(url):
        _token_match = re.search(r"/t/([a-zA-Z0-9-]*)", url)
        token = _token_match.groups()[0] if _token_match else None
        cleaned_url = url.replace("/t/" + token, "", 1) if token is not None else url
        return cleaned_url.rstrip("/"), token

A ``_`` in a token stops the match: conda then keeps the rest of the token in the URL and
crashes parsing it ("Port could not be cast to integer value").
"""

from __future__ import annotations

import re

import pytest

from stockade.auth.secrets import (
    LEGACY_TOKEN_PREFIX,
    TOKEN_PREFIX,
    hash_secret,
    looks_like_token,
    new_token,
)
from stockade.cli.account import CONDA_URL_TOKEN
from stockade.core.logging import scrub
from stockade.web.ui.signin import safe_next


def split_anaconda_token(url: str) -> tuple[str, str | None]:
    """conda's own, verbatim (conda/common/url.py)."""
    _token_match = re.search(r"/t/([a-zA-Z0-9-]*)", url)
    token = _token_match.groups()[0] if _token_match else None
    cleaned_url = url.replace("/t/" + token, "", 1) if token is not None else url
    return cleaned_url.rstrip("/"), token


TOKENS = [new_token() for _ in range(200)]
HOST = "https://stockade.example.org:8443"


def test_new_tokens_are_stk_dash_and_256_bits_of_letters_and_digits() -> None:
    for token in TOKENS:
        assert token.startswith(TOKEN_PREFIX) and TOKEN_PREFIX == "stk-"
        body = token[len(TOKEN_PREFIX) :]
        assert len(body) == 43 and re.fullmatch(r"[A-Za-z0-9]+", body)  # 43 * log2(62) > 256
        assert looks_like_token(token)
    assert len(set(TOKENS)) == len(TOKENS)


@pytest.mark.parametrize(
    "form",
    [
        "{host}/t/{token}/conda/team/noarch/repodata.json",  # channel_alias HOST/t/TOKEN/conda
        "{host}/t/{token}/conda/team/sub/linux-64/pkg-1-0.conda",
        "{host}/conda/t/{token}/team/noarch/repodata.json",  # /conda/t/TOKEN/CHANNEL
        "{host}/t/{token}/conda",  # the channel_alias as conda-config writes it
    ],
)
def test_conda_reads_every_url_form_back_to_the_whole_token(form: str) -> None:
    for token in TOKENS:
        url = form.format(host=HOST, token=token)
        cleaned, found = split_anaconda_token(url)
        assert found == token
        assert token not in cleaned and cleaned.startswith(HOST)
        assert ":8443/" in cleaned + "/"  # the port stays a port


def test_the_old_stk_underscore_form_is_what_conda_cut() -> None:
    """Why the alphabet changed: conda keeps only ``stk`` and leaves the rest in the URL."""
    legacy = LEGACY_TOKEN_PREFIX + "abcDEF123_-xyz" + "q" * 30
    cleaned, found = split_anaconda_token(f"{HOST}/t/{legacy}/conda/team")
    assert found == "stk" and "_abcDEF" in cleaned
    assert looks_like_token(legacy)  # still accepted by the server, by hash as before
    assert hash_secret(legacy) != hash_secret(legacy.replace("_", "-", 1))


def test_conda_config_accepts_exactly_the_tokens_conda_can_read() -> None:
    assert all(CONDA_URL_TOKEN.fullmatch(t) for t in TOKENS)
    assert not CONDA_URL_TOKEN.fullmatch("stk_" + "a" * 43)
    assert not CONDA_URL_TOKEN.fullmatch("stk-abc_def")


@pytest.mark.parametrize("prefix", ["stk-", "stk_"])
def test_both_forms_are_scrubbed_and_never_carried_through_sign_in(prefix: str) -> None:
    token = prefix + "A1b2C3d4E5f6G7h8" * 2
    assert token not in scrub(f"GET /t/{token}/conda/x token={token}")
    assert token not in scrub(f"Authorization: Bearer {token}")
    assert safe_next(f"/channels/x?k={token}") == "/"
    assert safe_next("/channels/x") == "/channels/x"


def test_things_that_are_not_tokens() -> None:
    for value in ("stk-short", "admin", "stkA" + "a" * 43, "xstk-" + "a" * 43, "stk-" + "a" * 200):
        assert not looks_like_token(value)
