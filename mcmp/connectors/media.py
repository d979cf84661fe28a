"""Platform-neutral media rules: what a platform accepts, checked before any platform call.

Each connector declares its rules as a ``media_limits`` attribute (a :class:`MediaLimits`) and
calls :func:`check_media` in ``validate()``; the pipeline applies the same check before any
platform call, falling back to :data:`REFERENCE_LIMITS` for a connector that declares none, and
``mcmp connectors`` prints every connector's table (:func:`describe_limits`).

Unknown facts (a probe that failed, a size the server did not send, a video whose header could
not be read) never refuse a post: the platform decides then. Messages name the item
(``media[2] (https://cdn.example/clip.mp4)``, its place in the post's ``assetUrls``) and the rule, and never show a URL's query string (signed storage URLs carry
credentials there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mcmp.connectors.errors import ValidationError
from mcmp.connectors.types import MediaItem

MB = 1024 * 1024
KB = 1024


@dataclass(frozen=True)
class MediaLimits:
    """What one platform accepts. A kind absent from a per-kind mapping is unbounded there.

    ``duration_seconds`` and ``aspect_ratio`` are (min, max) ranges, the aspect ratio as
    width / height as displayed (9:16 → 0.5625); ``max_per_kind`` caps one kind inside a post
    (e.g. one video); ``mixed_kinds`` False means a post takes one kind only; ``min_items`` is the
    fewest items a post with media may carry when it has more than one (e.g. a multi-image post).
    ``notes`` says, per kind, what the connector does with it, or for a kind it refuses, why.
    """

    kinds: frozenset[str]
    max_bytes: Mapping[str, int] = field(default_factory=dict)
    mime_types: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_items: int | None = None
    min_bytes: Mapping[str, int] = field(default_factory=dict)
    duration_seconds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    aspect_ratio: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    max_per_kind: Mapping[str, int] = field(default_factory=dict)
    mixed_kinds: bool = True
    min_items: int | None = None
    notes: Mapping[str, str] = field(default_factory=dict)


_JPEG = frozenset({"image/jpeg"})
_MP4_MOV = frozenset({"video/mp4", "video/quicktime"})

# Published limits (platform docs, 2026) for connectors that declare none of their own.
REFERENCE_LIMITS: dict[str, MediaLimits] = {
    "instagram": MediaLimits(
        kinds=frozenset({"image", "video"}),
        max_bytes={"image": 8 * MB, "video": 300 * MB},  # feed images 8 MB; Reels 300 MB
        mime_types={"image": _JPEG, "video": _MP4_MOV},
        max_items=10,  # carousel
    ),
}


def human_size(size: int) -> str:
    if size >= 1024 * MB:
        return f"{size / (1024 * MB):.1f} GB"
    return f"{size / MB:.1f} MB" if size >= MB else f"{size / 1024:.0f} KB"


def human_seconds(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def ratio_text(ratio: float) -> str:
    """9:16-style text for the usual ratios, else the decimal."""
    for w, h in ((9, 16), (16, 9), (1, 1), (4, 5), (5, 4), (4, 3), (3, 4), (1, 2.4), (2.4, 1), (1.91, 1)):
        if abs(ratio - w / h) < 0.005:
            return f"{w:g}:{h:g}"
    return f"{ratio:.2f}"


def display_url(url: str) -> str:
    """The URL without query or fragment (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else parts.path


def kind_from_mime(mime: str | None) -> str | None:
    if not mime:
        return None
    major = mime.split("/", 1)[0]
    return major if major in ("image", "video") else "file"


def item_name(index: int, item: MediaItem) -> str:
    """How messages name an item: its position in the post's media, then the URL without its query."""
    return f"media[{index}] ({display_url(item.url)})"


def _item_problems(index: int, item: MediaItem, limits: MediaLimits, platform: str) -> list[str]:
    where = item_name(index, item)
    kind = item.kind
    if kind is not None and kind not in limits.kinds:
        accepted = ", ".join(sorted(limits.kinds)) or "no media"
        why = f": {limits.notes[kind]}" if kind in limits.notes else ""
        return [f"{where}: {platform} does not accept {kind} media (accepts {accepted}){why}"]
    key = kind or ""
    problems = []
    mimes = limits.mime_types.get(key)
    if item.mime_type and mimes and item.mime_type not in mimes:
        problems.append(
            f"{where}: {item.mime_type} is not accepted by {platform} for {kind}s "
            f"(accepted: {', '.join(sorted(mimes))})"
        )
    ceiling = limits.max_bytes.get(key)
    if item.size_bytes is not None and ceiling is not None and item.size_bytes > ceiling:
        problems.append(
            f"{where}: {kind} of {human_size(item.size_bytes)} is larger than "
            f"{platform}'s {human_size(ceiling)} limit"
        )
    floor = limits.min_bytes.get(key)
    if item.size_bytes is not None and floor is not None and item.size_bytes < floor:
        problems.append(
            f"{where}: {kind} of {human_size(item.size_bytes)} is smaller than "
            f"{platform}'s {human_size(floor)} minimum"
        )
    span = limits.duration_seconds.get(key)
    if item.duration_seconds is not None and span is not None:
        low, high = span
        if not low <= item.duration_seconds <= high:
            takes = (
                f"{human_seconds(low)} to {human_seconds(high)}" if low else f"at most {human_seconds(high)}"
            )
            problems.append(f"{where}: {kind} lasts {item.duration_seconds:.1f} s; {platform} takes {takes}")
    ratios = limits.aspect_ratio.get(key)
    if item.aspect_ratio is not None and ratios is not None:
        low_r, high_r = ratios
        if not low_r - 0.01 <= item.aspect_ratio <= high_r + 0.01:
            problems.append(
                f"{where}: {kind} is {item.width}x{item.height} (aspect ratio "
                f"{ratio_text(item.aspect_ratio)}); {platform} takes {ratio_text(low_r)} to {ratio_text(high_r)}"
            )
    return problems


def media_problems(media: Sequence[MediaItem], limits: MediaLimits, platform: str) -> list[str]:
    """Readable reasons ``platform`` would refuse these items; empty when nothing is known wrong."""
    problems = []
    if limits.max_items is not None and len(media) > limits.max_items:
        problems.append(f"{platform} takes at most {limits.max_items} media items, got {len(media)}")
    if limits.min_items is not None and 1 < len(media) < limits.min_items:
        problems.append(
            f"a {platform} post with several media items needs at least {limits.min_items}, got {len(media)}"
        )
    kinds = {item.kind for item in media if item.kind is not None}
    if not limits.mixed_kinds and len(kinds) > 1:
        problems.append(f"{platform} cannot mix {' and '.join(sorted(kinds))} in one post")
    for kind, cap in sorted(limits.max_per_kind.items()):
        count = sum(1 for item in media if item.kind == kind)
        if count > cap:
            noun = kind if cap == 1 else f"{kind}s"
            problems.append(f"{platform} takes at most {cap} {noun} per post, got {count}")
    for i, item in enumerate(media):
        problems += _item_problems(i, item, limits, platform)
    return problems


def check_media(media: Sequence[MediaItem], limits: MediaLimits, platform: str) -> None:
    """Raise ``ValidationError('media', …)`` (a permanent failure of this platform) if refused."""
    problems = media_problems(media, limits, platform)
    if problems:
        raise ValidationError("media", "; ".join(problems))


def describe_limits(limits: MediaLimits) -> list[tuple[str, str]]:
    """(kind, rules) rows for people: what ``check_media`` enforces, in words."""
    rows: list[tuple[str, str]] = []
    post: list[str] = []
    if limits.max_items is not None:
        post.append(f"at most {limits.max_items} items")
    if limits.min_items is not None:
        post.append(f"several items: at least {limits.min_items}")
    if not limits.mixed_kinds:
        post.append("one kind per post")
    post += [f"at most {cap} {kind}" for kind, cap in sorted(limits.max_per_kind.items())]
    if post:
        rows.append(("post", "; ".join(post)))
    for kind in sorted(limits.kinds):
        parts: list[str] = []
        mimes = limits.mime_types.get(kind)
        if mimes:
            parts.append("types " + ", ".join(sorted(mimes)))
        low, high = limits.min_bytes.get(kind), limits.max_bytes.get(kind)
        if low is not None and high is not None:
            parts.append(f"{human_size(low)} to {human_size(high)}")
        elif high is not None:
            parts.append(f"up to {human_size(high)}")
        span = limits.duration_seconds.get(kind)
        if span is not None:
            low_s, high_s = span
            parts.append(
                f"{human_seconds(low_s)} to {human_seconds(high_s)}"
                if low_s
                else f"up to {human_seconds(high_s)}"
            )
        ratios = limits.aspect_ratio.get(kind)
        if ratios is not None:
            parts.append(f"aspect {ratio_text(ratios[0])} to {ratio_text(ratios[1])}")
        if kind in limits.notes:
            parts.append(limits.notes[kind])
        rows.append((kind, "; ".join(parts) or "accepted"))
    for kind in sorted(set(limits.notes) - set(limits.kinds)):
        rows.append((kind, f"refused: {limits.notes[kind]}"))
    return rows


__all__ = [
    "KB",
    "MB",
    "REFERENCE_LIMITS",
    "MediaLimits",
    "check_media",
    "describe_limits",
    "display_url",
    "human_seconds",
    "human_size",
    "item_name",
    "kind_from_mime",
    "media_problems",
    "ratio_text",
]
