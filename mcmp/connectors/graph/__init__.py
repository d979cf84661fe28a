"""Graph API plumbing shared by the ``facebook`` and ``instagram`` connectors.

One job per module: :mod:`.client` (the SDK-driven client, feed scans, batches, token exchange),
:mod:`.classify` (the error table: a Graph answer becomes an error of ``mcmp.connectors.errors``),
:mod:`.usage` (usage headers to the shared rate limiter), :mod:`.insights` (post metrics).
"""

from mcmp.connectors.graph.classify import (
    DEFAULT_IG_QUOTA_BACKOFF,
    GraphNotFound,
    classify,
    container_error,
    redact,
)
from mcmp.connectors.graph.client import (
    BATCH_LIMIT,
    PUBLIC_BASE,
    Classifier,
    GraphClient,
    batch_get,
    exchange_token,
    scan_edge,
)
from mcmp.connectors.graph.insights import InsightsReader, parse_graph_time
from mcmp.connectors.graph.usage import (
    buc_regain_seconds,
    page_regain_seconds,
    regain_seconds,
    report_usage,
)

__all__ = [
    "BATCH_LIMIT",
    "DEFAULT_IG_QUOTA_BACKOFF",
    "PUBLIC_BASE",
    "Classifier",
    "GraphClient",
    "GraphNotFound",
    "InsightsReader",
    "batch_get",
    "buc_regain_seconds",
    "classify",
    "container_error",
    "exchange_token",
    "page_regain_seconds",
    "parse_graph_time",
    "redact",
    "regain_seconds",
    "report_usage",
    "scan_edge",
]
