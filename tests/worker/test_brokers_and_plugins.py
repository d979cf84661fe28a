"""RabbitMQ as broker, and a third-party connector found only through its entry point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points

import pytest

from mcmp.devstack import wait_until

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def rabbit_url() -> str:
    import kombu

    try:
        with kombu.Connection(RABBIT_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
            for queue in ("publish", "analytics", "maintenance"):  # leftovers of an earlier run
                channel = conn.channel()
                try:
                    channel.queue_purge(queue)
                except Exception:  # the queue does not exist yet; the broker closed this channel
                    pass
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is required at {RABBIT_URL}: {type(exc).__name__} (start: rabbitmq-server -detached)"
        )
    return RABBIT_URL


def test_rabbitmq_broker_publishes_like_redis(
    env,
    db,
    rabbit_url,
    make_client,
    make_webhook_account,
    make_post,
    webhook_sim,
    start_worker,
    start_dispatcher,
):
    rabbit_env = dict(env, MCMP_BROKER_URL=rabbit_url)
    client = make_client()
    make_webhook_account(client)
    start_worker(rabbit_env)
    start_dispatcher(rabbit_env)
    posts = [make_post(client, ["website"], when=datetime.now(UTC) + timedelta(seconds=2)) for _ in range(3)]
    wait_until(lambda: all(db.posts.find_one({"_id": p["_id"]})["status"] == "published" for p in posts), 60)
    assert webhook_sim.state()["count"] == 3 and webhook_sim.state()["duplicates"] == 0


def test_third_party_connector_publishes_through_its_entry_point_only(
    env, db, make_client, make_account, make_post, webhook_sim, start_worker, start_dispatcher
):
    plugin = [ep for ep in entry_points(group="mcmp.connectors") if ep.name == "example-echo"]
    assert plugin and plugin[0].value.startswith("mcmp_example_connector"), (
        "installed from examples/mcmp_example_connector only"
    )
    client = make_client()
    make_account(
        client,
        "example-echo",
        accessToken="dev-webhook-secret",
        metadata={"webhookUrl": f"{webhook_sim.base_url}/hooks/echo"},
    )
    start_worker(env)
    start_dispatcher(env)
    post = make_post(client, ["example-echo"], when=datetime.now(UTC) + timedelta(seconds=1))
    wait_until(lambda: db.posts.find_one({"_id": post["_id"]})["status"] == "published", 30)
    done = db.posts.find_one({"_id": post["_id"]})
    assert done["platformPostIds"]["example-echo"] == webhook_sim.state()["posts"][0]["id"]
    assert done["publishedAt"]["example-echo"]
