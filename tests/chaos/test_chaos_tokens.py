"""A chaos run with token refreshes, then a search for every token value in what
the system emitted: worker and dispatcher logs, every Redis command (Celery messages, events,
locks — recorded with MONITOR on the run's private Redis) and admin API responses.

Searched values: each account's plaintext tokens (initial, refreshed by the platforms, written
through the API), their ciphertexts as stored, and the ciphertext prefix itself.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from mcmp.devstack import PrivateRedis
from mcmp.worker.accounts.crypto import PREFIX
from tests.chaos.harness import FAULTS, insert_posts, run_chaos
from tests.conftest import MCMP

POSTS = 300
PLATFORMS = ("website", "linkedin", "google-business")
# LinkedIn 429s block the member until midnight UTC (by design): keep the 500s and the
# commit-then-timeouts there and on Google; the webhook gets all three faults.
API_FAULTS = [FAULTS[0], FAULTS[1]]


class RedisRecorder:
    """Every command the private Redis executes, through a MONITOR connection that survives restarts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
                with client.monitor() as monitor:
                    for command in monitor.listen():
                        self.lines.append(str(command.get("command", "")))
                        if self._stop.is_set():
                            return
            except (redis.RedisError, OSError, ValueError):
                time.sleep(0.1)  # restarted: reconnect

    def stop(self) -> str:
        """All recorded commands, followed by every base64 run in them decoded (message bodies)."""
        self._stop.set()
        try:  # one more command wakes the listener up
            redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
        except redis.RedisError:
            pass
        self._thread.join(5)
        raw = "\n".join(self.lines)
        decoded = []
        for run in set(re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", raw)):
            try:
                decoded.append(base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8"))
            except (binascii.Error, UnicodeDecodeError):
                continue
        return raw + "\n" + "\n".join(decoded)


@pytest.mark.chaos
@pytest.mark.platforms(*PLATFORMS)
@pytest.mark.timeout(900)
def test_chaos_run_leaks_no_token(
    env,
    db,
    platform_lab,
    make_client,
    make_account,
    procs,
    start_worker,
    start_dispatcher,
    run_dir: Path,
    tmp_path,
):
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    recorder = RedisRecorder(private.url)
    recorder.start()
    started = time.time()
    li, gbp = platform_lab.sims["linkedin"].base_url, platform_lab.sims["google-business"].base_url
    chaos_env = dict(
        {k: v for k, v in platform_lab.env.items() if k != "MCMP_REAP_INTERVAL_SECONDS"},
        MCMP_REDIS_URL=private.url,
        MCMP_LINKEDIN__APP_ID="cid",
        MCMP_LINKEDIN__APP_SECRET="csecret",
        MCMP_LINKEDIN__TOKEN_URL=f"{li}/oauth/v2/accessToken",
        MCMP_LINKEDIN__TIMEOUT_SECONDS="3",
        MCMP_GOOGLE_BUSINESS__APP_ID="gcid",
        MCMP_GOOGLE_BUSINESS__APP_SECRET="gsecret",
        MCMP_GOOGLE_BUSINESS__TOKEN_URL=f"{gbp}/token",
        MCMP_GOOGLE_BUSINESS__TIMEOUT_SECONDS="3",
        MCMP_TOKEN_REFRESH_INTERVAL_SECONDS="2",
    )
    tag = uuid.uuid4().hex[:12]
    plaintexts = {"dev-webhook-secret"}
    client = make_client(slug="token-chaos")
    soon = datetime.now(UTC) + timedelta(seconds=40)  # expires during the run: refreshed under chaos
    accounts = {}
    for platform in PLATFORMS:
        fields = platform_lab.account_fields(platform, client)
        if platform == "linkedin":
            fields.update(
                accessToken=f"li-test-a-{tag}", refreshToken=f"li-test-refresh-{tag}", expiresAt=soon
            )
        if platform == "google-business":
            fields.update(
                accessToken=f"gbp-test-a-{tag}", refreshToken=f"gbp-test-refresh-{tag}", expiresAt=soon
            )
        plaintexts.update(v for k, v in fields.items() if k in ("accessToken", "refreshToken"))
        accounts[platform] = make_account(client, platform, **fields)
    platform_lab.sims["website"].faults(FAULTS, seed=5)
    for platform in ("linkedin", "google-business"):
        platform_lab.sims[platform].faults(API_FAULTS, seed=5)
    post_ids = insert_posts(db, client, lambda i: [PLATFORMS[i % 3]], POSTS, spread_seconds=10)

    try:

        def new_worker():
            return start_worker(chaos_env, concurrency=3)

        workers = [new_worker(), new_worker()]
        start_dispatcher(chaos_env, name="dispatcher-a")
        start_dispatcher(chaos_env, name="dispatcher-b")
        beat = procs("beat", [*MCMP, "beat"], dict(chaos_env, MCMP_STATE_DIR=str(tmp_path)))
        kills, restarts, seconds = run_chaos(db, post_ids, new_worker, workers, private, timeout=420)
        responses = _use_the_api(env, db, client, accounts, plaintexts, tag)
        beat.stop()
    finally:
        messages = recorder.stop()
        private.stop()

    stored = list(db.integrationaccounts.find({"_id": {"$in": [a["_id"] for a in accounts.values()]}}))
    ciphertexts = {d[f] for d in stored for f in ("accessToken", "refreshToken") if d.get(f)}
    from mcmp.worker.accounts import secrets

    plaintexts.update(
        secrets.reveal(d[f], str(d["_id"]))
        for d in stored
        for f in ("accessToken", "refreshToken")
        if d.get(f)
    )
    plaintexts.update(platform_lab.sims["linkedin"].state()["issued_tokens"])
    refreshes = {p: platform_lab.sims[p].state()["refresh_calls"] for p in ("linkedin", "google-business")}
    logs = "\n".join(
        p.read_text(errors="replace")
        for p in (run_dir / "logs").glob("*.log")
        if p.stat().st_mtime >= started and p.name.startswith(("worker", "dispatcher", "beat"))
    )
    assert all(c.startswith(PREFIX) for c in ciphertexts)  # everything at rest is sealed
    sources = {"logs": logs, "redis (Celery messages, events, locks)": messages, "api": responses}
    leaks = {
        name: sorted({v[:12] + "…" for v in (*plaintexts, *ciphertexts, PREFIX) if v in text})
        for name, text in sources.items()
    }
    print(
        f"token chaos: posts={POSTS} kills={kills} redis_restarts={restarts} seconds={seconds:.1f} "
        f"refresh_calls={refreshes} values_searched={len(plaintexts) + len(ciphertexts)} "
        f"log_bytes={len(logs)} redis_commands={len(recorder.lines)} api_bytes={len(responses)} "
        f"leaks={ {k: len(v) for k, v in leaks.items()} }"
    )
    published = db.posts.count_documents({"_id": {"$in": post_ids}, "status": "published"})
    assert published == POSTS
    assert all(platform_lab.sims[p].state().get("duplicates", 0) == 0 for p in PLATFORMS)
    assert refreshes["linkedin"] >= 1 and refreshes["google-business"] >= 1
    # Really recorded: publish messages and the refresh tasks' arguments (account ids) are there.
    assert len(recorder.lines) > 1000 and "mcmp.publish_delivery" in messages
    some_delivery = str(db.deliveries.find_one({}, {"_id": 1})["_id"])
    assert some_delivery in messages  # Celery bodies are base64: decoded before searching
    assert not any(leaks.values()), leaks


def _use_the_api(
    env: dict[str, str],
    db: Any,
    client: dict[str, Any],
    accounts: dict[str, Any],
    plaintexts: set[str],
    tag: str,
) -> str:
    """List, read, refresh and reconnect accounts through the admin API; the response bodies."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from mcmp.api.app import create_app
    from mcmp.api.keys import create_key

    key = create_key("leak-check", [str(client["_id"])]).key
    headers = {"X-API-Key": key}
    bodies = []
    with TestClient(create_app(), raise_server_exceptions=False) as api:
        bodies.append(api.get("/v1/accounts", headers=headers).text)
        for account in accounts.values():
            bodies.append(api.get(f"/v1/accounts/{account['_id']}", headers=headers).text)
            bodies.append(api.post(f"/v1/accounts/{account['_id']}/refresh", headers=headers).text)
        new_access, new_refresh = f"li-test-put-{tag}", f"li-test-refresh-put-{tag}"
        plaintexts.update((new_access, new_refresh))
        r = api.put(
            f"/v1/accounts/{accounts['linkedin']['_id']}/token",
            json={"accessToken": new_access, "refreshToken": new_refresh},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        bodies.append(r.text)
        bodies.append(api.get("/v1/accounts", headers=headers).text)
    return "\n".join(bodies)
