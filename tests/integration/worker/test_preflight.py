"""Each preflight step alone: what it lets through and what it decides instead."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from mcmp.config import reset_settings
from mcmp.models import ErrorClass
from mcmp.worker import rate_limit
from mcmp.worker.publishing import preflight
from mcmp.worker.publishing.preflight import Cancel, Defer, Fail, Release, WaitForAuth
from tests.integration.worker.helpers import hours_ago, now, take
from tests.integration.worker.helpers import preflight as make_preflight


@pytest.fixture
def website(make_client, make_account):
    client = make_client()
    account = make_account(
        client,
        "website",
        accessToken="dev-webhook-secret",
        metadata={"webhookUrl": "http://127.0.0.1:9/hooks/site", "mode": "webhook"},
    )
    return client, account


def test_steps_run_in_the_documented_order():
    names = [step.__name__ for step in preflight.STEPS]
    assert names == [
        "post_still_scheduled",
        "not_too_late",
        "inside_campaign",
        "account",
        "token",
        "content",
        "rate_limit_block",
    ]


# --- post still scheduled -------------------------------------------------------------------


def test_a_deleted_post_cancels(website, make_post, db):
    post = make_post(website[0], ["website"])
    taken = take(post)
    db.posts.delete_one({"_id": post["_id"]})
    assert preflight.post_still_scheduled(make_preflight(taken, None)) == Cancel("post was deleted")


def test_a_post_taken_back_to_approved_cancels(website, make_post):
    post = make_post(website[0], ["website"], status="approved")
    decision = preflight.post_still_scheduled(make_preflight(take(post), post))
    assert isinstance(decision, Cancel) and "'approved'" in decision.reason


def test_a_post_moved_later_is_released_until_its_new_time(website, make_post):
    post = make_post(website[0], ["website"])
    later = now() + timedelta(hours=2)
    moved = {**post, "scheduleTime": later}
    decision = preflight.post_still_scheduled(make_preflight(take(post), moved))
    assert isinstance(decision, Release) and abs((decision.until - later).total_seconds()) < 0.01


def test_a_scheduled_post_goes_on(website, make_post):
    post = make_post(website[0], ["website"])
    assert preflight.post_still_scheduled(make_preflight(take(post), post)) is None


# --- max lateness ---------------------------------------------------------------------------


def test_a_post_first_picked_up_seven_hours_late_fails_saying_how_to_publish_anyway(website, make_post):
    post = make_post(website[0], ["website"], when=hours_ago(7))
    decision = preflight.not_too_late(make_preflight(take(post), post))
    assert isinstance(decision, Fail), decision
    assert "7 h" in decision.reason and "late" in decision.reason
    assert "MCMP_MAX_LATENESS is 6 h" in decision.reason
    assert f"POST /v1/posts/{post['_id']}/retry" in decision.reason and "reschedule" in decision.reason


def test_a_backlog_within_the_limit_still_goes_out(website, make_post):
    post = make_post(website[0], ["website"], when=hours_ago(5.5))
    assert preflight.not_too_late(make_preflight(take(post), post)) is None


def test_only_the_first_pickup_is_judged(website, make_post):
    post = make_post(website[0], ["website"], when=hours_ago(7))
    taken = replace(take(post), first_pickup=False)  # started in time, retried through an outage
    assert preflight.not_too_late(make_preflight(taken, post)) is None


def test_a_retry_counts_lateness_from_the_retry(website, make_post):
    post = make_post(website[0], ["website"], when=hours_ago(30))
    taken = replace(take(post), late_from=now() - timedelta(minutes=1))
    assert preflight.not_too_late(make_preflight(taken, post)) is None


def test_zero_turns_the_limit_off(website, make_post, monkeypatch):
    monkeypatch.setenv("MCMP_MAX_LATENESS", "0")
    reset_settings()
    post = make_post(website[0], ["website"], when=hours_ago(48))
    assert preflight.not_too_late(make_preflight(take(post), post)) is None


def test_the_limit_is_a_duration(website, make_post, monkeypatch):
    monkeypatch.setenv("MCMP_MAX_LATENESS", "30m")
    reset_settings()
    post = make_post(website[0], ["website"], when=hours_ago(1))
    decision = preflight.not_too_late(make_preflight(take(post), post))
    assert isinstance(decision, Fail) and "MCMP_MAX_LATENESS is 30 min" in decision.reason


# --- campaign bounds ------------------------------------------------------------------------


def _campaign(db, client, **dates):
    from bson import ObjectId

    doc = {"_id": ObjectId(), "clientId": str(client["_id"]), "name": "Spring", **dates}
    db.campaigns.insert_one(doc)
    return str(doc["_id"])


def test_an_ended_campaign_fails_the_delivery(website, make_post, db):
    client = website[0]
    campaign = _campaign(db, client, startDate=hours_ago(48), endDate=hours_ago(1))
    post = make_post(client, ["website"], campaignId=campaign)
    decision = preflight.inside_campaign(make_preflight(take(post), post))
    assert isinstance(decision, Fail) and "'Spring' ended" in decision.reason


def test_a_campaign_not_started_holds_the_delivery(website, make_post, db):
    client = website[0]
    campaign = _campaign(db, client, startDate=now() + timedelta(minutes=30))
    post = make_post(client, ["website"], campaignId=campaign)
    decision = preflight.inside_campaign(make_preflight(take(post), post))
    assert isinstance(decision, Release) and decision.note and "starts" in decision.note


def test_an_uncertain_delivery_is_reconciled_whatever_the_campaign(website, make_post, db):
    client = website[0]
    campaign = _campaign(db, client, endDate=hours_ago(1))
    post = make_post(client, ["website"], campaignId=campaign)
    taken = replace(take(post), uncertain=True)
    assert preflight.inside_campaign(make_preflight(taken, post)) is None


# --- account and token ----------------------------------------------------------------------


def test_an_unknown_platform_fails(website, make_post):
    post = make_post(website[0], ["myspace"])
    decision = preflight.account(make_preflight(take(post, "myspace"), post))
    assert isinstance(decision, Fail) and "myspace" in decision.reason


def test_no_account_fails_naming_the_platform(make_client, make_post):
    client = make_client()
    post = make_post(client, ["website"])
    decision = preflight.account(make_preflight(take(post), post))
    assert decision == Fail("no IntegrationAccount for website is connected to this client")


def test_an_expired_account_waits_for_reauthorisation(make_client, make_account, make_post):
    client = make_client()
    make_account(client, "website", status="expired", metadata={"authError": "password changed"})
    post = make_post(client, ["website"])
    decision = preflight.account(make_preflight(take(post), post))
    assert isinstance(decision, WaitForAuth) and decision.reason == "password changed"


def test_a_connected_account_goes_on_and_its_token_is_read(website, make_post):
    post = make_post(website[0], ["website"])
    check = make_preflight(take(post), post)
    assert preflight.account(check) is None and check.account is not None
    assert preflight.token(check) is None
    assert check.credentials is not None and check.credentials.access_token == "dev-webhook-secret"


# --- content --------------------------------------------------------------------------------


def test_an_emptied_body_fails_naming_the_field(website, make_post):
    post = make_post(website[0], ["website"])
    check = make_preflight(take(post), {**post, "body": "  "})
    assert preflight.account(check) is None and preflight.token(check) is None
    decision = preflight.content(check)
    assert isinstance(decision, Fail) and decision.reason.startswith("body: must not be empty")
    assert decision.error_class is ErrorClass.PERMANENT


def test_valid_content_is_built_for_the_platform(website, make_post):
    post = make_post(website[0], ["website"], body="Spring is here")
    check = make_preflight(take(post), post)
    preflight.account(check)
    preflight.token(check)
    assert preflight.content(check) is None
    assert check.content is not None and check.content.body == "Spring is here"


# --- rate-limit block -----------------------------------------------------------------------


def test_a_blocked_account_defers_without_a_call(website, make_post):
    client, account = website
    post = make_post(client, ["website"])
    check = make_preflight(take(post), post)
    preflight.account(check)
    assert preflight.rate_limit_block(check) is None
    rate_limit.block("website", "account", str(account["_id"]), 30)
    decision = preflight.rate_limit_block(check)
    assert isinstance(decision, Defer) and decision.error_class is ErrorClass.RATE_LIMITED
    assert timedelta(seconds=25) < decision.until - now() <= timedelta(seconds=31)


def test_run_stops_at_the_first_decision(website, make_post, db):
    post = make_post(website[0], ["website"], when=hours_ago(8), body="")
    decision = preflight.run(make_preflight(take(post), post))
    assert isinstance(decision, Fail) and "late" in decision.reason  # lateness comes before content
