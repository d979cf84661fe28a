"""What every ``mcmp`` command shares: the dev stack's config file, service checks, the console.

**Config file.** ``mcmp dev`` writes ``<data dir>/mcmp.env`` (``export MCMP_…=…`` lines: the
MongoDB and Redis URIs, the token key, the simulators' base URLs) while it runs, and removes it
when it stops. Every other ``mcmp`` command reads it, so ``mcmp apikey create`` or ``mcmp
analytics backfill`` run beside a dev stack reach it with nothing typed. It is read from
``MCMP_CONFIG`` (a path; empty = read none), else from ``.mcmp/mcmp.env`` in the current
directory only — never from a parent folder, which another user may own — and only its
``MCMP_*`` variables are honoured (a file that sets ``PATH``, ``PYTHONPATH`` or ``LD_PRELOAD``
sets nothing). Variables already set in the environment win, and a shell that set
``MCMP_MONGODB_URI``, ``MCMP_REDIS_URL`` or ``MCMP_BROKER_URL`` itself is configured already: the
file is then not read at all (unless ``MCMP_CONFIG`` names it), so a dev stack never captures a
command pointed elsewhere. The same file can be ``source``d by a shell.

**Reachability.** A command that needs MongoDB or Redis checks them first with short timeouts
and, when one does not answer, says so in one line naming the URI and how to set it, instead of
a 30 s wait and a traceback.

**Console.** Output piped to a file or another program is never wrapped at 80 columns: a
delivery or progress line stays one line for ``grep`` and logs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

CONFIG_ENV = "MCMP_CONFIG"
DATA_DIR = ".mcmp"
CONFIG_NAME = "mcmp.env"
# A shell with any of these set has configured the services itself.
SERVICE_VARIABLES = ("MCMP_MONGODB_URI", "MCMP_REDIS_URL", "MCMP_BROKER_URL")
MONGO_CHECK_SECONDS = 2.0
REDIS_CHECK_SECONDS = 1.0

_loaded_from: Path | None = None


def console(stderr: bool = False) -> Console:
    """A rich console that never wraps lines (soft wrap): piped output keeps one record a line."""
    return Console(stderr=stderr, soft_wrap=True)


def find_config(start: Path) -> Path | None:
    """``MCMP_CONFIG`` if set (empty: none), else ``start/.mcmp/mcmp.env`` when it exists."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit is not None:
        return Path(explicit) if explicit else None
    candidate = start / DATA_DIR / CONFIG_NAME
    return candidate if candidate.is_file() else None


def load_config(start: Path | None = None) -> Path | None:
    """Read the dev stack's config file into the environment (set variables win); its path."""
    global _loaded_from
    if CONFIG_ENV not in os.environ and any(os.environ.get(name) for name in SERVICE_VARIABLES):
        return None
    path = find_config(start or Path.cwd())
    if path is None:
        return None
    if not path.is_file():
        raise typer.BadParameter(f"{CONFIG_ENV}={path}: no such file")
    from dotenv import dotenv_values

    ignored = []
    for key, value in dotenv_values(path).items():
        if not key.startswith("MCMP_"):
            ignored.append(key)
        elif value is not None:
            os.environ.setdefault(key, value)
    if ignored:
        typer.echo(f"warning: {path}: only MCMP_* variables are read; ignored {', '.join(ignored)}", err=True)
    _loaded_from = path
    from mcmp.config import reset_settings

    reset_settings()
    return path


def write_config(path: Path, values: dict[str, str]) -> None:
    """Write ``values`` as ``export KEY='value'`` lines, readable by this module and by a shell (mode 600)."""
    lines = [
        "# Written by `mcmp dev` while it runs (removed when it stops). Every mcmp command started",
        "# in the folder holding .mcmp/ reads it (MCMP_* lines only); a shell can `source` it.",
        *(f"export {key}='{value}'" for key, value in values.items()),
    ]
    write_private(path, "\n".join(lines) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from the first byte.

    The file is created 0600 (``O_EXCL`` under a temporary name, so a file planted there is never
    reused) and renamed over ``path``: no moment exists when another user could open it, and a
    reader never sees half a file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def redact(uri: str) -> str:
    """The URI without its password (``user:***@host``)."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", uri)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr (one line) and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _how_to_set(variable: str) -> str:
    if _loaded_from is not None:
        return (
            f"it came from {_loaded_from}, written by `mcmp dev`: is that dev stack still running? "
            f"(or set {variable})"
        )
    return f"set {variable}, or run this command where `mcmp dev` runs (it reads {DATA_DIR}/{CONFIG_NAME})"


def connect(*, redis_needed: bool = True) -> None:
    """Check MongoDB (and Redis) quickly, then bootstrap like any process; one line if unreachable."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    from mcmp.config import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        raise fail(str(exc).replace("\n", "; ")) from None
    refused = _nothing_listens(settings.mongodb_uri)
    if refused:
        raise fail(
            f"cannot reach MongoDB at {redact(settings.mongodb_uri)} ({refused}); "
            + _how_to_set("MCMP_MONGODB_URI")
        )
    timeout_ms = int(MONGO_CHECK_SECONDS * 1000)
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            settings.mongodb_uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
    except PyMongoError as exc:
        raise fail(
            f"cannot reach MongoDB at {redact(settings.mongodb_uri)} ({_reason(exc)}); "
            + _how_to_set("MCMP_MONGODB_URI")
        ) from None
    if redis_needed:
        import redis

        try:
            redis.Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=REDIS_CHECK_SECONDS,
                socket_timeout=REDIS_CHECK_SECONDS,
            ).ping()
        except (redis.RedisError, OSError) as exc:
            raise fail(
                f"cannot reach Redis at {redact(settings.redis_url)} ({_reason(exc)}); "
                + _how_to_set("MCMP_REDIS_URL")
            ) from None
    from mcmp.worker.runtime import bootstrap

    bootstrap(settings, wait=False)


def _nothing_listens(uri: str) -> str | None:
    """Why no host of a plain ``mongodb://`` URI accepts a TCP connection (None: one does, or SRV).

    A refused port answers at once, while the driver's server selection would wait its whole
    timeout; so the common case (nothing running there) is reported immediately.
    """
    import socket

    from pymongo.uri_parser import parse_uri

    if not uri.startswith("mongodb://"):
        return None
    try:
        nodes = parse_uri(uri)["nodelist"]
    except Exception:
        return None  # the driver reports a malformed URI itself
    errors = []
    for host, port in nodes:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return None
        except OSError as exc:
            errors.append(f"{host}:{port}: {exc.strerror or type(exc).__name__}")
    return "; ".join(errors)


def _reason(exc: Exception) -> str:
    """The first line of a driver error, short (pymongo's carry a whole topology description)."""
    text = str(exc).split("\n", 1)[0]
    text = text.split(", Timeout:", 1)[0].split(" (configured timeouts", 1)[0]
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
