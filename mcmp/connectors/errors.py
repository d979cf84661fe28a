"""The connector error tree, split by what the worker must do.

    PublisherError                      the root of all of ours (mcmp.errors), re-exported here
     └── ConnectorError                 raised by connectors; ``classify`` is the only producer
          ├── RetryableError            transient (5xx, network before send): back off with jitter,
          │    │                        honouring ``retry_after``
          │    └── AmbiguousError       the request may have taken effect (timeout after send,
          │         │                   reset mid-response, 5xx on a write, Graph 506): reconcile
          │         │                   (look the post up) before any new attempt
          │         └── LookupIncompleteError  that lookup could not see its whole window: stay
          │                             uncertain and look again later
          ├── RateLimitedError          throttled: defer until ``until``; the attempt is not consumed
          ├── AuthError                 token expired / revoked / missing scope: the account needs
          │                             reconnecting (after one refresh when ``refreshable``);
          │                             deliveries wait without consuming attempts
          └── PermanentError            validation or policy: fail this platform with a readable reason
               └── ValidationError      our own pre-flight check failed (``field`` + ``reason``)

Messages never contain tokens: connectors build them from platform error text only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcmp.connectors.waits import bounded_wait
from mcmp.errors import PublisherError


class ConnectorError(PublisherError):
    """A platform call failed; the subclass says what the worker must do."""

    # What the worker records as the delivery's ``errorClass`` (the values of models' ErrorClass).
    error_class: str = "permanent"

    def __init__(self, message: str, *, platform_code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.platform_code = platform_code


class RetryableError(ConnectorError):
    error_class = "retryable"

    def __init__(
        self, message: str, *, retry_after: float | None = None, platform_code: str | int | None = None
    ) -> None:
        super().__init__(message, platform_code=platform_code)
        self.retry_after = bounded_wait(retry_after)  # inf / nan / absurd: as if absent


class AmbiguousError(RetryableError):
    error_class = "ambiguous"


class LookupIncompleteError(AmbiguousError):
    """A reconciliation lookup read all the pages it may without reaching the start of its window.

    "Not found" would then be a guess, and publishing on a guess is how duplicates happen: the
    delivery stays uncertain and looks again with backoff (an uncertain delivery never gives up
    into re-posting), its ``lastError`` saying why.
    """

    def __init__(self, platform: str, scanned: int, since: datetime, *, reason: str | None = None) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"{platform} lookup read {scanned} recent posts without reaching "
            f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, when the earlier attempt began{why}; "
            "not publishing again while that attempt's post may exist"
        )


class RateLimitedError(ConnectorError):
    """Throttled. ``scope`` names the budget (e.g. ``app``, ``account``, ``user``, ``ig-publish-quota``).

    ``hinted`` says whether the platform named the wait (``Retry-After``, a regain time): without
    a hint the worker chooses the block itself (short at first, longer on repeats), and
    ``retry_after`` is only a fallback for callers that keep no shared state.
    """

    error_class = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        scope: str = "account",
        platform_code: str | int | None = None,
    ) -> None:
        super().__init__(message, platform_code=platform_code)
        retry_after = bounded_wait(retry_after)  # inf / nan / absurd: as if the platform said nothing
        self.hinted = retry_after is not None
        self.retry_after = 60.0 if retry_after is None else retry_after
        self.scope = scope

    @property
    def until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.retry_after)


class AuthError(ConnectorError):
    """The platform rejected the credentials.

    ``refreshable`` says whether a refresh grant may recover: True for an OAuth 2 access token
    the platform invalidated early (LinkedIn/Google 401, the refresh token may still be good);
    False when the credential itself is dead or lacks a permission a refresh cannot add (Graph
    190/102/10/200, a scope 403, a webhook secret or application password refused), so the
    worker asks for a reconnect at once instead of calling a token endpoint that can only fail.
    """

    error_class = "auth"

    def __init__(
        self, message: str, *, platform_code: str | int | None = None, refreshable: bool = True
    ) -> None:
        super().__init__(message, platform_code=platform_code)
        self.refreshable = refreshable


class PermanentError(ConnectorError):
    error_class = "permanent"


class ValidationError(PermanentError):
    """A post the platform would refuse, caught before any call: names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


__all__ = [
    "AmbiguousError",
    "AuthError",
    "ConnectorError",
    "LookupIncompleteError",
    "PermanentError",
    "PublisherError",
    "RateLimitedError",
    "RetryableError",
    "ValidationError",
]
