"""How the dispatcher hands a second's deliveries to Celery: whole seconds, whole batches, due order.

Posts enter the look-ahead a whole second at a time, so the deliveries due in one second are sent
together as full ``mcmp.publish_batch`` messages (each a task, its events and its reads and writes
for a worker) instead of one small message per tick; within the second the batches follow due
order, and a post's platforms stay side by side (their post status is written once per batch).
A burst of posts larger than one expansion page is claimed from between its pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mcmp.config import get_settings
from mcmp.worker.publishing import delivery_states
from mcmp.worker.scheduling.dispatcher import Dispatcher, expansion_horizon
from tests.integration.worker.helpers import now


def test_posts_enter_the_look_ahead_a_whole_second_at_a_time_and_never_after_their_time() -> None:
    at = datetime(2026, 3, 1, 9, 0, 0, 300_000, tzinfo=UTC)
    assert expansion_horizon(at, 2.0) == datetime(2026, 3, 1, 9, 0, 2, tzinfo=UTC)
    assert expansion_horizon(at.replace(microsecond=999_999), 2.0) == datetime(
        2026, 3, 1, 9, 0, 2, tzinfo=UTC
    )
    # a look-ahead shorter than the rounding still takes everything due by now
    assert expansion_horizon(at, 0.5) == at
    assert expansion_horizon(at, 0.0) == at


def test_a_tick_expands_what_is_due_by_the_last_whole_second_of_its_look_ahead(
    env, make_client, make_post
) -> None:
    client = make_client()
    look_ahead = get_settings().lookahead_seconds
    # a tick half a second before the look-ahead's end crosses a whole second
    tick_at = now().replace(microsecond=0) + timedelta(seconds=5 + (0.5 - look_ahead) % 1)
    horizon = expansion_horizon(tick_at, look_ahead)
    assert horizon == tick_at + timedelta(seconds=look_ahead - 0.5)
    inside = make_post(client, ["website"], when=horizon - timedelta(seconds=0.1))
    beyond = make_post(client, ["website"], when=horizon + timedelta(seconds=0.1))  # within the look-ahead
    Dispatcher(send_task=lambda name, **kw: None).tick(tick_at)
    post_ids = {d["postId"] for d in delivery_states.deliveries().find({}, {"postId": 1})}
    assert str(inside["_id"]) in post_ids and str(beyond["_id"]) not in post_ids


def test_a_seconds_deliveries_go_in_full_batches_in_due_order_with_each_posts_platforms_together(
    env, make_client, make_post
) -> None:
    tenants = [make_client(), make_client()]
    second = now().replace(microsecond=0) + timedelta(seconds=3)
    for i in range(20):  # 40 deliveries due across one second, under each tenant's cap
        when = second + timedelta(milliseconds=50 * (19 - i))
        make_post(tenants[i % 2], ["website", "linkedin"], when=when)
    sent: list[dict[str, Any]] = []
    Dispatcher(send_task=lambda name, **kw: sent.append({"name": name, **kw})).expand_due_posts(
        second + timedelta(seconds=1)
    )
    assert [m["name"] for m in sent] == ["mcmp.publish_batch"] * 2
    batches = [[str(i) for i in m["args"][0]] for m in sent]
    assert [len(b) for b in batches] == [25, 15]
    docs = {str(d["_id"]): d for d in delivery_states.deliveries().find({})}
    order = [docs[i] for batch in batches for i in batch]
    dues = [d["dueAt"] for d in order]
    assert dues == sorted(dues)  # the first batch holds the first 25 due, the ETA its first member's
    assert sent[0]["eta"].replace(tzinfo=UTC) == min(dues).replace(tzinfo=UTC)
    positions: dict[str, list[int]] = {}
    for index, delivery in enumerate(order):
        positions.setdefault(delivery["postId"], []).append(index)
    assert len(positions) == 20 and all(ix == [ix[0], ix[0] + 1] for ix in positions.values())


def test_a_burst_larger_than_a_page_is_claimed_from_between_its_pages(env, make_client, make_post) -> None:
    # Posts due at once beyond one expansion page: a claim pass follows each page, so a delivery
    # already waiting is handed out after the first page, not after the whole burst is inserted.
    burst, waiting = make_client(), make_client()
    for _ in range(20):
        make_post(burst, ["website"], when=now())
    waited = delivery_states.ensure(
        [delivery_states.NewDelivery("waiting-post", str(waiting["_id"]), "website", now())]
    )
    assert waited.created == 1
    sent: list[list[str]] = []

    def send_task(name: str, args: list[Any], **kw: Any) -> None:
        sent.append(args[0] if name == "mcmp.publish_batch" else args)  # a batch's ids, or one id

    settings = get_settings().model_copy(update={"dispatch_batch_size": 5})
    stats = Dispatcher(settings, send_task=send_task).tick()
    assert (stats.expanded_posts, stats.sent) == (20, 21)
    tenant = {str(d["_id"]): d["clientId"] for d in delivery_states.deliveries().find({}, {"clientId": 1})}
    senders = [{tenant[str(i)] for i in ids} for ids in sent]
    assert senders.index({str(waiting["_id"])}) == 1  # right after the first page's message
    assert senders[0] == senders[-1] == {str(burst["_id"])}


def test_a_tick_stops_claiming_once_the_broker_refuses_and_keeps_every_delivery(
    env, make_client, make_post
) -> None:
    client = make_client()
    for _ in range(20):
        make_post(client, ["website"], when=now())
    attempts: list[str] = []

    def refuse(name: str, **kw: Any) -> None:
        attempts.append(name)
        raise ConnectionError("broker down")

    settings = get_settings().model_copy(update={"dispatch_batch_size": 5})
    stats = Dispatcher(settings, send_task=refuse).tick()
    assert (stats.expanded_posts, stats.sent) == (20, 0)
    assert len(attempts) == 4 + 1  # one refused message per expansion page, then one claim pass
    states = {d["state"] for d in delivery_states.deliveries().find({}, {"state": 1})}
    assert states == {"pending"}  # every delivery handed back, none lost
