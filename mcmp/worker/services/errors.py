"""What an operator action can refuse, each error saying how the API answers it.

``message`` is safe to show to the caller: it never names another tenant's objects nor a secret.
"""

from __future__ import annotations

from bson import ObjectId


class OperationError(Exception):
    """Root of the errors below; ``message`` is safe to show to the caller."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(OperationError):
    """No such object for this caller (absent, or another tenant's)."""


class Conflict(OperationError):
    """The object's current state does not allow the action (HTTP 409)."""


class NothingToRetry(Conflict):
    """Every selected platform is published or still active: retrying would publish nothing."""


class InvalidRequest(OperationError):
    """The request itself is wrong (unknown platform, time in the past): HTTP 422."""


class PostNotPublishable(OperationError):
    """The post would fail again as it stands (empty body, text too long, bad media): HTTP 422.

    Raised before anything is re-opened. ``problems`` lists ``(field, reason)`` of the post,
    e.g. ``("body", "must not be empty")``; ``platform`` is the first platform refused.
    """

    def __init__(self, post_id: str, platform: str, problems: list[tuple[str, str]]) -> None:
        described = "; ".join(f"{field}: {reason}" for field, reason in problems)
        super().__init__(f"post {post_id} cannot be published on {platform}: {described}", problems[0][0])
        self.platform = platform
        self.problems = problems


class Unavailable(OperationError):
    """This process cannot do it as configured (e.g. no key to seal a token with): HTTP 503."""


def canonical(object_id: str, what: str) -> str:
    """The one spelling of an id (24 lowercase hex digits): posts are found by ObjectId but
    deliveries by the id's text, so ``6B0B…`` must become ``6b0b…`` before either is read."""
    if not isinstance(object_id, str) or not ObjectId.is_valid(object_id):
        raise NotFound(f"{what} not found")
    return str(ObjectId(object_id))
