"""The two publishing lanes: ``publish`` for the due posts of every tenant, ``publish-long`` for slow work.

A worker thread spent waiting on one tenant's slow site or slow media is a thread another
tenant's due post cannot have. So slow work is moved off the ``publish`` lane (its own Celery
queue, with its own worker threads: ``mcmp dev`` and ``docker-compose.yml`` run one):

* before any platform call, an attempt still in preflight ``MCMP_LONG_DELIVERY_SECONDS`` after it
  began is given back as ``queued`` under a new claim token (no attempt spent, lateness already
  judged, ``needsReconcile`` as it was: ``delivery_states.handoff_op``) and sent to
  ``publish-long``, where it continues with the whole preflight deadline;
* its account (client × platform) is then marked long in Redis for ``MCMP_LONG_MARK_SECONDS``,
  as is one whose platform call took longer than that: the dispatcher sends the account's next
  deliveries to ``publish-long`` directly, and one already on the ``publish`` lane moves there
  before its preflight.

A move is one conditional write plus one message; a lost message leaves a ``queued`` delivery
that the queued lease and the re-send of stranded deliveries recover (tasks are idempotent).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

import redis

from mcmp.config import Settings
from mcmp.worker import rate_limit
from mcmp.worker.publishing import delivery_states
from mcmp.worker.publishing.delivery_states import Taken

log = logging.getLogger(__name__)

FAST = "publish"
LONG = "publish-long"
QUEUES = (FAST, LONG)


def _key(client_id: str, platform: str) -> str:
    return f"mcmp:lane:long:{client_id}:{platform}"


def mark_long(client_id: str, platform: str, settings: Settings) -> None:
    """This account's deliveries take long now: send them to the long lane for a while."""
    if not client_id:
        return
    try:
        rate_limit.client().set(_key(client_id, platform), "1", ex=max(1, int(settings.long_mark_seconds)))
    except redis.RedisError as exc:  # the fast lane still moves them, one preflight share each
        log.warning("could not mark account long (%s)", type(exc).__name__)


def long_accounts(accounts: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (client, platform) accounts are marked long (none when Redis is away)."""
    wanted = sorted({a for a in accounts if a[0]})
    if not wanted:
        return set()
    try:
        found = rate_limit.client().mget([_key(c, p) for c, p in wanted])
    except redis.RedisError as exc:
        log.warning(
            "lane marks unavailable (%s); every delivery starts on the publish lane", type(exc).__name__
        )
        return set()
    return {a for a, v in zip(wanted, found, strict=True) if v is not None}


def is_long(client_id: str, platform: str) -> bool:
    return (client_id, platform) in long_accounts([(client_id, platform)])


def new_token() -> str:
    return uuid.uuid4().hex


def _item(taken: Taken) -> list[str]:
    """The batch entry of a delivery moved with ``handoff_op`` (attempt given back, flags as before)."""
    late_from = taken.late_from or taken.scheduled_for
    return [
        str(taken.id),
        taken.post_id,
        taken.platform,
        taken.scheduled_for.isoformat() if taken.scheduled_for else "",
        late_from.isoformat() if late_from else "",
        "1",  # picked up before: lateness was judged on the publish lane
        str(max(0, taken.attempt - 1)),
        "1" if taken.uncertain else "",
    ]


def send_moved(moved: Sequence[Taken], token: str) -> int:
    """Send deliveries just moved under ``token`` to the long lane; give them back if the broker refuses."""
    if not moved:
        return 0
    from mcmp.worker.app import app

    try:
        if len(moved) == 1 or any(t.scheduled_for is None for t in moved):
            for t in moved:
                app.send_task(
                    "mcmp.publish_delivery",
                    args=[str(t.id)],
                    kwargs={"post_id": t.post_id, "platform": t.platform, "lane": LONG},
                    queue=LONG,
                )
        else:
            claim = {"token": token, "items": [_item(t) for t in moved]}
            app.send_task(
                "mcmp.publish_batch",
                args=[[str(t.id) for t in moved]],
                kwargs={"claim": claim, "lane": LONG},
                queue=LONG,
            )
    except Exception as exc:  # broker down: pending again now rather than after the queued lease
        log.warning("could not move %d deliveries to the long lane (%s)", len(moved), type(exc).__name__)
        delivery_states.unclaim([t.id for t in moved])
        return 0
    log.info("moved %d deliveries to the long lane", len(moved))
    return len(moved)


__all__ = ["FAST", "LONG", "QUEUES", "is_long", "long_accounts", "mark_long", "new_token", "send_moved"]
