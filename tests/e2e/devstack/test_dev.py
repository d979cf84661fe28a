"""``mcmp dev`` as a newcomer runs it: no flags, in an empty folder, nothing else running for it.

It must start everything (its own MongoDB and Redis, simulators, worker, dispatcher, beat, the
admin API, Flower), print what is needed to use it, let other ``mcmp`` commands reach it with
nothing typed, and survive a restart without replaying history, without a dead demo account and
without publishing anything twice. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from pymongo import MongoClient

from mcmp.devstack import wait_until

MCMP = str(Path(sys.executable).parent / "mcmp")  # the console script, as the README runs it


def _newcomer_env() -> dict[str, str]:
    """A shell with no MCMP_* settings at all (so no Redis or MongoDB is given to mcmp dev)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MCMP_")}


class DevRun:
    def __init__(self, cwd: Path, name: str) -> None:
        self.out = cwd / f"{name}.out"
        self.handle = open(self.out, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [MCMP, "dev"],
            cwd=cwd,
            env=_newcomer_env(),
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_started(self) -> dict[str, str]:
        wait_until(
            lambda: "seeded tenant 'demo'" in self.text() or self.proc.poll() is not None,
            240,
            0.5,
            "mcmp dev did not start",
        )
        text = self.text()
        assert self.proc.poll() is None, text

        def find(pattern: str) -> str:
            found = re.search(pattern, text, re.M)
            assert found, f"{pattern!r} not printed:\n{text}"
            return found.group(1)

        return {
            "api": find(r"^\s+admin API\s+(http://127\.0\.0\.1:\d+)/docs$"),
            "key": find(r"^\s+API key\s+(mcmp_\S+)"),
            "flower": find(r"^\s+Flower\s+(http://127\.0\.0\.1:\d+)\s"),
            "flower_user": find(r"^\s+Flower\s+\S+\s+user (\S+)"),
            "flower_password": find(r"^\s+Flower\s+.*password (\S+)$"),
            "mongodb": find(r"^\s+MongoDB\s+(mongodb://\S+)"),
            "redis": find(r"^\s+Redis\s+(redis://\S+)"),
            "website": "http://127.0.0.1:" + find(r"^\s+simulators\s+.*\bwebsite :(\d+)"),
            "config": find(r"^\s+config\s+(\S+mcmp\.env)"),
        }

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C
        code = self.proc.wait(timeout=120)
        self.handle.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # lets mcmp dev stop what it started
            self.proc.wait(timeout=120)
        self.handle.close()


def _published(db: Any) -> dict[Any, dict[str, Any]]:
    return {d["_id"]: d for d in db.deliveries.find({"state": "published"})}


def _leftovers(folder: Path) -> str:
    return subprocess.run(["pgrep", "-af", str(folder)], capture_output=True, text=True).stdout.strip()


def test_mcmp_dev_as_a_newcomer_runs_it_then_restarts_it(tmp_path):
    data = tmp_path / ".mcmp"
    first = DevRun(tmp_path, "first")
    try:
        shown = first.wait_started()
        # its own Redis and MongoDB, on loopback, not the machine's Redis on 6379
        assert ":6379/" not in shown["redis"] and shown["redis"].startswith("redis://127.0.0.1:")
        assert (data / "redis").is_dir() and (data / "mongo").is_dir()
        # the printed key works on the API and sees the demo posts
        posts = requests.get(f"{shown['api']}/v1/posts", headers={"X-API-Key": shown["key"]}, timeout=10)
        assert posts.status_code == 200 and len(posts.json()["items"]) >= 6, posts.text
        assert requests.get(f"{shown['api']}/docs", timeout=10).status_code == 200
        # Flower: closed without the printed credentials, open with them
        assert requests.get(shown["flower"], timeout=10).status_code == 401
        flower_auth = (shown["flower_user"], shown["flower_password"])
        assert requests.get(f"{shown['flower']}/api/workers", auth=flower_auth, timeout=10).status_code == 200
        # every mcmp command run here reaches the dev stack with nothing typed
        assert Path(shown["config"]) == data / "mcmp.env"
        config = (data / "mcmp.env").read_text()
        assert shown["mongodb"] in config and (data / "token.key").read_text().strip() in config
        created = subprocess.run(
            [MCMP, "apikey", "create", "newcomer", "--all-tenants"],
            cwd=tmp_path,
            env=_newcomer_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        own_key = created.stdout.strip().splitlines()[-1]
        assert requests.get(f"{shown['api']}/v1/posts", headers={"X-API-Key": own_key}, timeout=10).ok
        # piped output keeps one record per line (the curl hint is longer than 80 columns)
        assert re.search(r"^\s+curl -H 'X-API-Key: mcmp_\S+' http://\S+/v1/posts$", first.text(), re.M)

        db = MongoClient(shown["mongodb"], tz_aware=True).get_default_database()
        wait_until(lambda: first.text().count(" published ") >= 4, 120, 0.5, "demo posts not published")
        before = _published(db)  # (the embedded MongoDB stops with mcmp dev)
        assert first.stop() == 0
    finally:
        first.kill()
    assert "stopped" in first.text()
    assert not (data / "mcmp.env").exists()  # its URIs are dead now
    assert _leftovers(tmp_path) == ""
    assert len(before) >= 4
    token_key = (data / "token.key").read_text()

    second = DevRun(tmp_path, "second")
    try:
        again = second.wait_started()
        assert again["key"] == shown["key"] and (data / "token.key").read_text() == token_key
        db = MongoClient(again["mongodb"], tz_aware=True).get_default_database()
        assert db.posts.count_documents({}) >= 12  # data kept: both runs seeded 6
        website = db.integrationaccounts.find_one({"platform": "website"})
        assert website["metadata"]["webhookUrl"].startswith(again["website"] + "/")
        # new website posts go out on the new simulator (no ConnectionError loop)
        wait_until(
            lambda: (
                len([d for d in _published(db).values() if d["platform"] == "website"])
                > len([d for d in before.values() if d["platform"] == "website"])
            ),
            120,
            0.5,
            "no website post was published after the restart",
        )
        text = second.text()
        console = text[text.index("seeded tenant") :]
        for delivery in before.values():  # history is not replayed as fresh lines
            assert f"post {delivery['postId']} as" not in console, console
        received = requests.get(f"{again['website']}/_sim/state", timeout=10).json()["posts"]
        assert not {p["idempotencyKey"] for p in received} & {str(i) for i in before}  # nothing twice
        after = _published(db)
        for delivery_id, delivery in before.items():
            assert after[delivery_id]["platformPostId"] == delivery["platformPostId"]
            assert after[delivery_id]["attempt"] == delivery["attempt"]
        assert second.stop() == 0
    finally:
        second.kill()
    assert "stopped" in second.text()
    assert _leftovers(tmp_path) == ""


def test_mcmp_dev_stops_with_the_reason_when_a_setting_is_wrong(tmp_path):
    result = subprocess.run(
        [MCMP, "dev"],
        cwd=tmp_path,
        env={**_newcomer_env(), "MCMP_MAX_ATTEMPTS": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "MCMP_MAX_ATTEMPTS: Input should be greater than 0" in result.stdout
