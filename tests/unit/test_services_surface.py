"""The worker's public surface (``mcmp.worker.services``) changes only by a reviewed edit here.

The admin API and Flower's ``mcmp.retry_post`` depend on these names and on nothing else of the
worker (import-linter: "The admin API uses the worker only through mcmp.worker.services"). A
name added to or dropped from ``__all__`` fails this test until the list below is updated with it.
"""

from __future__ import annotations

from mcmp.worker import services
from tests import ROOT

PINNED = {
    # operator actions on posts (services.posts)
    "retry",
    "cancel",
    "reschedule",
    "check_publishable",
    "OperationResult",
    "RETRY_NOTE",
    "FLOWER_RETRY_NOTE",
    "CANCEL_NOTE",
    "RESCHEDULE_NOTE",
    # accounts (services.accounts)
    "store_token",
    # reads (services.queries)
    "post_page",
    "post_view",
    "account_page",
    "account_view",
    "accounts_view",
    "token_flags",
    "campaign_client",
    "campaign_totals",
    "deliveries_of",
    "QueueCounts",
    "queue_counts",
    "backfill_job",
    "known_platforms",
    "fleet_gauges",
    "operator_report",
    "post_readiness",
    "validate_draft",
    "accounts_at_risk",
    "posts_at_risk",
    # Celery sends (services.tasks)
    "send_task",
    "answering_workers",
    "start_backfill",
    "BACKFILL_TASK",
    # errors (services.errors)
    "OperationError",
    "NotFound",
    "Conflict",
    "NothingToRetry",
    "InvalidRequest",
    "PostNotPublishable",
    "Unavailable",
    "canonical",
}


def test_the_public_surface_is_the_pinned_one():
    assert set(services.__all__) == PINNED
    assert len(services.__all__) == len(PINNED), "a name is listed twice in __all__"
    missing = [name for name in services.__all__ if not hasattr(services, name)]
    assert not missing, f"in __all__ but not importable: {missing}"


def test_the_worker_services_are_imported_under_one_name():
    """``from mcmp.worker import services`` everywhere outside the package: one name to search for."""
    package = ROOT / "mcmp" / "worker" / "services"
    aliased = []
    for path in (ROOT / "mcmp").rglob("*.py"):
        if package in path.parents:
            continue
        text = path.read_text()
        if "import services as " in text or "from mcmp.worker.services" in text:
            aliased.append(str(path.relative_to(ROOT)))
    assert not aliased, f"import it as `from mcmp.worker import services`: {aliased}"
