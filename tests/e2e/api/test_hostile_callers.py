"""Hostile callers against a real API process: memory stays bounded under oversized bodies."""

from __future__ import annotations

import socket
import threading
import time

import requests

from mcmp.devstack import free_port, wait_until
from tests.conftest import MCMP
from tests.integration.api.conftest import headers
from tests.integration.api.test_hostile_callers import MB, _memory_kb, _status_line


def test_the_api_process_stays_small_under_four_concurrent_100mb_bodies_without_a_key(
    env, procs, make_key, make_tenant
):
    tenant = make_tenant()
    key = make_key(tenant.id)
    port = free_port()
    api_proc = procs("api", [*MCMP, "api", "--port", str(port)], env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert api_proc.alive(), api_proc.log_text()[-3000:]
        try:
            return requests.get(f"{base}/v1/health/live", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, 60, 0.2, "mcmp api did not start")
    path = f"/v1/posts/{tenant.post['_id']}/retry"
    assert requests.get(f"{base}/v1/posts", headers=headers(key), timeout=5).ok  # warm: routes loaded
    hundred = 100 * MB
    head = f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: {hundred}\r\n"
    # Answered at once although none of the 100 MB was sent: nothing waited for the body.
    assert _status_line(port, (head + "\r\n").encode()).endswith("401 Unauthorized")
    assert _status_line(port, (head + f"X-API-Key: {key}\r\n\r\n").encode()).startswith("HTTP/1.1 413 ")

    pid = api_proc.popen.pid
    before = _memory_kb(pid, "VmRSS")
    sent = [0] * 4

    def flood(index: int) -> None:
        chunk = b"x" * MB
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall((head + "\r\n").encode())
            try:
                while sent[index] < hundred:
                    sock.sendall(chunk)
                    sent[index] += len(chunk)
            except OSError:
                pass  # the API answered 401 and closed: what it should do

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    growth_mb = (_memory_kb(pid, "VmHWM") - before) / 1024
    assert not any(t.is_alive() for t in threads)
    assert growth_mb < 30, f"API peak RSS grew by {growth_mb:.1f} MB"
    assert all(s < hundred for s in sent), sent  # each connection was closed long before 100 MB
    assert up()  # and the API still serves
    print(
        f"4 x 100 MB without a key: peak RSS +{growth_mb:.1f} MB, accepted before close "
        f"{[round(s / MB) for s in sent]} MB, {time.monotonic() - started:.1f} s"
    )
