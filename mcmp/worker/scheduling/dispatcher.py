"""Turns due posts into deliveries and hands due deliveries to Celery — never earlier.

Any number of dispatchers may run (two by mistake, or one per machine): every step is a
conditional write, so a delivery is claimed by exactly one of them. Work is handed over only
within a short look-ahead (``MCMP_LOOKAHEAD_SECONDS``) with a Celery ETA of its due time, so
far-future posts never sit in worker memory and the cost of a tick grows with the due count,
not with the total (indexes: posts (status, marker, scheduleTime), deliveries (state, dueAt)).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from mcmp.config import Settings, get_settings
from mcmp.connectors.registry import available_platforms
from mcmp.models import DeliveryState, ErrorClass, PostStatus
from mcmp.models.base import as_utc, utcnow
from mcmp.models.db import BY_ID
from mcmp.models.delivery import DeliveryDoc
from mcmp.models.id_batches import id_batches
from mcmp.models.schedule import (
    SCHEDULE_AT,
    schedule_instant,
)
from mcmp.worker import fleet, liveness
from mcmp.worker.accounts import store as account_store
from mcmp.worker.publishing import delivery_states, lanes, post_status
from mcmp.worker.publishing.post_status import EXPANDED_MARKER
from mcmp.worker.publishing.post_validation import describe_schedule_time, post_problems
from mcmp.worker.scheduling import fair_share
from mcmp.worker.scheduling.string_times import StringScheduleTimes

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)

PUBLISH_TASK = "mcmp.publish_delivery"
# Lower bound of the due-date range: strings sort before dates in an index, and without it
# SecantusDB walked every string time of the (status, marker, scheduleTime) prefix (5,000 date +
# 2,000 string posts: 152 ms per poll unbounded, 1.6 ms bounded).
FIRST_DATE = datetime(1, 1, 1, tzinfo=UTC)
_EXPAND_FIELDS = {"clientId": 1, "platforms": 1, "scheduleTime": 1, "title": 1, "body": 1, "assetUrls": 1}
BATCH_TASK = "mcmp.publish_batch"
# A tick still expanding or claiming after this long ends; the next starts at once, with the
# time and the tenants' in-flight counts read again.
TICK_SECONDS = 2.0


@dataclass
class TickStats:
    expanded_posts: int = 0
    created: int = 0
    reopened: int = 0
    claimed: int = 0
    sent: int = 0


def unschedulable_query(full: bool) -> dict[str, Any]:
    """Scheduled posts whose ``scheduleTime`` is missing/null, or (``full``) of any non-date type.

    A post without a date was never expanded (no marker), so the cheap pass is an equality
    prefix of the (status, marker, scheduleTime) index; the full sweep reads them all.
    """
    if full:  # strings are parsed (and failed when invalid) by ``derive_schedule_times``
        return {"status": PostStatus.SCHEDULED.value, "scheduleTime": {"$not": {"$type": ["date", "string"]}}}
    return {"status": PostStatus.SCHEDULED.value, EXPANDED_MARKER: None, "scheduleTime": None}


def expansion_horizon(now: datetime, lookahead_seconds: float) -> datetime:
    """How far a pass expands: the look-ahead's end rounded down to a whole second, never before now.

    Posts then enter the look-ahead a second's worth at a time, so the deliveries due in one
    second are created and sent together — whole batch messages (``MCMP_BATCH_SIZE``) rather than
    a tick's sliver of a second each, which cost the workers a task, its events and its reads
    and writes per message. They still go out at least ``lookahead - 1`` s before they are due.
    """
    end = now + timedelta(seconds=lookahead_seconds)
    return max(now, end.replace(microsecond=0))


Message = tuple[str, list[Any], dict[str, Any] | None, datetime | None, list[ObjectId]]


def _single(delivery: DeliveryDoc, eta: datetime | None) -> Message:
    """One ``mcmp.publish_delivery`` message; ``post_id`` and ``platform`` label it in Flower."""
    kwargs: dict[str, Any] = {"post_id": str(delivery["postId"]), "platform": str(delivery["platform"])}
    attempt_id = delivery_states.born_attempt(delivery)
    item = delivery_states.batch_item(delivery) if attempt_id else None
    hint = {"attempt": attempt_id, "items": [item]} if item else delivery_states.claim_hint(delivery)
    if hint:
        kwargs["claim"] = hint
    return PUBLISH_TASK, [str(delivery["_id"])], kwargs, eta, [delivery["_id"]]


def _on_lane(message: Message, lane: str) -> Message:
    """The message for ``lane``: the publish lane's as it always was, the long lane's tagged."""
    if lane == lanes.FAST:
        return message
    name, args, kwargs, eta, members = message
    return name, args, {**(kwargs or {}), "lane": lane}, eta, members


class Dispatcher:
    def __init__(
        self, settings: Settings | None = None, send_task: Any = None, queue_depth: Any = None
    ) -> None:
        self.settings = settings or get_settings()
        if send_task is None:
            from mcmp.worker.app import app

            send_task = app.send_task
        self._send_task = send_task
        self._queue_depth = queue_depth  # tests and benchmarks may count their own queue
        self._last_type_sweep = 0.0
        self.string_times = StringScheduleTimes(self.settings, _EXPAND_FIELDS)

    # --- expansion ---------------------------------------------------------------------------
    def expand_due_posts(
        self, horizon: datetime, load: fair_share.InFlight | None = None
    ) -> tuple[int, int, int, int]:
        """Create the deliveries of posts due by ``horizon`` and send them: (posts, created, reopened, sent).

        ``horizon`` is within the look-ahead, so new deliveries are created already claimed and
        handed to Celery at once, born taken for their first attempt (one insert instead of insert,
        claim and take; invariant 1 still holds: the unique (post, platform) index lets exactly one
        dispatcher create each delivery, and its attempt id is recorded before any call).
        """
        posts = post_status.posts()
        page = list(
            posts.find(
                {
                    "status": PostStatus.SCHEDULED.value,
                    EXPANDED_MARKER: None,  # missing; equality keeps the index bounds tight
                    "scheduleTime": {"$gte": FIRST_DATE, "$lte": horizon},  # dates only
                },
                _EXPAND_FIELDS,
            )
            .sort("scheduleTime", 1)
            .limit(self.settings.dispatch_batch_size)
        )
        if self.string_times.present:
            page += self.string_times.due(horizon)
        if not page:
            return 0, 0, 0, 0
        known = set(available_platforms())
        new: list[delivery_states.NewDelivery] = []
        invalid: dict[str, str] = {}
        for post in page:
            post_id = str(post["_id"])
            client_id = str(post.get("clientId") or "")
            due = schedule_instant(post)
            assert due is not None
            problems = post_problems(post)
            if problems:
                invalid[post_id] = "; ".join(problems)
            platforms = [p for p in dict.fromkeys(post.get("platforms") or []) if isinstance(p, str)]
            if problems and not platforms:
                continue  # failed below, with nothing to create
            for platform in platforms:
                reason = "; ".join(problems)
                if not reason and platform not in known:
                    reason = f"platforms: no connector for platform {platform!r} (known: {', '.join(sorted(known))})"
                new.append(
                    delivery_states.NewDelivery(
                        post_id,
                        client_id,
                        platform,
                        due,
                        state=DeliveryState.FAILED if reason else DeliveryState.PENDING,
                        last_error=reason or None,
                        error_class=ErrorClass.PERMANENT if reason else None,
                    )
                )
        load = load or fair_share.InFlight()
        ensured = delivery_states.ensure(
            new,
            take_lease_seconds=self.settings.queued_lease_seconds,
            take_only=fair_share.born_claimed(new, self.settings.tenant_max_in_flight, load),
        )
        # An invalid post failed before any marker: all its deliveries were created failed (none
        # re-opened), so a post marked expanded here would be settled by any sync in between with
        # its older deliveries' error instead of this one.
        for post_id, reason in invalid.items():
            post_status.fail_post(post_id, PostStatus.SCHEDULED.value, reason)
        # Marked before the deliveries are sent: a worker's outcome settles only an expanded post.
        # The instant of a string time leaves its index with it: only unexpanded posts are there.
        for chunk in id_batches(p["_id"] for p in page):
            posts.update_many(
                {"_id": {"$in": chunk}, "status": PostStatus.SCHEDULED.value},
                {"$set": {EXPANDED_MARKER: utcnow()}, "$unset": {SCHEDULE_AT: ""}},
                hint=BY_ID,
            )
        # Born taken within each tenant's share only (``born_claimed``); the rest wait, pending.
        # Sent in tenants' turns, as claims are.
        turns = {
            doc_id: i for i, doc_id in enumerate(fair_share.interleave(ensured.taken, {}, len(ensured.taken)))
        }
        sent = self._send(sorted(ensured.taken, key=lambda d: turns[d["_id"]]))
        for post_id in {d.post_id for d in new if d.state is DeliveryState.FAILED} - invalid.keys():
            post_status.sync(post_id)  # e.g. a platform without a connector, beside others
        return len(page), ensured.created, ensured.reopened, sent

    def derive_schedule_times(self, full: bool | None = None) -> int:
        """Parse the string scheduleTime of unexpanded posts (see :mod:`.string_times`)."""
        return self.string_times.derive_pending(full)

    # --- claiming ----------------------------------------------------------------------------
    def claim_and_send(self, now: datetime, load: fair_share.InFlight | None = None) -> tuple[int, int]:
        """Claim due deliveries fairly across tenants (``fair_share``), each under its cap, and send them."""
        horizon = now + timedelta(seconds=self.settings.lookahead_seconds)
        load = load or fair_share.InFlight(now)
        chosen = fair_share.choose_due(
            horizon, self.settings.dispatch_batch_size, self.settings.tenant_max_in_flight, load
        )
        claimed = delivery_states.claim_taken(chosen, self.settings.queued_lease_seconds)
        return len(claimed), self._send(claimed)

    def _send(self, claimed: list[DeliveryDoc]) -> int:
        """Hand claimed deliveries to Celery; give back what the broker refused.

        Deliveries claimed together go as ``mcmp.publish_batch`` messages of up to
        ``MCMP_BATCH_SIZE`` (formed from what was claimed now: a batch never waits to fill), one
        per distinct ETA second (each member still starts at its own due time); lone ones go
        as ``mcmp.publish_delivery``. Messages carry ids, times and the claim token only. The
        deliveries of accounts marked long go to the ``publish-long`` lane (``publishing/lanes.py``).
        """
        messages = self._messages(claimed)
        born = sorted({a for d in claimed if (a := delivery_states.born_attempt(d))})
        sent = 0
        for i, (name, args, kwargs, eta, members) in enumerate(messages):
            try:
                queue = str((kwargs or {}).get("lane") or lanes.FAST)
                self._send_task(name, args=args, kwargs=kwargs, eta=eta, queue=queue)
                sent += len(members)
            except Exception as exc:  # broker down: give the rest back now rather than after the lease
                unsent = [oid for m in messages[i:] for oid in m[4]]
                log.warning(
                    "broker unavailable (%s); releasing %d claimed deliveries",
                    type(exc).__name__,
                    len(unsent),
                )
                delivery_states.unclaim(unsent, born=born)
                break
        return sent

    def _messages(self, claimed: list[DeliveryDoc]) -> list[Message]:
        now = utcnow()
        size = self.settings.batch_size
        long = lanes.long_accounts((str(d.get("clientId") or ""), str(d["platform"])) for d in claimed)
        singles: list[Message] = []
        groups: dict[tuple[str, str, datetime | None], list[tuple[DeliveryDoc, list[str]]]] = {}
        for delivery in claimed:
            due = as_utc(delivery["dueAt"])
            eta = due if due is not None and due > now else None
            lane = (
                lanes.LONG
                if (str(delivery.get("clientId") or ""), str(delivery["platform"])) in long
                else lanes.FAST
            )
            item = delivery_states.batch_item(delivery) if size > 1 else None
            if item is None:
                singles.append(_on_lane(_single(delivery, eta), lane))
                continue
            # One message per lane, claim token (or birth attempt) and ETA second (the batch runs
            # when its first is due).
            born = delivery_states.born_attempt(delivery)
            token = f"attempt:{born}" if born else str(delivery["claimToken"])
            key = (lane, token, eta.replace(microsecond=0) if eta else None)
            groups.setdefault(key, []).append((delivery, item))
        messages = list(singles)
        for (lane, token, second), members in groups.items():
            if second is not None:  # not yet due: each chunk a slice of the second, posts whole
                members.sort(key=lambda m: (as_utc(m[0]["dueAt"]) or now, str(m[0]["postId"])))
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                first = min((t for d, _ in chunk if (t := as_utc(d["dueAt"])) is not None), default=None)
                eta = first if first is not None and first > now else None
                ids = [d["_id"] for d, _ in chunk]
                if len(chunk) == 1:
                    messages.append(_on_lane(_single(chunk[0][0], eta), lane))
                    continue
                kind, _, value = (
                    token.partition(":") if token.startswith("attempt:") else ("token", "", token)
                )
                claim = {kind: value, "items": [item for _, item in chunk]}
                messages.append(
                    _on_lane((BATCH_TASK, [[str(i) for i in ids]], {"claim": claim}, eta, ids), lane)
                )
        return messages

    def resend_stranded(self) -> int:
        """Send again the messages of ``queued`` deliveries that a loss may have taken.

        A worker killed with ``kill -9`` takes its prefetched messages with it, and a broker
        restart can lose its queue; their deliveries would stay ``queued`` until the queued
        lease. Once the publish queue is empty, a delivery ``MCMP_REQUEUE_AFTER_SECONDS`` overdue
        whose message was sent before the last such loss is sent again (tasks are idempotent: a
        copy that arrives late finds the delivery taken). Without a loss nothing is re-sent: a
        message sent since is queued or prefetched by a live worker, and re-sending it under a
        backlog would double the work when capacity is shortest.
        """
        waiting = self._publish_queue_depth()
        if waiting is None or waiting > 0:
            return 0
        lost_after = liveness.last_loss()
        if lost_after is None:
            return 0
        stranded = delivery_states.stranded(
            self.settings.requeue_after_seconds, self.settings.dispatch_batch_size, lost_after
        )
        if not stranded:
            return 0
        sent = self._send(stranded)
        log.warning("re-sent %d queued deliveries whose message was lost", sent)
        return sent

    def _publish_queue_depth(self) -> int | None:
        """Messages waiting in the broker's publish queue (Redis or AMQP), None if unknown."""
        if self._queue_depth is not None:
            return int(self._queue_depth())
        try:
            from mcmp.worker.app import app

            with app.connection_for_read() as conn:
                waiting = 0
                for queue in lanes.QUEUES:
                    channel = conn.default_channel
                    try:
                        # every kombu transport's channel declares queues; the stubs' StdChannel omits it
                        declared = channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
                        waiting += int(declared.message_count)
                    except conn.channel_errors:
                        pass  # no such queue: Redis drops an empty list, a broker restart all queues
                return waiting
        except Exception as exc:  # broker down: nothing to decide on
            log.info("publish queue depth unavailable (%s)", type(exc).__name__)
            return None

    # --- maintenance -------------------------------------------------------------------------
    def fail_unschedulable_posts(self, full: bool | None = None) -> int:
        """Scheduled posts whose scheduleTime is not a date would wait forever: fail them visibly.

        A missing or null time is found through the index on every pass. Any other non-date
        type (a string, a number…) can only be found by reading every scheduled post, so that
        sweep runs every ``unschedulable_sweep_seconds`` (``full`` forces or skips it).
        """
        if full is None:
            full = time.monotonic() - self._last_type_sweep >= self.settings.unschedulable_sweep_seconds
        if full:
            self._last_type_sweep = time.monotonic()
        page = (
            post_status.posts()
            .find(unschedulable_query(full), {"scheduleTime": 1})
            .limit(self.settings.dispatch_batch_size)
        )
        failed = 0
        for post in page:
            reason = describe_schedule_time(post.get("scheduleTime"))
            if post_status.fail_post(str(post["_id"]), PostStatus.SCHEDULED.value, reason):
                log.warning("post %s failed: %s", post["_id"], reason, extra={"post_id": str(post["_id"])})
                failed += 1
        return failed

    def resume_reconnected_accounts(self) -> int:
        """Deliveries waiting for re-authorisation resume once their account is connected again."""
        coll = delivery_states.deliveries()
        waiting: list[Mapping[str, Any]] = list(  # groups, not deliveries
            coll.aggregate(
                [
                    {"$match": {"state": DeliveryState.WAITING_AUTH.value}},
                    {
                        "$group": {
                            "_id": {"clientId": "$clientId", "platform": "$platform"},
                            "since": {"$min": "$waitingSince"},
                        }
                    },
                ]
            )
        )
        resumed = 0
        deadline = utcnow() - timedelta(hours=self.settings.reauth_deadline_hours)
        for group in waiting:
            client_id, platform = group["_id"]["clientId"], group["_id"]["platform"]
            account = account_store.find_account(client_id, platform)
            since = as_utc(group.get("since"))
            if (
                account is not None
                and account.status == "connected"
                and (since is None or (as_utc(account.updated_at) or since) >= since)
            ):
                resumed += delivery_states.resume_waiting(platform=platform, client_id=client_id)
                continue
            for d in coll.find(
                {
                    "state": DeliveryState.WAITING_AUTH.value,
                    "clientId": client_id,
                    "platform": platform,
                    "scheduledFor": {"$lt": deadline},
                },
                {"_id": 1, "postId": 1, "lastError": 1},
            ):
                reason = f"account was not reconnected within {self.settings.reauth_deadline_hours:g} h: {d.get('lastError') or 'authorisation expired'}"
                if delivery_states.fail_waiting(d["_id"], reason):
                    post_status.sync(d["postId"])
        return resumed

    def settle_stale_posts(self) -> int:
        """Re-derive posts still ``scheduled`` long after expansion; rotate the rest to the back.

        A worker killed between recording a delivery and updating its post leaves the post
        behind. One page of such posts costs three queries whatever its size: the page, all
        their deliveries, and one update rotating those whose deliveries are still at work (a
        backlog of thousands queued in Celery must not cost two writes per post every pass);
        only the posts that actually lag are written one by one.
        """
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.settle_after_seconds)
        posts = post_status.posts()
        page = list(
            # The lower bound keeps the range tight on servers that would otherwise walk every
            # unexpanded (marker-less) post of the index.
            posts.find(
                {"status": PostStatus.SCHEDULED.value, EXPANDED_MARKER: {"$gte": EPOCH, "$lt": cutoff}},
                {"status": 1, "platforms": 1, "platformPostIds": 1, EXPANDED_MARKER: 1},
            )
            .sort(EXPANDED_MARKER, 1)
            .limit(self.settings.dispatch_batch_size)
        )
        if not page:
            return 0
        deliveries = delivery_states.for_posts([str(p["_id"]) for p in page])
        settled, waiting = 0, []
        for post in page:
            post_id = str(post["_id"])
            if post_status.needs_sync(post, deliveries[post_id]) and post_status.sync(post_id, post):
                settled += 1
            else:
                waiting.append(post["_id"])
        for chunk in id_batches(waiting):
            posts.update_many(
                {
                    "_id": {"$in": chunk},
                    "status": PostStatus.SCHEDULED.value,
                    EXPANDED_MARKER: {"$exists": True},
                },
                {"$set": {EXPANDED_MARKER: now}},
                hint=BY_ID,
            )
        if settled:
            log.warning("settled %d posts whose status lagged behind their deliveries", settled)
        return settled

    def maintenance(self) -> dict[str, int]:
        queued, in_flight = delivery_states.reap_expired_leases()
        if queued or in_flight:
            log.warning("reaped expired leases: %d queued, %d in flight (will reconcile)", queued, in_flight)
        return {
            "reaped_queued": queued,
            "reaped_in_flight": in_flight,
            "resent_queued": self.resend_stranded(),
            "failed_invalid": self.fail_unschedulable_posts(),
            "derived_times": self.derive_schedule_times(),
            "resumed_auth": self.resume_reconnected_accounts(),
            "settled_posts": self.settle_stale_posts(),
        }

    # --- loop --------------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> TickStats:
        now = now or utcnow()
        stats = TickStats()
        horizon = expansion_horizon(now, self.settings.lookahead_seconds)
        load = fair_share.InFlight(now)  # counted once for the whole pass
        page = self.settings.dispatch_batch_size
        # A burst of due posts is expanded a page at a time, each page followed by a claim pass:
        # expanding a burst whole before claiming left the workers idle while its deliveries were
        # inserted (10,000 posts due within a minute: ~20 s without a claim). A long pass ends
        # after ``TICK_SECONDS`` so the next one starts from a fresh clock and a fresh count.
        ends = time.monotonic() + TICK_SECONDS
        expanding = claiming = True
        refused = False  # the broker refused a message: no more claims this tick
        while expanding or claiming:
            if expanding:
                n, created, reopened, sent = self.expand_due_posts(horizon, load)
                stats.expanded_posts += n
                stats.created += created
                stats.reopened += reopened
                stats.claimed += created
                stats.sent += sent
                expanding = n >= page
            if not refused:
                claimed, sent = self.claim_and_send(now, load)
                stats.claimed += claimed
                stats.sent += sent
                refused = sent < claimed
            claiming = not refused and claimed >= page
            if time.monotonic() > ends:
                break
        return stats

    def run_maintenance(self, stop: threading.Event) -> None:
        """The maintenance loop, on its own thread so a slow sweep never delays a due post."""
        while not stop.is_set():
            try:
                self.maintenance()
            except Exception:  # transient DB errors: logged, retried next interval
                log.exception("maintenance pass failed; retrying")
            stop.wait(self.settings.reap_interval_seconds)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info(
            "dispatcher started (tick %.2fs, look-ahead %.1fs)",
            self.settings.dispatch_interval_seconds,
            self.settings.lookahead_seconds,
        )
        maintenance = threading.Thread(
            target=self.run_maintenance, args=(stop,), name="dispatcher-maintenance", daemon=True
        )
        maintenance.start()
        ticks = fleet.TickRecorder()
        while not stop.is_set():
            started = time.monotonic()
            try:
                stats = self.tick()
                ticks.ticked(stats.claimed)
                if stats.claimed or stats.expanded_posts:
                    log.info(
                        "dispatch tick: %d posts expanded, %d deliveries claimed, %d sent",
                        stats.expanded_posts,
                        stats.claimed,
                        stats.sent,
                    )
            except Exception:  # keep dispatching through transient DB/broker errors; they are logged
                log.exception("dispatch tick failed; retrying")
                stop.wait(1.0)
            stop.wait(max(0.0, self.settings.dispatch_interval_seconds - (time.monotonic() - started)))
        maintenance.join(timeout=10)
        log.info("dispatcher stopped")
