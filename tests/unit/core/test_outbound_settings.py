"""``[outbound]`` settings, and URL checks of settings decided on the normalized scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade.core.errors import ConfigurationError
from stockade.settings import load_settings


def test_the_default_policy_is_strict(tmp_path: Path) -> None:
    policy = load_settings(data_dir=tmp_path).outbound.policy()
    assert policy.refused("127.0.0.1") and policy.refused("10.0.0.1")
    assert policy.refused("169.254.169.254") and policy.proxy is None


def test_admin_allowances_reach_the_policy(tmp_path: Path) -> None:
    outbound = {
        "allow_private": True,
        "allowed_hosts": ["Artifactory.Corp", "169.254.10.0/24"],
        "proxy": "HTTP://proxy.corp:3128",
    }
    policy = load_settings(data_dir=tmp_path, outbound=outbound).outbound.policy()
    assert policy.refused("10.0.0.1") is None and policy.refused("127.0.0.1")
    assert policy.host_allowed("artifactory.corp") and policy.refused("169.254.10.7") is None
    assert policy.proxy == "HTTP://proxy.corp:3128"


def test_a_proxy_setting_is_http(tmp_path: Path) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        load_settings(data_dir=tmp_path, outbound={"proxy": "socks5://p:1080"})


@pytest.mark.parametrize("url", ["https://stockade.example", "HTTPS://Stockade.Example"])
def test_an_https_public_url_in_any_spelling_makes_cookies_secure(tmp_path: Path, url: str) -> None:
    assert load_settings(data_dir=tmp_path, public_url=url).auth.secure_cookies is True
