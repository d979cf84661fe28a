"""Why a tenant URL is refused, and how refusals are reported (the error and the observer)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

import httpx

from mcmp.connectors.errors import ValidationError

log = logging.getLogger(__name__)
MB = 1024 * 1024


class Rule(StrEnum):
    """Why a tenant URL was refused (the ``rule`` label of the refusal counter)."""

    INVALID = "invalid_url"
    SCHEME = "scheme"
    CREDENTIALS = "credentials"
    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link_local"
    SHARED = "shared"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    UNIQUE_LOCAL = "unique_local"
    REDIRECTS = "redirects"
    TOO_LARGE = "too_large"
    MEDIA_TYPE = "media_type"


class FetchRefused(ValidationError):
    """A tenant URL the worker will not fetch; permanent, ``rule`` says which check refused it."""

    def __init__(self, what: str, reason: str, rule: Rule) -> None:
        super().__init__(what, reason)
        self.rule = rule


_observer: Callable[[Rule], None] | None = None


def set_refusal_observer(observer: Callable[[Rule], None] | None) -> None:
    """Called with the rule of every refusal (the worker counts them; connectors know no metrics)."""
    global _observer
    _observer = observer


def refused(what: str, reason: str, rule: Rule, internal: str | None = None) -> FetchRefused:
    """The error for ``what`` (also logged and told to the observer).

    ``reason`` reaches the tenant (``lastError``); ``internal`` (the address a host resolved
    to) is written to the operator's log only.
    """
    if internal:
        log.warning("refused a tenant URL (%s): %s: %s (%s)", rule.value, what, reason, internal)
    else:
        log.warning("refused a tenant URL (%s): %s: %s", rule.value, what, reason)
    if _observer is not None:
        try:
            _observer(rule)
        except Exception:  # metrics must never change what a fetch does
            log.exception("refusal observer failed")
    return FetchRefused(what, reason, rule)


def show(url: httpx.URL | str) -> str:
    """The URL without credentials, query or fragment (signed URLs carry secrets there)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "an unreadable URL"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def size_text(count: int) -> str:
    return f"{count / MB:.1f} MB" if count >= MB else f"{count:,} bytes"
