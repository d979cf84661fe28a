"""Platform-neutral media rules: what a platform accepts, checked before any platform call.

Connectors keep their own limits beside ``validate()`` (as a ``media_limits`` attribute, a
:class:`MediaLimits`) and call :func:`check_media` there; the pipeline applies the same check
before any platform call, falling back to :data:`REFERENCE_LIMITS` — the platforms' published
limits — for a connector that declares none. Unknown facts (a probe that failed, a size the
server did not send) never refuse a post: the platform decides then. Messages never show a
URL's query string (signed storage URLs carry credentials there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mcmp.connectors.errors import ValidationError
from mcmp.connectors.types import MediaItem

MB = 1024 * 1024


@dataclass(frozen=True)
class MediaLimits:
    """What one platform accepts. A kind absent from ``max_bytes``/``mime_types`` is unbounded."""

    kinds: frozenset[str]
    max_bytes: Mapping[str, int] = field(default_factory=dict)
    mime_types: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_items: int | None = None


_JPEG = frozenset({"image/jpeg"})
_MP4_MOV = frozenset({"video/mp4", "video/quicktime"})

# Published limits (platform docs, 2026) for connectors that declare none. Connector owners:
# move the entry for your platform to ``<Connector>.media_limits`` and check it in validate().
REFERENCE_LIMITS: dict[str, MediaLimits] = {
    "instagram": MediaLimits(
        kinds=frozenset({"image", "video"}),
        max_bytes={"image": 8 * MB, "video": 300 * MB},  # feed images 8 MB; Reels 300 MB
        mime_types={"image": _JPEG, "video": _MP4_MOV},
        max_items=10,  # carousel
    ),
    "facebook": MediaLimits(
        kinds=frozenset({"image", "video"}),
        max_bytes={"image": 10 * MB, "video": 1024 * MB},  # photos 10 MB; non-resumable video 1 GB
        max_items=10,
    ),
    "linkedin": MediaLimits(
        kinds=frozenset({"image"}),  # the connector has no Videos API flow yet
        mime_types={"image": frozenset({"image/jpeg", "image/png", "image/gif"})},
        max_items=1,
    ),
    "google-business": MediaLimits(
        kinds=frozenset({"image"}),  # localPosts take photos by sourceUrl
        max_bytes={"image": 5 * MB},
        mime_types={"image": frozenset({"image/jpeg", "image/png"})},
    ),
}


def human_size(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{size / 1024:.0f} KB"


def display_url(url: str) -> str:
    """The URL without query or fragment (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else parts.path


def kind_from_mime(mime: str | None) -> str | None:
    if not mime:
        return None
    major = mime.split("/", 1)[0]
    return major if major in ("image", "video") else "file"


def media_problems(media: Sequence[MediaItem], limits: MediaLimits, platform: str) -> list[str]:
    """Readable reasons ``platform`` would refuse these items; empty when nothing is known wrong."""
    problems = []
    if limits.max_items is not None and len(media) > limits.max_items:
        problems.append(f"{platform} takes at most {limits.max_items} media items, got {len(media)}")
    for i, item in enumerate(media):
        where = f"media[{i}] ({display_url(item.url)})"
        if item.kind is not None and item.kind not in limits.kinds:
            accepted = ", ".join(sorted(limits.kinds)) or "no media"
            problems.append(f"{where}: {platform} does not accept {item.kind} media (accepts {accepted})")
            continue
        mimes = limits.mime_types.get(item.kind or "")
        if item.mime_type and mimes and item.mime_type not in mimes:
            problems.append(
                f"{where}: {item.mime_type} is not accepted by {platform} for {item.kind}s "
                f"(accepted: {', '.join(sorted(mimes))})"
            )
        ceiling = limits.max_bytes.get(item.kind or "")
        if item.size_bytes is not None and ceiling is not None and item.size_bytes > ceiling:
            problems.append(
                f"{where}: {item.kind} of {human_size(item.size_bytes)} is larger than "
                f"{platform}'s {human_size(ceiling)} limit"
            )
    return problems


def check_media(media: Sequence[MediaItem], limits: MediaLimits, platform: str) -> None:
    """Raise ``ValidationError('media', …)`` (a permanent failure of this platform) if refused."""
    problems = media_problems(media, limits, platform)
    if problems:
        raise ValidationError("media", "; ".join(problems))


__all__ = [
    "MB",
    "REFERENCE_LIMITS",
    "MediaLimits",
    "check_media",
    "display_url",
    "human_size",
    "kind_from_mime",
    "media_problems",
]
