"""Graph's usage headers, read on every response and forwarded to the shared rate limiter.

``X-App-Usage`` (scope ``app``), ``X-Page-Usage`` and ``X-Business-Use-Case-Usage`` (scope
``account``: the Page / IG user) go to ``mcmp.connectors.usage.report``; ``used_pct`` is the
largest percentage a header carries, ``retry_after`` the ``estimated_time_to_regain_access`` when
Graph gives one (also the wait of a throttling error, :mod:`mcmp.connectors.graph.classify`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

from mcmp.connectors.usage import UsageReport, report

with warnings.catch_warnings():  # facebook-sdk 3.1.0 has an invalid escape in a regex literal
    warnings.simplefilter("ignore")


# --- usage headers ---------------------------------------------------------------------------------
def _json_header(headers: Mapping[str, str], name: str) -> Any:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _max_pct(entry: Mapping[str, Any]) -> float | None:
    values = [
        float(v)
        for k, v in entry.items()
        if k in ("call_count", "total_cputime", "total_time", "acc_id_util_pct")
        and isinstance(v, int | float)
    ]
    return max(values) if values else None


def _regain_minutes(entry: Mapping[str, Any]) -> float:
    value = entry.get("estimated_time_to_regain_access")
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def buc_regain_seconds(headers: Mapping[str, str]) -> float | None:
    """Largest ``estimated_time_to_regain_access`` (minutes) in the BUC header, in seconds."""
    data = _json_header(headers, "X-Business-Use-Case-Usage")
    if not isinstance(data, dict):
        return None
    minutes = [
        _regain_minutes(e)
        for entries in data.values()
        if isinstance(entries, list)
        for e in entries
        if isinstance(e, dict)
    ]
    best = max(minutes, default=0.0)
    return best * 60.0 if best > 0 else None


def page_regain_seconds(headers: Mapping[str, str]) -> float | None:
    """``estimated_time_to_regain_access`` (minutes) of ``X-Page-Usage``, in seconds."""
    data = _json_header(headers, "X-Page-Usage")
    minutes = _regain_minutes(data) if isinstance(data, dict) else 0.0
    return minutes * 60.0 if minutes > 0 else None


def regain_seconds(headers: Mapping[str, str]) -> float | None:
    """How long Graph says the budget stays spent (BUC or Page usage header), when it says so."""
    found = [s for s in (buc_regain_seconds(headers), page_regain_seconds(headers)) if s]
    return max(found) if found else None


def report_usage(platform: str, account_id: str | None, headers: Mapping[str, str]) -> None:
    """Forward ``X-App-Usage`` (scope app), ``X-Page-Usage`` and ``X-Business-Use-Case-Usage``
    (scope account: the Page / IG user), each the largest percentage it carries, with the regain
    time when Graph gives one."""
    app = _json_header(headers, "X-App-Usage")
    if isinstance(app, dict):
        pct = _max_pct(app)
        if pct is not None:
            report(UsageReport(platform, "app", None, used_pct=pct))
    pcts: list[float] = []
    buc = _json_header(headers, "X-Business-Use-Case-Usage")
    if isinstance(buc, dict):
        pcts += [
            p
            for entries in buc.values()
            if isinstance(entries, list)
            for e in entries
            if isinstance(e, dict) and (p := _max_pct(e)) is not None
        ]
    page = _json_header(headers, "X-Page-Usage")
    if isinstance(page, dict) and (p := _max_pct(page)) is not None:
        pcts.append(p)
    if pcts:
        report(
            UsageReport(
                platform, "account", account_id, used_pct=max(pcts), retry_after=regain_seconds(headers)
            )
        )
