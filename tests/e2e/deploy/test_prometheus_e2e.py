"""The shipped alert rules and dashboard on a real Prometheus scraping a real worker, dispatcher and API.

Prometheus (Debian's 2.42) runs on loopback, scraping every second and evaluating the shipped
rules every second. Two faults are injected as operators meet them:

* a platform failing every call (the LinkedIn simulator answers 500 to every write) while the
  website keeps working → ``MCMPPlatformFailing`` fires for ``linkedin`` only, and resolves once
  LinkedIn answers again and the 5-minute failure ratio falls below one half;
* every worker killed (``kill -9``) → ``MCMPNoLiveWorker`` fires within its ``for`` + one scrape
  interval after the API reports no live worker (the liveness keys expire after
  ``MCMP_LIVENESS_TTL_SECONDS``, the API's figures are at most ``MCMP_HEALTH_CACHE_SECONDS``
  old), and resolves when a worker is back.

The rules are the shipped ``deploy/prometheus/alerts.yml`` with two ``for:`` durations shortened
(:data:`DURATIONS`: a test cannot wait the production 10 minutes); expressions, thresholds,
labels and annotations are unchanged. ``mcmp status`` is run during each fault and its text
asserted. Finally every metric name the rules and the dashboard use must appear in the three
``/metrics``, and every dashboard query must evaluate on this Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from mcmp.devstack import free_port, wait_until
from tests.e2e.deploy.prom import alert_rules, binary, with_durations

pytestmark = pytest.mark.platforms("linkedin", "website")

MCMP = [sys.executable, "-m", "mcmp.cli"]
SCRAPE_SECONDS = 1.0
# Shortened for this test only (shipped: 10m and 1m).
DURATIONS = {"MCMPPlatformFailing": "10s", "MCMPNoLiveWorker": "5s"}
LIVENESS_TTL_SECONDS = 4.0  # the default: this test runs the processes with default settings
# The API computes its fleet gauges at most once per MCMP_HEALTH_CACHE_SECONDS (default 5 s), so
# the live-worker count it serves may be that much older than the liveness keys.
HEALTH_CACHE_SECONDS = 5.0
DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "mcmp-publisher.json"
METRIC = re.compile(r"\b(mcmp_[a-z0-9_]+)\b")


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def alerts(self, name: str) -> list[dict[str, Any]]:
        data = requests.get(f"{self.base}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [a for a in data if a["labels"]["alertname"] == name]

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts(name) if a["state"] == "firing"]

    def query(self, expr: str) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(
            f"{self.base}/api/v1/query", params={"query": expr}, timeout=10
        ).json()
        return answer

    def targets_up(self) -> dict[str, str]:
        active = requests.get(f"{self.base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}


def _status(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MCMP, "status"], env={**env, "COLUMNS": "200"}, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _published(db: Any, post_ids: list[Any]) -> bool:
    return db.posts.count_documents({"_id": {"$in": post_ids}, "status": "published"}) == len(post_ids)


def _linkedin_failures(worker_metrics: str) -> float:
    total = 0.0
    for line in worker_metrics.splitlines():
        if line.startswith("mcmp_publish_calls_total{") and 'platform="linkedin"' in line:
            if re.search(r'result="(unavailable|ambiguous|error)"', line):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _has_samples(text: str, name: str) -> bool:
    return re.search(rf"^{name}(\{{| )", text, re.M) is not None


def test_alerts_fire_and_resolve_on_a_real_prometheus(
    env, db, tmp_path, procs, platform_lab, make_client, make_account, make_post
):
    lab = platform_lab
    base_env = lab.env
    metrics_dir = tmp_path / "worker-metrics"
    metrics_dir.mkdir()
    worker_env = {**base_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    worker_port, dispatcher_port, api_port, prom_port = free_port(), free_port(), free_port(), free_port()

    def start_worker() -> Any:
        worker = procs(
            "worker",
            [*MCMP, "worker", "-c", "2", "--metrics-port", str(worker_port), "-n", "prom@%h"],
            worker_env,
        )
        wait_until(
            lambda: "worker ready" in worker.log_text() or not worker.alive(), 60, 0.2, "worker did not start"
        )
        assert worker.alive(), worker.log_text()[-3000:]
        return worker

    worker = start_worker()
    dispatcher = procs("dispatcher", [*MCMP, "dispatcher", "--metrics-port", str(dispatcher_port)], base_env)
    api = procs("api", [*MCMP, "api", "--port", str(api_port)], base_env)

    rules = tmp_path / "alerts.yml"
    rules.write_text(with_durations(DURATIONS))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": f"{SCRAPE_SECONDS:g}s",
                    "scrape_timeout": f"{SCRAPE_SECONDS:g}s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                    for job, port in (
                        ("mcmp-api", api_port),
                        ("mcmp-worker", worker_port),
                        ("mcmp-dispatcher", dispatcher_port),
                    )
                ],
            }
        )
    )
    procs(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        base_env,
    )
    prom = Prometheus(f"http://127.0.0.1:{prom_port}")

    def all_up() -> bool:
        assert dispatcher.alive() and api.alive(), dispatcher.log_text()[-2000:] + api.log_text()[-2000:]
        try:
            return set(prom.targets_up().values()) == {"up"} and len(prom.targets_up()) == 3
        except requests.RequestException:
            return False

    wait_until(all_up, 90, 0.5, "Prometheus did not scrape the worker, dispatcher and API")

    clients = [make_client(slug="acme"), make_client(slug="beta")]
    for client in clients:
        for platform in ("linkedin", "website"):
            make_account(client, platform, **lab.account_fields(platform, client))

    # --- a platform failing every call: the failure-ratio alert for that platform only ----------
    lab.sims["linkedin"].faults([{"kind": "http_500"}])
    started = time.monotonic()
    when = datetime.now(UTC) + timedelta(seconds=1)
    both = [make_post(c, ["linkedin", "website"], when=when)["_id"] for c in clients for _ in range(2)]
    wait_until(lambda: prom.firing("MCMPPlatformFailing"), 120, 0.5, "MCMPPlatformFailing did not fire")
    fired_after = time.monotonic() - started
    failing = prom.alerts("MCMPPlatformFailing")
    assert {a["labels"]["platform"] for a in failing} == {"linkedin"}, failing
    [alert] = failing
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "linkedin: 100% of publish calls fail (platform unavailable)"
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#runbook-mcmpplatformfailing"
    website = db.deliveries.count_documents(
        {"postId": {"$in": [str(p) for p in both]}, "platform": "website", "state": "published"}
    )
    assert website == len(both)  # the other platform kept publishing throughout

    status = _status(base_env, tmp_path)
    assert "Failures in the last hour" in status.stdout, status.stdout + status.stderr
    assert re.search(r"linkedin\s*│\s*ambiguous\s*│\s*0\s*│\s*[1-9]", status.stdout), status.stdout

    lab.sims["linkedin"].clear_faults()
    wait_until(lambda: _published(db, both), 90, 0.5, "the LinkedIn deliveries did not recover")
    worker_text = requests.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=5).text
    failures = _linkedin_failures(worker_text)
    assert failures >= 5
    # The alert watches the ratio over 5 minutes: it resolves once successes outnumber failures.
    recovered_at = time.monotonic()
    when = datetime.now(UTC) + timedelta(seconds=1)
    more = [make_post(clients[i % 2], ["linkedin"], when=when)["_id"] for i in range(int(failures) + 2)]
    wait_until(
        lambda: _published(db, more), 120, 0.5, "the LinkedIn posts after the outage were not published"
    )
    wait_until(lambda: not prom.alerts("MCMPPlatformFailing"), 60, 0.5, "MCMPPlatformFailing did not resolve")
    resolved_after = time.monotonic() - recovered_at
    assert lab.sims["linkedin"].state()["count"] >= len(both) // 2 + len(more)

    # --- every worker killed: the no-worker alert, and mcmp status says so ------------------------
    worker.kill9()
    killed = time.monotonic()

    def dead_on_api() -> bool:
        text = requests.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5).text
        return re.search(r"^mcmp_worker_processes_live 0\.0$", text, re.M) is not None

    wait_until(dead_on_api, 30, 0.1, "the API never reported no live worker")
    dead = time.monotonic()  # the liveness keys expired (MCMP_LIVENESS_TTL_SECONDS after the kill)
    wait_until(lambda: prom.firing("MCMPNoLiveWorker"), 60, 0.1, "MCMPNoLiveWorker did not fire")
    fired = time.monotonic()
    no_worker_after, after_dead = fired - killed, fired - dead
    # for (5 s) + one scrape interval + one evaluation interval; 1.5 s for a loaded machine
    assert after_dead <= 5 + SCRAPE_SECONDS + 1.0 + 1.5, (
        f"fired {after_dead:.1f} s after the API saw 0 workers"
    )
    assert no_worker_after <= LIVENESS_TTL_SECONDS + HEALTH_CACHE_SECONDS + 5 + SCRAPE_SECONDS + 1.0 + 3.0, (
        f"fired {no_worker_after:.1f} s after the kill"
    )
    status = _status(base_env, tmp_path)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "no live worker process: nothing is being published" in status.stdout
    assert re.search(r"live worker processes\s*│\s*0\b", status.stdout), status.stdout
    as_json = json.loads(
        subprocess.run(
            [*MCMP, "status", "--json"],
            env=base_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert as_json["worker_processes"] == 0 and as_json["dispatchers"] >= 1

    worker = start_worker()
    back = time.monotonic()
    wait_until(lambda: not prom.alerts("MCMPNoLiveWorker"), 60, 0.25, "MCMPNoLiveWorker did not resolve")
    no_worker_resolved_after = time.monotonic() - back
    wait_until(lambda: prom.targets_up().get("mcmp-worker") == "up", 30, 0.5, "worker target not back")
    assert not prom.alerts("MCMPDispatcherStalled") and not prom.alerts("MCMPPostsLate")

    # --- every name used by rules and dashboard is exported; every dashboard query evaluates ------
    from mcmp.worker import rate_limit

    rate_limit.throttled("linkedin", "app", None, 60.0)  # a throttle episode, for its gauge's samples
    time.sleep(3 * SCRAPE_SECONDS)
    texts = "\n".join(
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for port in (worker_port, dispatcher_port, api_port)
    )
    dashboard = json.loads(DASHBOARD.read_text())
    panel_queries = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    rule_queries = [(rule["alert"], rule["expr"]) for rule in alert_rules()]
    used = {name for _, expr in panel_queries + rule_queries for name in METRIC.findall(expr)}
    missing = sorted(name for name in used if not re.search(rf"^(# TYPE )?{name}[ {{]", texts, re.M))
    assert not missing, f"used by rules or dashboard but not in /metrics: {missing}"
    empty = []
    for title, expr in panel_queries:
        answer = prom.query(expr.replace("$__rate_interval", "1m"))
        assert answer["status"] == "success", (title, expr, answer)
        if all(_has_samples(texts, name) for name in METRIC.findall(expr)) and not answer["data"]["result"]:
            empty.append(title)
    assert not empty, f"panels whose metrics have samples but whose query returned nothing: {empty}"
    print(
        f"MCMPPlatformFailing fired {fired_after:.1f} s after the posts were due (for: 10s), resolved "
        f"{resolved_after:.1f} s after the posts that follow the outage were scheduled ({failures:.0f} failed calls "
        f"before); MCMPNoLiveWorker "
        f"fired {no_worker_after:.1f} s after the kill, {after_dead:.1f} s after the API first reported 0 live "
        f"workers (for 5 s + scrape 1 s + evaluation 1 s), resolved "
        f"{no_worker_resolved_after:.1f} s after a worker was back"
    )
