"""Scheduling: turning due posts into deliveries and handing them to Celery, maintenance sweeps,
and posting-window queues. Never calls a platform. May use ``mcmp.worker.publishing``'s state
machine and post status, models and config.
"""
