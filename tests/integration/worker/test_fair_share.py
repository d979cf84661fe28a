"""Fair share: claims go round-robin across tenants under MCMP_TENANT_MAX_IN_FLIGHT, and slow
accounts' deliveries move to the long lane (before any platform call) or are sent there."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from mcmp.config import get_settings
from mcmp.models import DeliveryState
from mcmp.worker import rate_limit
from mcmp.worker.publishing import delivery_states, lanes, pipeline
from mcmp.worker.publishing.delivery_states import NewDelivery
from mcmp.worker.scheduling import fair_share
from mcmp.worker.scheduling.dispatcher import Dispatcher
from tests.integration.worker.helpers import now, take


def _pending(client: str, n: int, due_in: float = 0.0, platform: str = "website") -> list[Any]:
    due = now() + timedelta(seconds=due_in)
    new = [NewDelivery(f"{client}-post-{i}-{due_in}", client, platform, due) for i in range(n)]
    delivery_states.ensure(new)
    found = delivery_states.deliveries().find({"clientId": client, "dueAt": due}, {"_id": 1})
    return [d["_id"] for d in found]


def _site_tenant(make_client: Any, make_account: Any) -> Any:
    """A tenant with a connected website account (a webhook nothing answers: never called here)."""
    client = make_client()
    make_account(
        client, "website", accessToken="s", metadata={"webhookUrl": "http://127.0.0.1:9/h", "mode": "webhook"}
    )
    return client


def _tenants(ids: list[Any]) -> list[str]:
    docs = {d["_id"]: d["clientId"] for d in delivery_states.deliveries().find({"_id": {"$in": ids}})}
    return [docs[i] for i in ids]


def test_interleave_takes_tenants_and_accounts_in_turns_each_under_its_room():
    docs = [{"_id": f"a{i}", "clientId": "A", "platform": "website"} for i in range(6)]
    docs += [{"_id": f"f{i}", "clientId": "A", "platform": "facebook"} for i in range(2)]
    docs += [{"_id": f"b{i}", "clientId": "B", "platform": "facebook"} for i in range(3)]
    chosen = fair_share.interleave(docs, {"A": 4, "B": 10}, limit=100)
    assert chosen == ["a0", "b0", "f0", "b1", "a1", "b2", "f1"]


def test_a_quiet_tenant_is_claimed_beside_a_backlog_due_before_it(env):
    _pending("noisy", 300)  # more than a page, all due first
    quiet = _pending("quiet", 10, due_in=1.5)
    chosen = fair_share.choose_due(now() + timedelta(seconds=2), limit=200, cap=50)
    tenants = _tenants(chosen)
    assert tenants.count("noisy") == 50 and tenants.count("quiet") == 10
    assert set(quiet) <= set(chosen) and tenants[:20].count("quiet") == 10  # in turns, not after


def test_a_tenant_at_its_cap_gets_nothing_more_until_its_deliveries_finish(env):
    noisy = _pending("noisy", 60)
    delivery_states.claim_ids(noisy[:50], 300)  # 50 queued: the default cap
    quiet = _pending("quiet", 3)
    chosen = fair_share.choose_due(
        now() + timedelta(seconds=2), limit=200, cap=get_settings().tenant_max_in_flight
    )
    assert sorted(chosen) == sorted(quiet)


def test_a_next_read_of_the_due_page_continues_at_the_same_instant_without_repeating_any(env, monkeypatch):
    # One read keeps a page per tenant: A fills its room in the first read, the next read goes on
    # from the same due instant (ties in id order) without A and without B's delivery read before.
    monkeypatch.setattr(fair_share, "KEEP_PAGES", 1)
    due = now()
    order = [("B", 0)] + [("A", i) for i in range(5)] + [("B", i) for i in range(1, 4)]
    for client, i in order:  # one insert each: ids grow in this order, all due at one instant
        delivery_states.ensure([NewDelivery(f"{client}-tie-{i}", client, "website", due)])
    chosen = fair_share.choose_due(now() + timedelta(seconds=2), limit=5, cap=3)
    assert len(chosen) == len(set(chosen)) == 5
    assert sorted(_tenants(chosen)) == ["A", "A", "B", "B", "B"]


def test_under_a_backlog_a_read_windowed_past_the_last_one_finds_what_a_full_read_finds(env):
    # A's backlog is due over the last 20 s, B's one delivery just now; A fills its room at once.
    backlog = [_pending("A", 1, due_in=-20 + i)[0] for i in range(20)]
    quiet = _pending("B", 1, due_in=-0.5)
    horizon = now() + timedelta(seconds=1)
    last = fair_share._Backlog(edge=now() - timedelta(seconds=18), span=fair_share.MIN_SPAN)
    for room in ({"A": 2, "B": 2}, {"A": 50, "B": 50}):
        full, more = fair_share._read_due(horizon, 5, dict(room), set(), None)
        windowed, _ = fair_share._read_due(horizon, 5, dict(room), set(), last)
        assert [d["_id"] for d in windowed] == [d["_id"] for d in full]
    assert [d["_id"] for d in full] == backlog[:5]  # room enough: the earliest five, in due order
    assert more is not None and more.edge == full[-1]["dueAt"].replace(tzinfo=more.edge.tzinfo)
    capped, _ = fair_share._read_due(horizon, 5, {"A": 2, "B": 2}, set(), last)
    assert [d["_id"] for d in capped][-1:] == quiet  # past the window, B is not hidden by A's backlog
    everything, more = fair_share._read_due(horizon, 50, {"A": 50, "B": 50}, set(), last)
    assert len(everything) == 21 and more is None  # read to the horizon: no backlog left


def test_a_costly_due_read_serves_the_next_passes_and_rechecks_each_candidate(env, monkeypatch):
    # Every read counts as costly: later passes take their turns from what it kept.
    monkeypatch.setattr(fair_share, "RESCAN_FACTOR", 1e9)
    a, b = _pending("A", 30), _pending("B", 30)
    horizon = now() + timedelta(seconds=2)
    first = fair_share.choose_due(horizon, limit=20, cap=50)
    delivery_states.claim_ids(first, 300)
    late = _pending("C", 5)  # not in the kept read: waits for the next one
    taken_elsewhere = [i for i in a + b if i not in first][:2]
    delivery_states.claim_ids(taken_elsewhere[:1], 300)  # queued by another path meanwhile
    delivery_states.deliveries().update_one(  # taken and deferred by another path: not due now
        {"_id": taken_elsewhere[1]}, {"$set": {"dueAt": now() + timedelta(minutes=5)}}
    )
    second = fair_share.choose_due(horizon, limit=100, cap=50)
    assert not set(first) & set(second)
    assert set(first) | set(second) == set(a + b) - set(taken_elsewhere)
    assert not set(late) & set(second)
    delivery_states.claim_ids(second, 300)
    # what the read kept is used up: the next pass reads again at once, however costly the read
    assert set(fair_share.choose_due(horizon, limit=100, cap=50)) == set(late)


def test_expansion_sends_a_tenants_share_and_keeps_the_rest_pending_at_its_time(
    env, make_client, make_account, make_post
):
    client = _site_tenant(make_client, make_account)
    when = now() + timedelta(seconds=1)
    for _ in range(60):
        make_post(client, ["website"], when=when)
    sent: list[tuple[str, dict[str, Any]]] = []
    dispatcher = Dispatcher(send_task=lambda name, **kw: sent.append((name, kw)))
    posts, created, _, count = dispatcher.expand_due_posts(now() + timedelta(seconds=2))
    assert (posts, created, count) == (60, 60, 50)
    rest = list(delivery_states.deliveries().find({"state": DeliveryState.PENDING.value}))
    assert len(rest) == 10 and all(abs((d["dueAt"] - when).total_seconds()) < 0.01 for d in rest)
    # the rest were inserted pending, never claimed and handed back: one write each, not three
    assert all("claimToken" not in d and d["updatedAt"] == d["createdAt"] for d in rest)


def test_one_pass_counts_what_it_took_itself_against_the_cap(env, make_client, make_account, make_post):
    # The pass counts queued and in-flight deliveries once: the 50 it has just created taken must
    # count, or its claim step would hand the tenant's 10 pending ones out beside them.
    client = _site_tenant(make_client, make_account)
    for _ in range(60):
        make_post(client, ["website"], when=now())
    sent: list[tuple[str, dict[str, Any]]] = []
    stats = Dispatcher(send_task=lambda name, **kw: sent.append((name, kw))).tick()
    assert (stats.created, stats.sent) == (60, 50)
    states = [d["state"] for d in delivery_states.deliveries().find({"clientId": str(client["_id"])})]
    assert states.count(DeliveryState.PENDING.value) == 10 and len(states) == 60


def test_a_tenant_already_at_its_cap_gets_its_new_deliveries_pending_and_another_tenant_its_share(
    env, make_client, make_account, make_post
):
    full, quiet = _site_tenant(make_client, make_account), _site_tenant(make_client, make_account)
    busy = _pending(str(full["_id"]), 50)
    delivery_states.claim_ids(busy, 300)  # the full tenant has its 50 queued already
    when = now() + timedelta(seconds=1)
    for client in (full, quiet):
        for _ in range(5):
            make_post(client, ["website"], when=when)
    dispatcher = Dispatcher(send_task=lambda name, **kw: None)
    _, created, _, count = dispatcher.expand_due_posts(now() + timedelta(seconds=2))
    assert (created, count) == (10, 5)
    born = list(delivery_states.deliveries().find({"postId": {"$not": {"$regex": "-post-"}}}))
    by_tenant = {c: [d for d in born if d["clientId"] == str(c)] for c in (full["_id"], quiet["_id"])}
    assert all(d["state"] == "pending" and "claimToken" not in d for d in by_tenant[full["_id"]])
    assert all(
        d["state"] == "in_flight" and d["owner"] is None for d in by_tenant[quiet["_id"]]
    )  # born taken


def test_deliveries_of_an_account_marked_long_are_sent_to_the_long_lane(env):
    _pending("slow", 3)
    fast = _pending("quick", 2, platform="facebook")
    lanes.mark_long("slow", "website", get_settings())
    sent: list[tuple[str, dict[str, Any]]] = []
    dispatcher = Dispatcher(send_task=lambda name, **kw: sent.append((name, kw)))
    dispatcher.claim_and_send(now())
    queues = {kw["queue"]: kw for _, kw in sent}
    assert set(queues) == {"publish", "publish-long"}
    assert queues["publish-long"]["kwargs"]["lane"] == "publish-long"
    assert "lane" not in (queues["publish"]["kwargs"] or {})
    sent_fast = queues["publish"]["args"][0]
    assert sorted(sent_fast if isinstance(sent_fast, list) else [sent_fast]) == sorted(str(i) for i in fast)


@pytest.fixture
def website(make_client, make_account):
    client = make_client()
    make_account(
        client,
        "website",
        accessToken="dev-webhook-secret",
        metadata={"webhookUrl": "http://127.0.0.1:9/h", "mode": "webhook"},
    )
    return client


def test_a_delivery_of_a_long_account_moves_to_the_long_lane_before_any_platform_call(
    env, website, make_post
):
    post = make_post(website, ["website"])
    taken = take(post)
    lanes.mark_long(str(website["_id"]), "website", get_settings())
    broker = rate_limit.client()
    attempt = pipeline.Attempt(taken, get_settings(), post, False)  # type: ignore[arg-type]
    record = pipeline.run_attempt(attempt)
    assert record.outcome is pipeline.Outcome.MOVED
    assert pipeline.commit(record, post) is pipeline.Outcome.MOVED  # type: ignore[arg-type]
    doc = delivery_states.deliveries().find_one({"_id": taken.id})
    assert doc["state"] == DeliveryState.QUEUED.value and doc["attempt"] == 0 and not doc["needsReconcile"]
    assert doc["firstTakenAt"] is not None and doc.get("callStartedAt") is None
    message = json.loads(broker.lindex("publish-long", 0))
    assert message["headers"]["task"] == "mcmp.publish_delivery"
    # and on the long lane it is published as any delivery (here the webhook is down: a retry)
    assert pipeline.publish_delivery(str(taken.id), lane=lanes.LONG) is pipeline.Outcome.RETRY


def test_a_claim_larger_than_one_query_chunk_claims_every_delivery_once_in_the_order_given(env):
    ids = _pending("big", 130)  # three chunks of ids on the server
    ids.reverse()
    delivery_states.claim_ids(ids[:1], 300)  # claimed by another pass already: not won again
    won = delivery_states.claim_ids(ids, 300)
    assert [d["_id"] for d in won] == ids[1:]
    states = {d["state"] for d in delivery_states.deliveries().find({"clientId": "big"})}
    assert states == {DeliveryState.QUEUED.value}
    assert delivery_states.unclaim(ids) == 130


def test_deliveries_that_waited_behind_the_cap_are_claimed_taken_in_batch_messages(
    env, make_client, make_account, make_post
):
    client = _site_tenant(make_client, make_account)
    for _ in range(60):
        make_post(client, ["website"], when=now())
    sent: list[tuple[str, dict[str, Any]]] = []
    dispatcher = Dispatcher(send_task=lambda name, **kw: sent.append((name, kw)))
    assert dispatcher.tick().sent == 50
    delivery_states.deliveries().update_many(
        {"state": DeliveryState.IN_FLIGHT.value}, {"$set": {"state": "published"}}
    )
    sent.clear()
    assert dispatcher.tick().sent == 10
    waited = list(delivery_states.deliveries().find({"state": DeliveryState.IN_FLIGHT.value}))
    assert len(waited) == 10 and all(d["owner"] is None and d["attempt"] == 1 for d in waited)
    assert all("claimToken" not in d for d in waited)  # taken by the claim itself, not queued
    [(name, message)] = sent
    assert name == "mcmp.publish_batch" and message["kwargs"]["claim"]["attempt"] == waited[0]["attemptId"]


def test_deliveries_spread_over_the_look_ahead_count_against_the_cap_only_near_each_others_due_time(
    env, make_client, make_account, make_post
):
    # 80 posts at 40 a second over the next two seconds: never more than 40 of them due within one
    # second, so all are born taken (counting every queued one capped a steady tenant at 25/s).
    client = _site_tenant(make_client, make_account)
    start = now() + timedelta(seconds=0.5)
    for i in range(80):
        make_post(client, ["website"], when=start + timedelta(seconds=i / 40))
    dispatcher = Dispatcher(send_task=lambda name, **kw: None)
    assert dispatcher.expand_due_posts(start + timedelta(seconds=2.1))[1:] == (80, 0, 80)
    # the same 80 due within one instant: only the cap's 50 are born taken
    other = _site_tenant(make_client, make_account)
    for _ in range(80):
        make_post(other, ["website"], when=start + timedelta(seconds=1))
    assert dispatcher.expand_due_posts(start + timedelta(seconds=2.1))[1:] == (80, 0, 50)
