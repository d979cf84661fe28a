"""Keeps secrets out of logs: every token the process handles is registered and scrubbed.

Registration happens where tokens are decrypted, so the redactor knows the *actual* values, not
only token-shaped patterns; known token shapes (Bearer headers, ``access_token=`` query
parameters) are scrubbed as well for values that never passed through here.

Tenants choose some of these values (a webhook secret, a WordPress password, any token written
through the API), so masking by value is kept precise (docs/tokens.md, "Redaction"):

* only values of at least :data:`MIN_SECRET_LENGTH` characters with at least
  :data:`MIN_BITS_PER_CHAR` bits of Shannon entropy per character, that are neither a sentence of
  plain words nor a URL or an IP address, are masked by value (:func:`maskable`);
* a value is masked only where it stands as a whole token (never inside a longer word), and only
  in a record's variable parts — arguments, exception and stack text, extra fields — never in
  the message template of our own loggers, the logger name or the level, which are our words;
* at most :data:`MAX_SECRETS` values are kept (least recently registered dropped first), indexed
  by their longest run of token characters, so scanning a line costs one pass over it plus a
  check per candidate, whatever the number of tenants.

Every rendering path goes through :class:`RedactingFormatter`: the message and its arguments,
``exc_info`` (rendered here, chained causes and contexts included, and never rendered again by
the wrapped formatter), ``stack_info`` and extra fields, for the JSON and the text formatter.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import math
import re
import threading
from collections import Counter, OrderedDict
from typing import Any

MIN_SECRET_LENGTH = 16
MIN_BITS_PER_CHAR = 3.0
MAX_SECRETS = 4096
MASK = "[REDACTED]"
_TOKEN = r"A-Za-z0-9_~\-"
_RUN = re.compile(f"[{_TOKEN}]+")
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)((?:access_token|refresh_token|client_secret|fb_exchange_token|oauth2_access_token)=)[^&\s\"']+"
    ),
]
# Attributes every LogRecord has: anything else on a record is an extra field.
_STANDARD = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def bits_per_char(value: str) -> float:
    """Shannon entropy of ``value``'s characters (how unpredictable each one is, at most log2 len)."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def maskable(value: str) -> bool:
    """Long and varied enough to be masked by value without hiding ordinary words or addresses.

    Refused: fewer than 16 characters (every IPv4 address), under 3 bits per character
    (``aaaaaaaaaaaaaaaa``, ``abababab…``), a sentence of letter-only words (``refused a tenant
    URL``), a URL or an IP address.
    """
    if len(value) < MIN_SECRET_LENGTH or _RUN.search(value) is None or "://" in value:
        return False
    words = value.split()
    if len(words) > 1 and all(w.isalpha() for w in words):
        return False
    try:
        ipaddress.ip_address(value.strip("[]"))
        return False
    except ValueError:
        pass
    return bits_per_char(value) >= MIN_BITS_PER_CHAR


class SecretIndex:
    """The registered values, bounded, indexed by their longest run of token characters."""

    def __init__(self, capacity: int = MAX_SECRETS) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._order: OrderedDict[str, None] = OrderedDict()
        self._by_anchor: dict[str, dict[str, re.Pattern[str]]] = {}

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: str) -> bool:
        """Register ``value`` (True) unless it fails the length and entropy rule (False).

        A value registered already passed the rule: it is only marked recent (every delivery
        registers its tokens again, and the rule's entropy count cost ~40 µs a value).
        """
        with self._lock:
            if value in self._order:
                self._order.move_to_end(value)
                return True
        if not maskable(value):
            return False
        with self._lock:
            if value in self._order:
                self._order.move_to_end(value)
                return True
            self._order[value] = None
            anchor = max(_RUN.findall(value), key=len)
            pattern = re.compile(f"(?<![{_TOKEN}]){re.escape(value)}(?![{_TOKEN}])")
            self._by_anchor.setdefault(anchor, {})[value] = pattern
            while len(self._order) > self.capacity:
                self._forget(next(iter(self._order)))
        return True

    def _forget(self, value: str) -> None:
        del self._order[value]
        anchor = max(_RUN.findall(value), key=len)
        group = self._by_anchor.get(anchor, {})
        group.pop(value, None)
        if not group:
            self._by_anchor.pop(anchor, None)

    def clear(self) -> None:
        with self._lock:
            self._order.clear()
            self._by_anchor.clear()

    def scrub(self, text: str) -> str:
        """``text`` with every registered value standing as a whole token replaced by the mask."""
        if not self._order:
            return text
        with self._lock:
            found = [
                (value, pattern)
                for run in set(_RUN.findall(text))
                for value, pattern in self._by_anchor.get(run, {}).items()
            ]
        # longest first, so a value containing another is masked whole
        for _, pattern in sorted(found, key=lambda p: len(p[0]), reverse=True):
            text = pattern.sub(MASK, text)
        return text

    def candidates(self, text: str) -> list[str]:
        """The registered values anchored on a run of ``text``: the only ones checked against it."""
        with self._lock:
            return [v for run in set(_RUN.findall(text)) for v in self._by_anchor.get(run, {})]


_index = SecretIndex()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later log record (when it passes the length and entropy rule)."""
    if value:
        _index.add(value)


def scrub(text: str) -> str:
    """``text`` with registered values and token-shaped strings masked."""
    text = _index.scrub(text)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def _clean(value: Any) -> Any:
    """A value for a record's variable part: unchanged unless its text holds a secret."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    text = value if isinstance(value, str) else _text(value)
    cleaned = scrub(text)
    return value if cleaned == text else cleaned


def _ours(logger: str) -> bool:
    return logger == "mcmp" or logger.startswith("mcmp.")


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break logging
        return object.__repr__(value)


def redacted(record: logging.LogRecord, formatter: logging.Formatter) -> logging.LogRecord:
    """A copy of ``record`` whose every rendered part has its secrets masked.

    The template is kept as written: ``record.msg`` when there are arguments, or a string
    message of our own loggers (``mcmp.*``: ruff's G rules keep their messages literal). Each
    argument, the exception (rendered by ``formatter``, chained ones included), the stack and
    every extra field are scrubbed; any other message without arguments (an exception object, a
    library's pre-formatted line) is data and is scrubbed whole.
    """
    clean = copy.copy(record)
    if record.args:
        args = record.args
        if isinstance(args, dict):
            clean.args = {k: _clean(v) for k, v in args.items()}
        else:
            clean.args = tuple(_clean(a) for a in args)
        try:
            clean.getMessage()
        except (TypeError, ValueError):  # a cleaned argument no longer fits its %d: render first
            clean.msg, clean.args = scrub(record.getMessage()), None
    elif not (isinstance(record.msg, str) and _ours(record.name)):
        clean.msg = _clean(record.msg)
    clean.message = clean.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        clean.exc_text = scrub(formatter.formatException(record.exc_info))
    elif record.exc_text:
        clean.exc_text = scrub(record.exc_text)
    clean.exc_info = None  # the wrapped formatter must not render the raw exception again
    if record.stack_info:
        clean.stack_info = scrub(record.stack_info)
    for key, value in vars(record).items():
        if key not in _STANDARD:
            setattr(clean, key, _clean(value))
    return clean


class RedactingFormatter(logging.Formatter):
    """Wraps a formatter (JSON or text) so that it only ever sees a redacted copy of a record."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return self.inner.format(redacted(record, self.inner))
