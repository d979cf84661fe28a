"""The shared rate limiter against the real Redis: usage headers, escalating blocks, spread slots."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from mcmp.connectors.graph import classify, regain_seconds, report_usage
from mcmp.connectors.usage import UsageReport
from mcmp.worker import rate_limit

FB = "facebook"
PAGE = "acct-page-1"


@pytest.fixture(autouse=True)
def _redis(env: dict[str, str]) -> None:
    """``env`` points the settings at the test Redis DB and flushes it."""


def _graph_answer(code: int, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = 400
    response._content = json.dumps({"error": {"code": code, "message": "limit"}}).encode()
    response.headers.update({"Content-Type": "application/json", **headers})
    return response


def _admit(delivery: str, per_second: float = 2.0) -> rate_limit.Admission:
    return rate_limit.admit(FB, PAGE, delivery, per_second=per_second, app_per_second=100.0)


# --- headers ------------------------------------------------------------------------------------
def test_page_usage_and_buc_regain_times_are_read_in_minutes() -> None:
    page = {"X-Page-Usage": json.dumps({"call_count": 100, "estimated_time_to_regain_access": 3})}
    assert regain_seconds(page) == 180
    buc = {
        "X-Business-Use-Case-Usage": json.dumps(
            {"1": [{"type": "pages", "estimated_time_to_regain_access": 5}]}
        )
    }
    assert regain_seconds({**page, **buc}) == 300
    assert regain_seconds({"X-Page-Usage": json.dumps({"call_count": 40})}) is None


def test_code_32_with_a_regain_time_is_hinted_and_without_one_is_not() -> None:
    page = {"X-Page-Usage": json.dumps({"call_count": 100, "estimated_time_to_regain_access": 2})}
    hinted = classify(_graph_answer(32, page), platform=FB, write=True, account_id=PAGE)
    assert hinted.hinted and hinted.retry_after == 120 and hinted.scope == "account"  # type: ignore[attr-defined]
    bare = classify(_graph_answer(32, {}), platform=FB, write=True, account_id=PAGE)
    assert not bare.hinted and bare.scope == "account"  # type: ignore[attr-defined]
    assert classify(_graph_answer(4, {}), platform=FB, write=True, account_id=PAGE).scope == "app"  # type: ignore[attr-defined]
    assert classify(_graph_answer(17, {}), platform=FB, write=True, account_id=PAGE).scope == "user"  # type: ignore[attr-defined]


def test_a_page_usage_regain_time_blocks_the_page_for_that_long() -> None:
    rate_limit.install()
    report_usage(
        FB, PAGE, {"X-Page-Usage": json.dumps({"call_count": 100, "estimated_time_to_regain_access": 2})}
    )
    until = rate_limit.blocked_until(FB, PAGE)
    assert until is not None and 115 < until.timestamp() - time.time() <= 120
    assert rate_limit.blocked_until(FB, "another-page") is None


def test_high_usage_paces_instead_of_bursting() -> None:
    assert _admit("d0").at is None  # nothing said: go, no pacing
    rate_limit.observe(UsageReport(FB, "account", PAGE, used_pct=93.0))
    waits = [_admit(f"d{i}", per_second=2.0) for i in range(1, 6)]
    # one slot every 0.5 s: the first go at once or within the short wait, the later ones deferred
    assert [w.deferred for w in waits] == [False, False, False, True, True]
    times = [w.at.timestamp() for w in waits if w.at is not None]
    assert all(0.45 < b - a < 0.55 for a, b in zip(times, times[1:], strict=False))


def test_one_round_trip_admits_each_account_on_its_own_timeline() -> None:
    rate_limit.observe(UsageReport(FB, "account", PAGE, used_pct=93.0))  # this Page is paced
    found = rate_limit.admit_accounts(
        [
            rate_limit.AccountRequest(FB, PAGE, ["p1", "p2", "p3"], 2.0, 100.0),
            rate_limit.AccountRequest(FB, "another-page", ["q1", "q2"], 2.0, 100.0),
        ]
    )
    assert found["q1"].at is None and found["q2"].at is None  # not paced: go now
    times = [found[d].at.timestamp() for d in ("p1", "p2", "p3") if found[d].at is not None]
    assert len(times) >= 2 and all(0.45 < b - a < 0.55 for a, b in zip(times, times[1:], strict=False))


# --- escalation -----------------------------------------------------------------------------------
def _expire_block(scope: str = "account", account: str | None = PAGE) -> None:
    """End the current block now (as time would), keeping the escalation count."""
    client = rate_limit.client()
    client.delete(rate_limit._key(FB, scope, account))


def test_a_throttle_without_a_hint_starts_short_and_grows_per_scope() -> None:
    first = rate_limit.throttled(FB, "account", PAGE, None)
    assert first == rate_limit.ESCALATE_FIRST_SECONDS
    # calls that were in flight together are one episode: no escalation while blocked
    again = rate_limit.throttled(FB, "account", PAGE, None)
    assert again <= first
    _expire_block()
    assert rate_limit.throttled(FB, "account", PAGE, None) == 2 * first
    _expire_block()
    assert rate_limit.throttled(FB, "account", PAGE, None) == 4 * first
    # the app's budget and another Page escalate on their own
    assert rate_limit.throttled(FB, "app", None, None) == first
    assert rate_limit.throttled(FB, "account", "another-page", None) == first
    for _ in range(6):
        _expire_block()
        last = rate_limit.throttled(FB, "account", PAGE, None)
    assert last == rate_limit.ESCALATE_MAX_SECONDS


def test_escalation_starts_over_after_a_quiet_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "ESCALATE_QUIET_SECONDS", 1.0)
    monkeypatch.setattr(rate_limit, "ESCALATE_FIRST_SECONDS", 0.2)
    assert rate_limit.throttled(FB, "account", PAGE, None) == 0.2
    _expire_block()
    assert rate_limit.throttled(FB, "account", PAGE, None) == 0.4
    time.sleep(2.6)  # block + quiet period, the strike count expires (TTL in whole seconds)
    assert rate_limit.throttled(FB, "account", PAGE, None) == 0.2


def test_a_hint_blocks_for_exactly_the_hint() -> None:
    assert rate_limit.throttled(FB, "account", PAGE, 42.0) == 42.0
    until = rate_limit.blocked_until(FB, PAGE)
    assert until is not None and 40 < until.timestamp() - time.time() <= 42


# --- spread -----------------------------------------------------------------------------------------
def test_deferred_deliveries_come_due_spread_after_the_block_and_keep_their_slot() -> None:
    rate_limit.throttled(FB, "account", PAGE, 30.0)
    end = time.time() + 30
    slots: dict[str, Any] = {f"d{i}": _admit(f"d{i}", per_second=5.0) for i in range(50)}
    assert all(s.deferred and s.blocked for s in slots.values())
    times = sorted(s.at.timestamp() for s in slots.values())
    assert end - 1 < times[0] < end + 1
    assert len(set(times)) == 50  # no two at the same instant
    assert all(abs((b - a) - 0.2) < 0.01 for a, b in zip(times, times[1:], strict=False))
    assert 9.7 < times[-1] - times[0] < 9.9  # 50 deliveries at 5/s: a 10 s window
    # coming back early (e.g. re-sent) it gets the same slot, not a new one at the back
    assert _admit("d7", per_second=5.0).at == slots["d7"].at
    # a newer, longer block moves it behind that block
    rate_limit.throttled(FB, "account", PAGE, 120.0)
    moved = _admit("d7", per_second=5.0)
    assert moved.deferred and moved.at is not None and moved.at.timestamp() >= time.time() + 119


def test_a_batch_of_one_account_is_admitted_in_one_call_as_one_by_one() -> None:
    """admit_many spaces a paced account's deliveries exactly as that many admit calls do."""
    rate_limit.observe(UsageReport(FB, "account", PAGE, used_pct=93.0))
    # 2.5/s: slots 0, 0.4, 0.8, 1.2, 1.6 s ahead, none on the 1 s short-wait boundary
    many = rate_limit.admit_many(FB, PAGE, [f"d{i}" for i in range(5)], per_second=2.5, app_per_second=100.0)
    assert [many[f"d{i}"].deferred for i in range(5)] == [False, False, False, True, True]
    times = [many[f"d{i}"].at.timestamp() for i in range(5)]  # type: ignore[union-attr]
    assert all(0.35 < b - a < 0.45 for a, b in zip(times, times[1:], strict=False))
    assert _admit("d4", 2.5).at == many["d4"].at  # a deferred one keeps its reserved slot
    assert _admit("d9", 2.5).at.timestamp() > times[-1]  # type: ignore[union-attr]  # the next goes after them
    assert rate_limit.admit_many(FB, "quiet-page", ["a", "b"], per_second=2.5, app_per_second=100.0) == {
        "a": rate_limit.Admission(None),
        "b": rate_limit.Admission(None),
    }
