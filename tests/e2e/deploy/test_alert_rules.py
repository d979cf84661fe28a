"""The alert rules: valid for Prometheus 2.42, unit-tested by promtool, each with a runbook."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.e2e.deploy.prom import ALERTS, ALERTS_TEST, OPERATIONS, SCRAPE_CONFIG, alert_rules, binary


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_rules_and_scrape_config_are_valid() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    config = _promtool("check", "config", str(SCRAPE_CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [c for t in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for c in t["alert_rule_test"]]
    for rule in alert_rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it stays quiet"


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    anchors = {
        "runbook-" + re.sub(r"[^a-z0-9-]", "", heading.strip().lower().replace(" ", "-"))
        for heading in re.findall(r"^#### Runbook: (.+)$", OPERATIONS.read_text(), re.M)
    }
    for rule in alert_rules():
        name, annotations = rule["alert"], rule["annotations"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/operations.md#runbook-{name.lower()}", name
        assert f"runbook-{name.lower()}" in anchors, f"docs/operations.md has no '#### Runbook: {name}'"
