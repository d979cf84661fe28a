"""Is this post publishable on this platform? The checks every attempt and every retry run.

One function for the worker's preflight (each attempt: the post may have been edited since it
was scheduled) and for the admin API's retry/reschedule (refuse before re-opening anything), so
the two can never disagree. No platform call is made; each problem names the field and reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcmp.connectors.errors import ValidationError
from mcmp.connectors.registry import UnknownPlatformError, get_connector
from mcmp.connectors.types import Credentials, PostContent
from mcmp.worker.publishing.content import build_content
from mcmp.worker.publishing.post_validation import post_problems


class PostInvalid(ValidationError):
    """The post itself (not one platform's rules) is unpublishable; ``problems`` lists each."""

    def __init__(self, problems: list[str]) -> None:
        field, _, reason = problems[0].partition(": ")
        super().__init__(field, reason or problems[0])
        self.problems = problems
        self.message = "; ".join(problems)
        self.args = (self.message,)


def validate_for_platform(
    post: Mapping[str, Any],
    platform: str,
    credentials: Credentials | None,
    *,
    deadline: float | None = None,
    move_at: float | None = None,
) -> PostContent:
    """The content to publish on ``platform``, or ``ValidationError`` naming field and reason.

    ``credentials`` may carry no secret (the API checks without decrypting tokens): connectors
    validate from the account's ids and metadata only. ``None`` skips the connector's own check
    (no account yet); the platform-neutral and media checks still run.
    """
    problems = post_problems(dict(post))
    if problems:
        raise PostInvalid(problems)
    try:
        connector = get_connector(platform)
    except UnknownPlatformError as exc:
        raise ValidationError("platforms", str(exc)) from None
    content = build_content(dict(post), platform, deadline=deadline, move_at=move_at)
    if credentials is not None:
        connector.validate(content, credentials)
    return content


__all__ = ["PostInvalid", "validate_for_platform"]
