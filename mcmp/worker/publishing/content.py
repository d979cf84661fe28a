"""Builds the platform-neutral ``PostContent`` a connector receives from a stored post.

* **Media**: the number of items is checked against the platform's maximum before anything is
  fetched; then the URLs are checked concurrently inside one deadline (the preflight's). Each ``assetUrls`` entry matching an Asset of the same client takes that Asset's
  ``type`` (which media flow the connector uses) and ``altText``; every http(s) URL is probed
  (one short ``HEAD``, cached briefly) for its MIME type and size, and a URL with no Asset takes
  its kind from that probe (or its extension). A video's duration and displayed size come from
  its MP4 header (the first bytes only, cached briefly; ``mcmp.connectors.media_source``).
  Media the platform would refuse (wrong kind or type, too large or small, too long or short, a
  wrong aspect ratio, too many) fails *this platform only*, before any platform call: limits
  come from the connector's ``media_limits`` or, failing that, ``mcmp.connectors.media.REFERENCE_LIMITS``.
* **Call to action** (convention for the frontend): a post field
  ``cta: {"template": "<ctaTemplates label>", "actionType": "LEARN_MORE", "url": "https://…",
  "appendText": true}``. The named template of the post's client supplies the CTA copy, appended
  to the body on every platform unless ``appendText`` is false or the body already has it; on
  google-business the post also gets ``options["callToAction"] = {actionType, url}`` (action
  defaults to LEARN_MORE; without ``url`` the connector falls back to the post's ``link``).
  ``publishOptions["google-business"].callToAction`` set explicitly wins.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from bson import ObjectId

from mcmp.connectors.errors import ValidationError
from mcmp.connectors.media import REFERENCE_LIMITS, MediaLimits, check_media, kind_from_mime
from mcmp.connectors.media_source import video_facts
from mcmp.connectors.registry import get_connector
from mcmp.connectors.types import MediaItem, PostContent
from mcmp.errors import PublisherError
from mcmp.models import Asset
from mcmp.models.client import CtaTemplateDoc, clients
from mcmp.worker.publishing.media_checks import PROBE_TIMEOUT, media_fetcher, probe

CTA_PLATFORM = "google-business"
DEFAULT_CTA_ACTION = "LEARN_MORE"

_EXTENSION_KINDS = {
    "image": (".jpg", ".jpeg", ".png", ".gif", ".webp"),
    "video": (".mp4", ".mov", ".m4v", ".webm"),
}


def _guess_kind(url: str) -> str | None:
    path = url.split("?", 1)[0].lower()
    for kind, extensions in _EXTENSION_KINDS.items():
        if path.endswith(extensions):
            return kind
    return None


class MediaChecksUnfinished(PublisherError):  # noqa: N818 - a state, not a failure of the post
    """Media checks were still running at the caller's ``move_at`` (see :func:`media_for`)."""


def media_for(
    client_id: str,
    urls: list[str],
    probe_urls: bool = True,
    *,
    deadline: float | None = None,
    move_at: float | None = None,
) -> tuple[MediaItem, ...]:
    """Media items for a post's ``assetUrls``, enriched from the client's Asset library and a probe.

    The URLs are checked concurrently, all inside ``deadline`` (``time.monotonic()``; each fetch,
    DNS included, gets only what is left of it): a check still running then counts as unknown
    facts, which never refuse a post. With ``move_at`` earlier than the deadline (a fast lane's
    share of it), checks still running at ``move_at`` raise :class:`MediaChecksUnfinished`
    instead, so the caller can finish them where slow work belongs.
    """
    if not urls:
        return ()
    assets = {a.url: a for a in Asset.objects(client_id=client_id, url__in=urls)}
    if not probe_urls:
        return tuple(_item(i, url, assets.get(url), None, probe_urls=False) for i, url in enumerate(urls))
    stop_at = deadline if move_at is None or deadline is None else min(deadline, move_at)
    pool = ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="media-check")
    try:
        futures = [pool.submit(_item, i, url, assets.get(url), deadline) for i, url in enumerate(urls)]
        timeout = None if stop_at is None else max(0.0, stop_at - time.monotonic())
        done, running = wait(futures, timeout=timeout)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a late check ends by its own fetch deadline
    if running and move_at is not None and stop_at == move_at and (deadline is None or move_at < deadline):
        raise MediaChecksUnfinished(f"{len(running)} of {len(urls)} media checks still running")
    items = []
    for index, (url, future) in enumerate(zip(urls, futures, strict=True)):
        if future in done:
            items.append(future.result())  # a 404/410 raises ValidationError here
        else:
            items.append(_item(index, url, assets.get(url), None, probe_urls=False))
    return tuple(items)


def _item(
    index: int, url: str, asset: Asset | None, deadline: float | None, *, probe_urls: bool = True
) -> MediaItem:
    """One URL's item: its Asset, a probe and (for a video) its header, inside ``deadline``."""
    left = None if deadline is None else max(0.01, deadline - time.monotonic())
    found = probe(url, _probe_timeout(left)) if probe_urls else None
    mime = found.mime_type if found else None
    size = found.size_bytes if found else None
    if asset is not None:
        kind, alt = asset.type, asset.alt_text
    else:
        kind, alt = kind_from_mime(mime), None
        if kind in (None, "file"):  # generic types such as application/octet-stream
            kind = _guess_kind(url) or kind
    facts = None
    if probe_urls and kind == "video":
        left = None if deadline is None else max(0.01, deadline - time.monotonic())
        fetcher = media_fetcher() if left is None else media_fetcher(total_timeout=left)
        facts = video_facts(url, what=f"assetUrls[{index}]", fetcher=fetcher)
    if facts is None:
        return MediaItem(url, kind, alt, mime, size)
    return MediaItem(url, kind, alt, mime, size, facts.duration_seconds, facts.width, facts.height)


def _probe_timeout(left: float | None) -> tuple[float, float, float]:
    connect, read, total = PROBE_TIMEOUT
    if left is None:
        return PROBE_TIMEOUT
    return min(connect, left), min(read, left), min(total, left)


def count_problem(urls: list[str], limits: MediaLimits | None, platform: str) -> str | None:
    """Too many items for the platform: known from the post alone, so checked before any fetch."""
    if limits is None or limits.max_items is None or len(urls) <= limits.max_items:
        return None
    return f"{platform} takes at most {limits.max_items} media items, got {len(urls)}"


def limits_for(platform: str) -> MediaLimits | None:
    """The connector's own ``media_limits`` if it declares them, else the reference table."""
    try:
        own = get_connector(platform).media_limits
    except Exception:  # unknown or broken connector: the pipeline reports that itself
        own = None
    return own if own is not None else REFERENCE_LIMITS.get(platform)


def _cta_template(client_id: str, label: object) -> CtaTemplateDoc | None:
    if label is None:
        return None
    client = (
        clients().find_one({"_id": ObjectId(client_id)}, {"ctaTemplates": 1})
        if ObjectId.is_valid(client_id)
        else None
    )
    stored = client.get("ctaTemplates") if client is not None else None
    templates = [t for t in stored or [] if isinstance(t, dict)]
    for template in templates:
        if template.get("label") == label:
            return template
    known = ", ".join(repr(t.get("label")) for t in templates) or "none"
    raise ValidationError("cta.template", f"the client has no CTA template {label!r} (known: {known})")


def _apply_cta(
    post: Mapping[str, Any], platform: str, body: str, options: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    cta = post.get("cta")
    if cta is None:
        return body, options
    if not isinstance(cta, dict):
        raise ValidationError("cta", "must be an object {template, actionType, url}")
    template = _cta_template(str(post["clientId"]), cta.get("template"))
    text = str((template.get("text") if template is not None else None) or "").strip()
    if text and cta.get("appendText", True) and text not in body:
        body = f"{body.rstrip()}\n\n{text}"
    if platform == CTA_PLATFORM and "callToAction" not in options:
        button: dict[str, Any] = {"actionType": str(cta.get("actionType") or DEFAULT_CTA_ACTION).upper()}
        if cta.get("url"):
            button["url"] = cta["url"]
        options = {**options, "callToAction": button}
    return body, options


def build_content(
    post: Mapping[str, Any], platform: str, *, deadline: float | None = None, move_at: float | None = None
) -> PostContent:
    """The content for ``platform``; raises ``ValidationError`` for media or a CTA it cannot take.

    ``deadline`` / ``move_at`` bound the media checks (:func:`media_for`). The number of items is
    checked against the platform's maximum first, before any URL is fetched.
    """
    options = post.get("publishOptions") or {}
    platform_options = options.get(platform, {}) if isinstance(options, dict) else {}
    if not isinstance(platform_options, dict):
        platform_options = {}
    client_id = str(post["clientId"])
    urls = [u for u in post.get("assetUrls") or [] if isinstance(u, str)]
    limits = limits_for(platform)
    too_many = count_problem(urls, limits, platform)
    if too_many:
        raise ValidationError("media", too_many)
    media = media_for(client_id, urls, deadline=deadline, move_at=move_at)
    if limits is not None:
        check_media(media, limits, platform)
    body, platform_options = _apply_cta(post, platform, str(post.get("body") or ""), platform_options)
    return PostContent(
        post_id=str(post["_id"]),
        client_id=client_id,
        title=str(post.get("title") or ""),
        body=body,
        media=media,
        link=post.get("link") if isinstance(post.get("link"), str) else None,
        options=platform_options,
    )
