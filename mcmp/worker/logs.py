"""Structured JSON logs with delivery context and secret redaction, for every process."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from mcmp.worker.redaction import RedactingFormatter

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mcmp_log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ids (post, delivery, platform, attempt) to every log record inside the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so that configuring again replaces it instead of adding a second one."""


def configure(level: str = "INFO", json_output: bool = True) -> None:
    """Install one handler on the root logger; idempotent."""
    root = logging.getLogger()
    for installed in list(root.handlers):
        if isinstance(installed, _Handler):
            root.removeHandler(installed)
    handler = _Handler(sys.__stderr__)  # Celery swaps sys.stderr for a logging proxy
    formatter: logging.Formatter
    if json_output:
        formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=False)
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(RedactingFormatter(formatter))  # every rendering path sees a redacted copy
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "pymongo", "kombu", "amqp", "googleapiclient.discovery_cache"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
