"""Platform-neutral checks of a post, before any delivery is attempted.

Each problem names the field and the reason (``body: must not be empty``), so the post fails
alone with a readable ``lastError`` and the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcmp.models.schedule import ScheduleTimeError, parse_schedule_time


def post_problems(post: Mapping[str, object]) -> list[str]:
    """Problems that make the whole post unpublishable (every platform fails with them)."""
    problems = []
    if not isinstance(post.get("clientId"), str) or not post.get("clientId"):
        problems.append("clientId: missing")
    title = post.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append("title: must not be empty")
    body = post.get("body")
    if not isinstance(body, str) or not body.strip():
        problems.append("body: must not be empty")
    platforms = post.get("platforms")
    if not isinstance(platforms, list) or not platforms:
        problems.append("platforms: no platform selected")
    elif not all(isinstance(p, str) and p for p in platforms):
        problems.append("platforms: every entry must be a platform name")
    assets = post.get("assetUrls", [])
    if assets is not None and (not isinstance(assets, list) or not all(isinstance(a, str) for a in assets)):
        problems.append("assetUrls: must be a list of URLs")
    return problems


def describe_schedule_time(value: object) -> str:
    """Why ``value`` names no instant (``lastError`` of a post that cannot be scheduled)."""
    try:
        parse_schedule_time(value)
    except ScheduleTimeError as exc:
        return str(exc)
    return "scheduleTime: valid"
