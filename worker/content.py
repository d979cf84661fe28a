"""Builds the platform-neutral ``PostContent`` a connector receives from a stored post."""

from __future__ import annotations

from typing import Any

from connectors.types import MediaItem, PostContent
from models import Asset

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


def media_for(client_id: str, urls: list[str]) -> tuple[MediaItem, ...]:
    """Media items for a post's ``assetUrls``, enriched from the client's Asset library."""
    if not urls:
        return ()
    assets = {a.url: a for a in Asset.objects(client_id=client_id, url__in=urls)}
    items = []
    for url in urls:
        asset = assets.get(url)
        if asset is not None:
            items.append(MediaItem(url=url, kind=asset.type, alt_text=asset.alt_text))
        else:
            items.append(MediaItem(url=url, kind=_guess_kind(url)))
    return tuple(items)


def build_content(post: dict[str, Any], platform: str) -> PostContent:
    options = post.get("publishOptions") or {}
    platform_options = options.get(platform, {}) if isinstance(options, dict) else {}
    return PostContent(
        post_id=str(post["_id"]),
        client_id=str(post["clientId"]),
        title=str(post.get("title") or ""),
        body=str(post.get("body") or ""),
        media=media_for(
            str(post["clientId"]), [u for u in post.get("assetUrls") or [] if isinstance(u, str)]
        ),
        link=post.get("link") if isinstance(post.get("link"), str) else None,
        options=platform_options if isinstance(platform_options, dict) else {},
    )
