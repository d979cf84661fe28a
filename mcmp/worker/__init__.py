"""The worker: Celery app and thin tasks over plain functions grouped by concern.

``publishing`` (one delivery end to end), ``scheduling`` (dispatcher, maintenance, posting
windows), ``accounts`` (tokens), ``readiness`` (future posts checked ahead), ``analytics``
(snapshots, backfills). ``services`` is the public surface other layers (the admin API) may
call; the rest is private to the worker.
"""
