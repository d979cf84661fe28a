"""Starters for the real services ``mcmp dev``, the tests and the benchmarks run on.

One place for the embedded SecantusDB launcher, private Redis servers, platform simulators in
their own processes, child processes with readable logs and free loopback ports, so the dev
stack, the test suite and the benchmarks start things exactly the same way. Nothing here is
used by a production process.
"""

from mcmp.devstack.documents import scheduled_post
from mcmp.devstack.mongo import (
    EMBEDDED_SWITCH_INTERVAL,
    EMBEDDED_URI_OPTIONS,
    embedded_server_command,
    embedded_uri,
    start_secantus,
)
from mcmp.devstack.processes import Proc, free_port, spawn, stop_all, wait_until
from mcmp.devstack.queries import find_in, still_scheduled
from mcmp.devstack.redis import PrivateRedis, embedded_redis_binary, redis_server_command
from mcmp.devstack.simulators import SimClient, simulator_env, start_simulator

__all__ = [
    "EMBEDDED_SWITCH_INTERVAL",
    "EMBEDDED_URI_OPTIONS",
    "PrivateRedis",
    "Proc",
    "SimClient",
    "embedded_redis_binary",
    "embedded_server_command",
    "embedded_uri",
    "find_in",
    "free_port",
    "redis_server_command",
    "scheduled_post",
    "simulator_env",
    "spawn",
    "start_secantus",
    "start_simulator",
    "stop_all",
    "still_scheduled",
    "wait_until",
]
