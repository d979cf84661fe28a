"""``/metrics`` carries the fleet-wide gauges the alert rules read, with low-cardinality labels."""

from __future__ import annotations

import re

from tests.integration.worker.test_ops_status import Troubles, troubles  # noqa: F401 - the fixture


def _samples(text: str, name: str) -> dict[str, float]:
    return {
        m.group(1) or "": float(m.group(2))
        for m in re.finditer(rf"^{name}(?:\{{(.*)\}})? (\S+)$", text, re.M)
    }


def test_fleet_gauges_describe_the_troubles(api, troubles: Troubles) -> None:  # noqa: F811
    text = api.get("/metrics").text
    assert _samples(text, "mcmp_accounts_expired_with_scheduled_posts")['platform="linkedin"'] == 1.0
    assert _samples(text, "mcmp_accounts_expired_with_scheduled_posts")['platform="facebook"'] == 0.0
    assert _samples(text, "mcmp_deliveries_uncertain") == {
        'platform="facebook"': 1.0,
        'platform="website"': 1.0,
    }
    assert 1190 <= _samples(text, "mcmp_delivery_oldest_uncertain_age_seconds")['platform="facebook"'] <= 1300
    assert _samples(text, "mcmp_analytics_snapshots_due") == {'platform="instagram"': 1.0}
    assert _samples(text, "mcmp_accounts")['platform="linkedin",status="expired"'] == 1.0
    throttled = _samples(text, "mcmp_throttled_seconds")
    assert (
        list(throttled) == ['platform="facebook",scope="account"']
        and 2090 <= throttled[list(throttled)[0]] <= 2200
    )
    assert list(_samples(text, "mcmp_worker_processes_live")) == [""]
    assert _samples(text, "mcmp_dispatcher_last_tick_timestamp_seconds") == {"": 0.0}
    # never a tenant, account or post id as a label
    assert "acme" not in text and "beta" not in text and str(troubles.throttled["_id"]) not in text
