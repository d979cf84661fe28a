"""The worker's broker connection when Redis goes away while it holds messages.

A Redis of the test's own, stopped for real. Celery's consumer, on a lost connection, collects it
and then closes it (``Consumer.on_connection_error_after_connected``), and the tasks still running
acknowledge their messages on it when they end; an exception other than a connection error out
of any of these ends the worker process instead of reconnecting it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from mcmp.devstack import PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _consume(connection: Connection) -> list[Any]:
    """Consume like a worker: the publish queue (messages acknowledged late, after their task)
    and its remote-control mailbox (an auto-delete fanout queue), until nothing more comes."""
    publish = Queue("publish", Exchange("publish"), "publish")
    with connection.Producer() as producer:
        for i in range(3):
            producer.publish({"i": i}, exchange=publish.exchange, routing_key="publish", declare=[publish])
    mailbox = Queue("worker-1.pidbox", Exchange("pidbox", type="fanout"), auto_delete=True)
    held: list[Any] = []
    channel = connection.default_channel
    channel.basic_qos(0, 16, False)
    connection.Consumer(
        [publish, mailbox], callbacks=[lambda _, m: held.append(m)], channel=channel
    ).consume()
    while True:
        try:
            connection.drain_events(timeout=0.5)
        except TimeoutError:
            return held  # and waiting for more, as an idle consumer does


def test_a_worker_holding_unacknowledged_messages_outlives_redis_going_away(env, private_redis):
    from mcmp.worker.app import create_app

    app = create_app()  # configured as the worker's (imported here: it reads this test's settings)
    connection = app.connection_for_read(private_redis.url)
    held = _consume(connection)
    assert len(held) == 3 and not any(m.acknowledged for m in held)  # their tasks are still running
    handled = connection.connection_errors  # what Celery's consumer logs and carries on after

    private_redis.stop()
    # what Celery's consumer does on a lost connection: anything raised here but a connection
    # error ends the worker process
    connection.collect(socket_timeout=1)
    connection.close()
    for message in held:  # a task that was running ends and acknowledges its message, as Celery does
        message.ack_log_error(logging.getLogger(__name__), handled)

    private_redis.start()  # back (empty, as after a restart): a new connection consumes again
    assert len(_consume(app.connection_for_read(private_redis.url))) == 3
