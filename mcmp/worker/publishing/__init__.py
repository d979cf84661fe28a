"""Publishing one delivery: the state machine, preflight, the platform call, the post's status.

Owns ``deliveries`` (only ``delivery_states`` writes a delivery's state) and the worker's
updates to ``posts``. May use models, connectors, config, ``mcmp.worker.accounts`` and the
analytics slot schedule (a published delivery's first snapshot time).
"""
