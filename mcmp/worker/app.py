"""The Celery application: Redis broker by default (RabbitMQ via ``MCMP_BROKER_URL``).

Reliability settings (README, invariants 1 and 2): late acknowledgement and rejection on worker loss so a killed
worker's task is redelivered; a small prefetch; explicit queues so analytics never delay
publishing; time limits per task; JSON only (tasks carry ids, never secrets).

Task events are on (Flower is the operator's UI). Beat's periodic tasks send none (see
:mod:`mcmp.worker.tasks` and ``mcmp beat``), so the task list shows the work, not the clockwork.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown

from mcmp.config import get_settings
from mcmp.worker.broker import transport_for


def create_app() -> Celery:
    settings = get_settings()
    app = Celery("mcmp", broker=settings.celery_broker_url, include=["mcmp.worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        task_default_queue="publish",
        task_routes={
            "mcmp.publish_delivery": {"queue": "publish"},
            "mcmp.retry_post": {"queue": "maintenance"},
            "mcmp.publish_batch": {"queue": "publish"},
            "mcmp.analytics.*": {"queue": "analytics"},
            "mcmp.maintenance.*": {"queue": "maintenance"},
            "mcmp.tokens.*": {"queue": "maintenance"},
            "mcmp.readiness.*": {"queue": "readiness"},  # its own workers: never a publisher's time
        },
        task_time_limit=settings.task_time_limit_seconds,
        task_soft_time_limit=max(1, settings.task_time_limit_seconds - 30),
        # kombu's Redis transport, closable after a lost connection (a Redis restart) so the
        # worker reconnects instead of exiting (mcmp.worker.broker)
        broker_transport=transport_for(settings.celery_broker_url),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        enable_utc=True,
        timezone="UTC",
        beat_schedule={
            # The dispatcher reaps on its own thread every reap interval; beat's copy is the
            # fallback and need not fill the task list faster than every 5 s.
            "mcmp.maintenance.reap": {
                "task": "mcmp.maintenance.reap",
                "schedule": max(5.0, settings.reap_interval_seconds),
            },
            "mcmp.maintenance.queue_posts": {"task": "mcmp.maintenance.queue_posts", "schedule": 30.0},
            "mcmp.analytics.plan": {
                "task": "mcmp.analytics.plan",
                "schedule": settings.analytics_plan_interval_seconds,
            },
            "mcmp.readiness.pass": {
                "task": "mcmp.readiness.pass",
                "schedule": settings.readiness_interval_seconds,
                # passes a busy readiness worker could not start in time are dropped, not piled up
                "options": {"expires": max(5.0, 5 * settings.readiness_interval_seconds)},
            },
            "mcmp.tokens.refresh_due": {
                "task": "mcmp.tokens.refresh_due",
                "schedule": settings.token_refresh_interval_seconds,
            },
        },
    )
    return app


app = create_app()


@worker_process_init.connect
def _init_child(**_: object) -> None:
    """Each prefork child connects after the fork (pymongo clients are not fork-safe)."""
    from mcmp.worker.runtime import bootstrap, warm_connectors

    bootstrap(wait=True, schema=False)
    warm_connectors()


@worker_ready.connect
def _ready(**_: object) -> None:
    """The consumer process holds the prefetched messages: its death must count as their loss."""
    import logging
    import threading

    from mcmp.worker import liveness
    from mcmp.worker.runtime import warm_connectors

    liveness.announce()
    threading.Thread(target=warm_connectors, name="warm-connectors", daemon=True).start()
    logging.getLogger(__name__).info("worker ready")


# Attempts still running after their batch task returned (runners.py) end before the process does,
# as a task would in Celery's warm shutdown; one that cannot is handed on by its lease.
SHUTDOWN_WAIT_SECONDS = 30.0


@worker_process_shutdown.connect
@worker_shutdown.connect
def _finish_attempts(**_: object) -> None:
    from mcmp.worker.publishing import runners

    left = runners.finish_running(SHUTDOWN_WAIT_SECONDS)
    if left:
        import logging

        logging.getLogger(__name__).warning(
            "%d attempts still running at shutdown; their leases hand them on", left
        )
