"""deploy/: the Prometheus rules load (promtool when installed) and name only real metrics."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "grantdesk-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "grantdesk-dashboard.json"
METRIC = re.compile(r"\bgrantdesk_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


@pytest.fixture
def exported(app, client):
    """Every sample and family name /metrics exposes (families with their sample suffixes)."""
    app.config["GRANTDESK_METRICS_TOKEN"] = "t"
    text = client.get("/metrics", headers={"Authorization": "Bearer t"}).get_data(as_text=True)
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES)
    return names


def _expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def test_every_metric_in_the_rules_and_dashboard_exists(exported):
    expressions = _expressions()
    assert len(expressions) > 10
    named = {name for expr in expressions for name in METRIC.findall(str(expr))}
    assert named and named <= exported, sorted(named - exported)


def test_every_rule_has_a_severity_and_a_summary():
    rules = yaml.safe_load(RULES.read_text())
    for rule in (r for group in rules["groups"] for r in group["rules"]):
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_checks_and_unit_tests_the_rules():
    checked = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", "grantdesk-rules.test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
