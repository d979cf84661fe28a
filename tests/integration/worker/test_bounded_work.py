"""Every delivery's work is bounded: one preflight deadline, the item count before any fetch, a
download rate floor, bounded Retry-After / regain times, and an uncertain delivery that ends
after a bounded number of lookups with a reason an operator can act on."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from mcmp.config import get_settings
from mcmp.connectors.errors import RateLimitedError, RetryableError, ValidationError
from mcmp.connectors.media_source import open_media
from mcmp.connectors.tenant_fetch import TenantFetcher
from mcmp.devstack.media import MediaHost
from mcmp.models import DeliveryState
from mcmp.worker import rate_limit
from mcmp.worker.publishing import content, delivery_states, pipeline
from mcmp.worker.publishing.media_checks import clear_probe_cache
from mcmp.worker.publishing.retry_policy import backoff_seconds
from tests.hostile_media import HostileServer, Route
from tests.integration.worker.helpers import now, preflight, take


@pytest.fixture
def media_host():
    host = MediaHost()
    clear_probe_cache()
    yield host
    host.stop()


@pytest.fixture
def website(make_client, make_account):
    client = make_client()
    make_account(
        client,
        "website",
        accessToken="dev-webhook-secret",
        metadata={"webhookUrl": "http://127.0.0.1:9/hooks/site", "mode": "webhook"},
    )
    return client


# --- one deadline for the whole preflight, media checked concurrently inside it -------------------
def test_media_checks_of_one_delivery_run_concurrently(website, make_post, media_host):
    urls = [media_host.image(f"p{i}.jpg", delay=1.2) for i in range(4)]
    post = make_post(website, ["website"], assetUrls=urls)
    started = time.monotonic()
    built = content.build_content(post, "website", deadline=time.monotonic() + 20)
    elapsed = time.monotonic() - started
    assert [m.kind for m in built.media] == ["image"] * 4 and all(m.size_bytes for m in built.media)
    assert elapsed < 3.0, f"4 checks of 1.2 s each took {elapsed:.1f} s: not concurrent"


def test_preflight_ends_at_its_deadline_with_the_slow_checks_unknown(website, make_post, media_host):
    urls = [media_host.image(f"slow{i}.jpg", delay=20) for i in range(3)]
    post = make_post(website, ["website"], assetUrls=urls)
    check = preflight(take(post), post)
    check.deadline = time.monotonic() + 1.5  # what MCMP_PREFLIGHT_DEADLINE_SECONDS sets per attempt
    started = time.monotonic()
    from mcmp.worker.publishing import preflight as steps

    decision = steps.run(check)
    elapsed = time.monotonic() - started
    assert decision is None, decision  # unknown facts never refuse a post: the platform decides
    assert elapsed < 3.0, f"the preflight ran {elapsed:.1f} s past a 1.5 s deadline"
    assert check.content is not None and [m.size_bytes for m in check.content.media] == [None] * 3


def test_on_the_publish_lane_slow_media_moves_the_delivery_instead(website, make_post, media_host):
    post = make_post(website, ["website"], assetUrls=[media_host.image("s.jpg", delay=5)])
    check = preflight(take(post), post)
    check.move_at = time.monotonic() + 0.5
    from mcmp.worker.publishing import preflight as steps

    started = time.monotonic()
    decision = steps.run(check)
    assert isinstance(decision, steps.Move) and "slow media" in decision.reason
    assert time.monotonic() - started < 2.0


# --- the number of items is checked before any network call ----------------------------------------
def test_too_many_items_fail_before_any_url_is_fetched(website, make_post, media_host):
    urls = [media_host.image(f"c{i}.jpg") for i in range(11)]
    post = make_post(website, ["instagram"], assetUrls=urls)
    with pytest.raises(ValidationError) as info:
        content.build_content(post, "instagram", deadline=time.monotonic() + 20)
    assert "at most 10 media items, got 11" in str(info.value)
    assert media_host.requests == []  # not one HEAD, not one GET


# --- a dripping download is cut below the rate floor ----------------------------------------------
def test_a_download_dripping_below_the_rate_floor_is_cut(env):
    server = HostileServer({"/drip.jpg": Route("drip")})
    try:
        fetcher = TenantFetcher(["127.0.0.0/8"], read_timeout=15, total_timeout=60)
        started = time.monotonic()
        with pytest.raises(RetryableError) as info:  # noqa: PT012 - the read is the slow part
            with open_media(
                f"{server.base}/drip.jpg", what="assetUrls[0]", max_bytes=10 << 30, fetcher=fetcher
            ) as m:
                m.read()
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert "below the floor" in info.value.message and "MCMP_MEDIA_MIN_BYTES_PER_SECOND" in info.value.message
    # 10 s of grace, then the next byte: never the 10 GiB cap at any rate (hours)
    assert elapsed < 15.0, elapsed


# --- Retry-After and regain times are bounded -------------------------------------------------------
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e300, -5.0, 40 * 86400.0])
def test_unusable_waits_count_as_absent(env, value):
    assert RetryableError("x", retry_after=value).retry_after is None
    throttled = RateLimitedError("x", retry_after=value)
    assert not throttled.hinted and throttled.until < datetime.now(UTC) + timedelta(minutes=2)
    assert backoff_seconds(1, get_settings(), value) <= get_settings().retry_max_seconds
    rate_limit.throttled("website", "account", "acct-1", value)
    until = rate_limit.blocked_until("website", "acct-1")
    assert until is not None and until < datetime.now(UTC) + timedelta(minutes=1)  # the escalation's 15 s


def test_a_long_wait_is_clamped_to_the_documented_maximum(env):
    most = get_settings().max_retry_after_seconds
    assert RetryableError("x", retry_after=10 * 86400.0).retry_after == most
    rate_limit.block("website", "account", "acct-2", 10 * 86400.0)
    until = rate_limit.blocked_until("website", "acct-2")
    assert until is not None and until <= datetime.now(UTC) + timedelta(seconds=most + 1)


def test_an_infinite_block_already_stored_is_never_waited_on(env):
    rate_limit.client().hset("mcmp:rl:website:acct:acct-3", "account", "inf")
    admission = rate_limit.admit("website", "acct-3", "d1", per_second=5, app_per_second=5)
    assert admission.at is None


# --- an uncertain delivery ends after N lookups, saying what to check -------------------------------
def _uncertain(post, lookups: int):
    taken = take(post)
    delivery_states.deliveries().update_one(
        {"_id": taken.id},
        {"$set": {"leaseUntil": now() - timedelta(seconds=1), "needsReconcile": True, "lookups": lookups}},
    )
    return str(taken.id)


def test_an_uncertain_delivery_whose_lookups_never_answer_fails_after_n_with_its_reason(website, make_post):
    n = get_settings().max_reconcile_lookups
    post = make_post(website, ["website"])
    delivery_id = _uncertain(post, lookups=0)
    assert pipeline.publish_delivery(delivery_id) is pipeline.Outcome.RETRY  # the webhook cannot be reached
    doc = delivery_states.deliveries().find_one({"_id": taken_id(delivery_id)})
    assert doc["state"] == DeliveryState.PENDING.value and doc["needsReconcile"] and doc["lookups"] == 1

    other = make_post(website, ["website"])
    last = _uncertain(other, lookups=n - 1)
    assert pipeline.publish_delivery(last) is pipeline.Outcome.FAILED
    doc = delivery_states.deliveries().find_one({"_id": taken_id(last)})
    assert doc["state"] == DeliveryState.FAILED.value and doc["lookups"] == n
    assert doc["needsReconcile"], "a retry by an operator must look the post up again, never post blind"
    error = doc["lastError"]
    assert f"{n} lookups could not confirm" in error and f"/v1/posts/{other['_id']}/retry" in error
    assert "Check website for a post of this delivery" in error


def taken_id(delivery_id: str):
    from bson import ObjectId

    return ObjectId(delivery_id)


def test_the_apis_retry_checks_run_under_the_same_deadline(website, make_post, media_host, monkeypatch):
    from mcmp.config import reset_settings
    from mcmp.worker import services

    monkeypatch.setenv("MCMP_PREFLIGHT_DEADLINE_SECONDS", "1.5")
    reset_settings()
    post = make_post(
        website, ["website"], assetUrls=[media_host.image(f"api{i}.jpg", delay=20) for i in range(3)]
    )
    started = time.monotonic()
    services.check_publishable(str(post["_id"]), {}, ["website"])  # unknown facts refuse nothing
    assert time.monotonic() - started < 3.0, "an API thread waited on a slow media host past the deadline"
