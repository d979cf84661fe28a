"""MCMP Publisher: scheduled posts go out on time, exactly once, on every platform.

Layers, bottom to top (checked by ``lint-imports``, contracts in pyproject.toml):

- ``mcmp.errors``      ``PublisherError``, the root of every exception of ours (the tree is drawn there)
- ``mcmp.config``      one typed ``Settings`` object, read from ``MCMP_*`` variables
- ``mcmp.models``      the seed's documents (shared with the frontend) plus ``Delivery``
- ``mcmp.connectors``  one subpackage per platform behind a small Protocol; the public surface
                       a third-party connector imports
- ``mcmp.simulators``  HTTP twins of every platform (dev, tests, benchmarks)
- ``mcmp.worker``      Celery app and tasks; publishing, scheduling, accounts, readiness, analytics
- ``mcmp.api``         the admin API, on the worker's public services only
- ``mcmp.devstack``    starters for embedded MongoDB, Redis, simulators and child processes
- ``mcmp.cli``         the ``mcmp`` command and ``mcmp dev``: the composition root
"""
