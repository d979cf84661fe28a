"""Readiness: every future post checked ahead by the publish path's own preflight steps.

A post that is ``approved`` or ``scheduled`` for later (or ``queue: true``) is checked whenever
it, its account, its campaign or its client changes, and again at a fixed lead time before it
is due; the verdict goes on the post (``mcmpReadiness``) where the frontend reads it. Nothing
here publishes, refreshes a token or calls a platform: the steps run with a post's due time as
"now" and with account credentials that carry no secret. Runs on its own Celery queue
(``readiness``) so it never takes a publishing worker's time. May use ``publishing`` (preflight
steps, validation), ``scheduling`` (posting windows), ``accounts``, models, connectors, config.
"""
