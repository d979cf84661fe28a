"""Analytics: decaying snapshot slots, per-account batches within rate budgets, backfills.

Owns ``analyticsrecords``, ``analyticsbackfills`` and the analytics fields of deliveries.
May use models, connectors, config, ``mcmp.worker.accounts`` and the shared rate limiter.
"""
