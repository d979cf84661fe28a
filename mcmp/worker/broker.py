"""The Redis broker transport: kombu's, with channels that fail as disconnected once their
connection was collected.

When the broker connection is lost (Redis restarted), Celery's consumer collects the connection,
which detaches kombu's transport from it (``transport.client = None``), and reconnects on a new
one. The old channel is still used afterwards: its close restores the messages this worker holds
unacknowledged (``acks_late``: tasks running or prefetched), and each task still running acks
its message on it when it ends. kombu then builds a Redis pool from the detached transport and
raises ``AttributeError``, which Celery does not expect there: the worker process exits instead
of carrying on, and every message it held is lost with it. Here that is a connection error, the
one Celery and kombu handle on these paths (logged, the message left to the broker): Redis still
holds it as unacked if it kept its data, and the dispatcher re-sends what a loss took.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis

TRANSPORT = "mcmp.worker.broker:Transport"


class Channel(kombu_redis.Channel):
    @property
    def pool(self) -> Any:
        self._check_attached()
        return super().pool

    @property
    def async_pool(self) -> Any:
        self._check_attached()
        return super().async_pool

    def _check_attached(self) -> None:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was lost; this channel is closed")


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """This transport for a plain ``redis://`` broker; kombu's own for any other scheme
    (``rediss://`` keeps kombu's TLS defaults, which follow from the scheme's name)."""
    return TRANSPORT if urlsplit(broker_url).scheme == "redis" else None
