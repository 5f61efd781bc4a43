"""The Prometheus alert rules, checked and unit-tested by Prometheus's own ``promtool``.

``deploy/prometheus/alerts_test.yaml`` feeds synthetic series through the rules and says
which alerts must fire when (and which must not); a metric name the rules or dashboard
use must also be one the service exports, or an alert would silently never fire.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus) not installed"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROMTOOL), *args], capture_output=True, text=True, cwd=RULES, timeout=60
    )


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
def test_alerts_fire_when_and_only_when_expected() -> None:
    tested = promtool("test", "rules", "alerts_test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def exported_metrics() -> set[str]:
    """Every metric name the predictor, trainer and sidecar define, read from their source."""
    stems = {"PREFIX": "latency_oracle", "SIDECAR": "latency_oracle_sidecar"}
    return {
        f"{stems[stem]}_{name}"
        for package in ("predictor", "operations", "trainer", "sidecar")
        for source in (ROOT / package).rglob("*.py")
        for stem, name in re.findall(r'f"\{(PREFIX|SIDECAR)\}_(\w+)"', source.read_text())
    }


def test_metric_names_use_base_units() -> None:
    """Prometheus names carry base units: seconds, never milliseconds."""
    exported = exported_metrics()
    assert len(exported) > 20
    in_ms = sorted(n for n in exported if re.search(r"_(ms|millis|milliseconds)(_|$)", n))
    assert not in_ms, f"not in base units: {in_ms}"


def test_rules_and_dashboard_use_only_metrics_the_service_exports() -> None:
    exported = exported_metrics()
    used: set[str] = set()
    for path in (RULES / "alerts.yaml", ROOT / "deploy" / "grafana" / "latency-oracle.json"):
        used |= set(re.findall(r"\blatency_oracle_\w+", path.read_text()))
    assert used, "no metric found in the rules or the dashboard"
    base = {next((n[: -len(s)] for s in SUFFIXES if n.endswith(s)), n) for n in used}
    assert base <= exported, f"not exported: {sorted(base - exported)}"


def test_dashboard_filters_by_namespace_and_accelerator() -> None:
    """Every service query follows $namespace, every per-key one $accelerator too."""
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "latency-oracle.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "accelerator"} <= variables
    per_key = re.compile(r"latency_oracle_(model|learner)_\w+\{[^}]*accelerator=~")
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for selector in re.findall(r"latency_oracle_\w+(?:\{[^}]*\})?", target["expr"]):
                if selector.startswith("latency_oracle_sidecar_"):
                    assert "${accelerator}" in selector, selector  # vLLM's own namespaces
                    continue
                assert 'namespace=~"$namespace"' in selector, selector
                per_model_key = selector.startswith(
                    ("latency_oracle_model_", "latency_oracle_learner_")
                )
                if per_model_key and "sync_staleness" not in selector:
                    assert per_key.match(selector), selector
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "Sidecar proxy overhead",
        "Sidecar observations delivered and dropped / s",
        "Sidecar engine scrapes",
    } <= titles
