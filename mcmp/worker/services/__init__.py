"""The worker's public surface for the admin API and Flower: operator actions and the reads behind them.

Imported as ``from mcmp.worker import services`` and used as ``services.<name>``: one name
everywhere, so a reader finds every use with one search. What each part does:

- :mod:`.posts` — retry, cancel, reschedule a post (the only way the API moves deliveries);
- :mod:`.accounts` — store a new token on an account, resuming the deliveries waiting for it;
- :mod:`.queries` — every read the API makes (posts, accounts, deliveries, queue counts,
  campaign totals, readiness, backfill jobs, operators' figures): the API never reads a
  collection itself, so it never depends on how the worker stores things;
- :mod:`.tasks` — Celery sends by name (ids only);
- :mod:`.errors` — what an action can refuse, and how the API answers.

Owns no collection: every write goes through its owner (delivery states through
``publishing.delivery_states``, post status through ``publishing.post_status``, accounts through
``mcmp.worker.accounts``), as ``tests/test_write_ownership.py`` checks. ``__all__`` is pinned by ``tests/unit/test_services_surface.py``: a change to the surface the API
depends on is a reviewed change.
"""

from mcmp.worker.services.accounts import store_token
from mcmp.worker.services.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    NothingToRetry,
    OperationError,
    PostNotPublishable,
    Unavailable,
    canonical,
)
from mcmp.worker.services.posts import (
    CANCEL_NOTE,
    FLOWER_RETRY_NOTE,
    RESCHEDULE_NOTE,
    RETRY_NOTE,
    OperationResult,
    cancel,
    check_publishable,
    reschedule,
    retry,
)
from mcmp.worker.services.queries import (
    QueueCounts,
    account_page,
    account_view,
    accounts_at_risk,
    accounts_view,
    backfill_job,
    campaign_client,
    campaign_totals,
    deliveries_of,
    fleet_gauges,
    known_platforms,
    operator_report,
    post_page,
    post_readiness,
    post_view,
    posts_at_risk,
    queue_counts,
    token_flags,
    validate_draft,
)
from mcmp.worker.services.tasks import BACKFILL_TASK, answering_workers, send_task, start_backfill

__all__ = [
    "BACKFILL_TASK",
    "CANCEL_NOTE",
    "FLOWER_RETRY_NOTE",
    "RESCHEDULE_NOTE",
    "RETRY_NOTE",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "NothingToRetry",
    "OperationError",
    "OperationResult",
    "PostNotPublishable",
    "QueueCounts",
    "Unavailable",
    "account_page",
    "account_view",
    "accounts_at_risk",
    "accounts_view",
    "answering_workers",
    "backfill_job",
    "campaign_client",
    "campaign_totals",
    "canonical",
    "cancel",
    "check_publishable",
    "deliveries_of",
    "fleet_gauges",
    "known_platforms",
    "operator_report",
    "post_page",
    "post_readiness",
    "post_view",
    "posts_at_risk",
    "queue_counts",
    "reschedule",
    "retry",
    "send_task",
    "start_backfill",
    "store_token",
    "token_flags",
    "validate_draft",
]
