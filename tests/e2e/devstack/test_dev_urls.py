"""In dev and in tests, every URL the worker may call is on loopback (a simulator, or nothing):
no call, and no refresh token, ever leaves for a real platform."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel, SecretStr

from mcmp.config import Settings
from tests import ROOT

PRINT_URLS = """
import json
from tests.e2e.devstack.test_dev_urls import configured_urls
from mcmp.config import Settings
print(json.dumps(dict(configured_urls(Settings()))))
"""


def configured_urls(value: Any, path: str = "settings") -> Iterator[tuple[str, str]]:
    """Every setting holding a URL (``scheme://``), at any depth, with its dotted name."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from configured_urls(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, SecretStr):
        yield from configured_urls(value.get_secret_value(), path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from configured_urls(item, f"{path}[{index}]")
    elif isinstance(value, str) and "://" in value:
        yield path, value


def is_loopback(url: str) -> bool:
    host = urlsplit(url.split(",")[0]).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def leaving_loopback(env: dict[str, str]) -> dict[str, str]:
    """The URLs a process started with ``env`` would call that are not on loopback."""
    done = subprocess.run(
        [sys.executable, "-c", PRINT_URLS], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    urls: dict[str, str] = json.loads(done.stdout)
    assert any(name.endswith("linkedin.token_url") for name in urls)  # the walk sees nested URLs
    return {name: url for name, url in urls.items() if not is_loopback(url)}


def test_the_walk_finds_the_real_platforms_in_default_settings() -> None:
    defaults = dict(configured_urls(Settings.model_construct()))
    assert defaults["settings.linkedin.token_url"] == "https://www.linkedin.com/oauth/v2/accessToken"
    assert not is_loopback(defaults["settings.google_business.token_url"])
    assert (
        is_loopback("http://127.0.0.1:9/x")
        and is_loopback("http://[::1]:9")
        and not is_loopback("http://10.0.0.1")
    )


def test_no_url_of_the_test_environment_leaves_loopback(env: dict[str, str]) -> None:
    assert leaving_loopback(env) == {}


@pytest.mark.platforms("linkedin", "google-business", "facebook", "instagram")
def test_the_platform_lab_aims_every_url_and_token_endpoint_at_its_simulators(platform_lab: Any) -> None:
    assert leaving_loopback(platform_lab.env) == {}
    settings_env = platform_lab.env
    assert (
        settings_env["MCMP_LINKEDIN__TOKEN_URL"]
        == platform_lab.sims["linkedin"].base_url + "/oauth/v2/accessToken"
    )
    assert (
        settings_env["MCMP_GOOGLE_BUSINESS__TOKEN_URL"]
        == platform_lab.sims["google-business"].base_url + "/token"
    )
    assert settings_env["MCMP_FACEBOOK__VIDEO_BASE_URL"] == platform_lab.sims["facebook"].base_url
