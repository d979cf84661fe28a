"""Graph insights of published posts, mapped to the seed's metric names (both Graph connectors)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mcmp.connectors.errors import (
    PermanentError,
)
from mcmp.connectors.graph.classify import GraphNotFound
from mcmp.connectors.graph.client import GraphClient
from mcmp.connectors.types import Credentials

with warnings.catch_warnings():  # facebook-sdk 3.1.0 has an invalid escape in a regex literal
    warnings.simplefilter("ignore")


def _metric_value(entry: Mapping[str, Any]) -> int | None:
    values = entry.get("values") or []
    if not values or not isinstance(values[-1], dict):
        return None
    value = values[-1].get("value")
    if isinstance(value, dict):  # breakdown metrics: the total
        return int(sum(v for v in value.values() if isinstance(v, int | float)))
    return int(value) if isinstance(value, int | float) else None


class InsightsReader:
    """``GET /{object}/insights?metric=…`` mapped to seed names, tolerant of rejected metrics.

    Graph fails the whole call when one metric is invalid or deprecated, so on such an error the
    metrics are asked one by one; the rejected ones are remembered (per process) and skipped.
    """

    def __init__(self, client: GraphClient, metrics: Mapping[str, str]) -> None:
        self.client = client
        self.metrics = dict(metrics)
        self.rejected: set[str] = set()
        self._lock = threading.Lock()

    def relative_url(self, object_id: str) -> str | None:
        """The insights path for a batch item, asking only metrics not known to be rejected."""
        with self._lock:
            names = [name for name in self.metrics.values() if name not in self.rejected]
        return f"{object_id}/insights?metric={','.join(names)}" if names else None

    def parse(self, data: list[Any]) -> dict[str, int]:
        """Seed-named metrics from an insights ``data`` list (absent when not reported)."""
        by_name = {str(e.get("name")): e for e in data if isinstance(e, dict)}
        out = {}
        for seed, name in self.metrics.items():
            value = _metric_value(by_name[name]) if name in by_name else None
            if value is not None:
                out[seed] = value
        return out

    def read(self, creds: Credentials, object_id: str) -> dict[str, int]:
        with self._lock:
            wanted = {seed: name for seed, name in self.metrics.items() if name not in self.rejected}
        if not wanted:
            return {}
        try:
            data = self._call(creds, object_id, list(wanted.values()))
        except GraphNotFound:
            raise
        except PermanentError:
            data = []
            for name in wanted.values():
                try:
                    data += self._call(creds, object_id, [name])
                except GraphNotFound:
                    raise
                except PermanentError as exc:
                    if "metric" in exc.message.lower():
                        with self._lock:
                            self.rejected.add(name)
        by_name = {str(e.get("name")): e for e in data if isinstance(e, dict)}
        out = {}
        for seed, name in wanted.items():
            value = _metric_value(by_name[name]) if name in by_name else None
            if value is not None:
                out[seed] = value
        return out

    def _call(self, creds: Credentials, object_id: str, names: list[str]) -> list[dict[str, Any]]:
        result = self.client.call(
            creds.access_token,
            f"{object_id}/insights",
            account_id=creds.account_id,
            args={"metric": ",".join(names)},
        )
        return list(result.get("data") or [])


def parse_graph_time(value: Any) -> datetime | None:
    """A Graph timestamp (``2026-11-25T04:00:00+0000``) as an aware UTC datetime, or None."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    except ValueError:
        return None
