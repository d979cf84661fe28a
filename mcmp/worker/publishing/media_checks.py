"""What a media URL really is, learned before publishing (the rules live in mcmp.connectors.media).

:func:`probe` is one ``HEAD`` with a short timeout, so a URL with no Asset still gets a kind, a
MIME type and a size before publishing. Unknown facts (a probe that failed, a size the server
did not send) never refuse a post: the platform decides then. Messages never show a URL's query
string (signed storage URLs carry credentials there).

The probe goes through :class:`mcmp.connectors.tenant_fetch.TenantFetcher` like every fetch of a
tenant URL: a URL inside our network is never contacted (the refusal is counted and the facts stay
unknown here; a connector that needs the bytes fails that delivery with the reason, while a
platform that fetches the URL itself is unaffected).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from mcmp.config import get_settings
from mcmp.connectors.errors import ConnectorError, ValidationError
from mcmp.connectors.media import display_url
from mcmp.connectors.tenant_fetch import TenantFetcher

PROBE_TIMEOUT = (1.0, 2.0, 3.0)  # (connect, read, total) seconds: a probe must not make posts late
PROBE_CACHE_SECONDS = 60.0  # one probe per URL for all platforms of a post, per process


@dataclass(frozen=True)
class Probe:
    """What a ``HEAD`` said about a URL; ``None`` fields were not learned."""

    status: int | None = None
    mime_type: str | None = None
    size_bytes: int | None = None


_cache: dict[str, tuple[float, Probe]] = {}
_cache_lock = threading.Lock()


def media_fetcher(**overrides: float) -> TenantFetcher:
    """The guarded fetcher for the worker's own reads of tenant media (probes, video headers).

    ``overrides`` (``total_timeout=…``) fit a read inside its caller's deadline.
    """
    return TenantFetcher.from_settings(get_settings(), **overrides)


def probe(url: str, timeout: tuple[float, float, float] = PROBE_TIMEOUT) -> Probe:
    """``HEAD`` the URL (redirects followed). Raises ``ValidationError`` only for 404/410."""
    with _cache_lock:
        hit = _cache.get(url)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    if urlsplit(url).scheme not in ("http", "https"):
        return Probe()
    try:
        head = media_fetcher().head(url, what="assetUrls", timeout=timeout)
    except ConnectorError:
        result = Probe()  # refused, or unreachable from here: not proof the platform cannot fetch it
    else:
        if head.status_code in (404, 410):
            raise ValidationError(
                "assetUrls", f"{display_url(url)} answered {head.status_code} (media not found)"
            )
        ok = head.status_code < 400
        result = Probe(head.status_code, head.content_type, head.size) if ok else Probe(head.status_code)
    with _cache_lock:
        if len(_cache) > 1024:
            _cache.clear()
        _cache[url] = (time.monotonic() + PROBE_CACHE_SECONDS, result)
    return result


def clear_probe_cache() -> None:
    with _cache_lock:
        _cache.clear()


__all__ = ["Probe", "clear_probe_cache", "media_fetcher", "probe"]
