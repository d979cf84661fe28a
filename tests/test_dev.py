"""``mcmp dev`` on an empty folder: starts everything, publishes the demo posts, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from mcmp.devstack import wait_until


def test_mcmp_dev_publishes_demo_posts_and_stops_on_ctrl_c(tmp_path, redis_url):
    data = tmp_path / "dev"
    out = tmp_path / "dev.out"
    env = dict(os.environ, MCMP_REDIS_URL=redis_url)
    with open(out, "wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mcmp.cli",
                "dev",
                "--data-dir",
                str(data),
                "--demo-posts",
                "2",
                "--no-api",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            wait_until(lambda: out.read_text().count("published ") >= 1 or proc.poll() is not None, 120, 0.5)
            text = out.read_text()
            assert "seeded tenant 'demo'" in text and "published" in text, text
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # lets mcmp dev stop what it started
                proc.wait(timeout=60)
    assert "stopped" in out.read_text()
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.strip()
    assert leftovers == "", f"processes left running: {leftovers}"
    assert (data / "mongo").is_dir(), "embedded MongoDB keeps its data under --data-dir"
    assert "generated a token encryption key" in out.read_text()  # dev encrypts tokens too
    assert (data / "token.key").stat().st_mode & 0o077 == 0


def test_mcmp_dev_stops_with_the_reason_when_a_process_dies(tmp_path, redis_url):
    env = dict(os.environ, MCMP_REDIS_URL=redis_url, MCMP_MAX_ATTEMPTS="0")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcmp.cli",
            "dev",
            "--data-dir",
            str(tmp_path / "dev"),
            "--demo-posts",
            "1",
            "--no-api",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "MCMP_MAX_ATTEMPTS: Input should be greater than 0" in result.stdout
