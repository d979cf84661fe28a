"""Celery tasks: thin wrappers (ids in, one call to a plain function, nothing secret out).

Every task is idempotent, so re-sending one from Flower or the admin API is always safe.
"""

from __future__ import annotations

from worker.app import app


@app.task(name="mcmp.publish_delivery", acks_late=True, reject_on_worker_lost=True)
def publish_delivery(delivery_id: str) -> str:
    """Publish one (post, platform) delivery; a no-op if it is already done or in flight."""
    from worker.publishing import publish_delivery as run

    return str(run(delivery_id))


@app.task(name="mcmp.maintenance.reap")
def reap() -> dict[str, int]:
    """Recover expired leases, fail unschedulable posts, resume reconnected accounts."""
    from worker.dispatcher import Dispatcher

    return Dispatcher().maintenance()


@app.task(name="mcmp.maintenance.queue_posts")
def queue_posts() -> int:
    """Give approved posts flagged ``queue: true`` their client's next free posting-window slot."""
    from worker.posting_windows import queue_flagged_posts

    return queue_flagged_posts()
