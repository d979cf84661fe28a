"""The one root of every error MCMP Publisher raises on purpose, and the tree that hangs from it.

``except PublisherError`` catches all of ours and nothing of a library's. The root lives below
every layer (``mcmp.config`` included) so each layer can hang its errors on it; a built-in base
stays beside it where callers catch that built-in (``ValueError``, ``RuntimeError``…).
``tests/unit/test_error_tree.py`` fails when an exception class in ``mcmp`` has another root.

    PublisherError
     ├── SettingsError (RuntimeError)       config: invalid configuration at startup, every problem listed
     ├── IndexMismatch (RuntimeError)       models: an index we rely on exists but does something else
     ├── ScheduleTimeError (ValueError)     models: a ``scheduleTime`` that names no instant
     ├── ConnectorError                     connectors: a platform call failed (tree in connectors/errors.py)
     │    ├── RetryableError
     │    │    └── AmbiguousError
     │    │         └── LookupIncompleteError
     │    ├── RateLimitedError
     │    ├── AuthError
     │    └── PermanentError
     │         ├── GraphNotFound            a Graph object that does not exist (any more)
     │         └── ValidationError          pre-flight check failed (``field`` + ``reason``)
     │              ├── FetchRefused        a tenant URL refused (scheme, address, size, type…)
     │              └── PostInvalid         the worker's own checks of a post
     ├── UnknownPlatformError (LookupError) connectors: no connector registered under that name
     ├── WeakSecretError (ValueError)       connectors: a webhook secret too short to sign with
     ├── AddressRefused                     tenant_fetch: a resolved address a rule forbids
     ├── NotResolved (httpcore.ConnectError)  tenant_fetch: the host resolved to no address
     ├── _NotSent                           tenant_fetch: a failure before sending, through the retry
     ├── TokenKeyError (RuntimeError)       worker.accounts: token keys cannot do what was asked
     │    └── TokenBindingError             a sealed token that belongs to another account
     ├── QueueError                         worker.scheduling: a post could not be queued
     │    ├── PostNotQueueable
     │    └── PostingWindowError (ValueError)
     ├── MediaChecksUnfinished              worker.publishing: media checks still running at the deadline
     ├── BudgetUnavailable                  worker.analytics: the shared request budget is not there in time
     ├── StartsUnknown                      worker.liveness: Redis cannot say whether an attempt started
     ├── DeliveryFailed                     worker.tasks: a delivery failed for good
     ├── DeliveryRetrying                   worker.tasks: an attempt failed, the delivery will be retried
     ├── RetryRefused                       worker.tasks: a retry changed nothing
     ├── OperationError                     worker.services: what the API asked cannot be done
     │    ├── NotFound
     │    ├── Conflict
     │    │    └── NothingToRetry
     │    ├── InvalidRequest
     │    ├── PostNotPublishable
     │    └── Unavailable
     ├── ApiProblem                         api: an RFC 9457 problem a route answers with
     ├── BodyTooLarge (HTTPException)       api: a request body read past its cap
     └── ChildDied (RuntimeError)           cli: a process of the dev stack exited on its own
"""

from __future__ import annotations


class PublisherError(Exception):
    """Root of every error MCMP Publisher raises on purpose."""


__all__ = ["PublisherError"]
