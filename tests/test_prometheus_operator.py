"""What Prometheus Operator users apply: PodMonitors, the PrometheusRule, and the runbook.

The custom resources are validated against the operator's own CRD schemas (vendored in
``tests/fixtures/crds``), strictly: a field the CRD does not define fails here instead of
being pruned silently by the API server. The PrometheusRule must carry exactly the rules
``alerts.yaml`` holds, and its rendered content passes ``promtool`` and the rule unit tests;
every alert has a ``for:`` and a runbook section of its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from manifests import DEPLOY, ROOT, Doc, find, needs_kubectl, rendered
from test_alert_rules import PROMTOOL, needs_promtool

CRDS = Path(__file__).parent / "fixtures" / "crds"
RULES = DEPLOY / "prometheus"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/latency-oracle/latency-oracle/blob/main/docs/runbook.md"


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


@cache
def crd_validator(kind: str) -> jsonschema.Validator:
    crd = json.loads((CRDS / f"{kind.lower()}-v1.json").read_text())
    schema = strict(crd["schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # the API server's ObjectMeta
    return jsonschema.Draft7Validator(schema)


def validate_custom(doc: Doc) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["apiVersion"]
    errors = [e.message for e in crd_validator(doc["kind"]).iter_errors(doc)]
    assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load((RULES / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@needs_kubectl
def test_custom_resources_validate_against_their_crds() -> None:
    docs = rendered("overlays/prod")
    custom = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {d["kind"] for d in custom} == {"PodMonitor", "PrometheusRule"}
    for doc in custom:
        validate_custom(doc)


def test_the_crd_check_refuses_a_misspelt_field() -> None:
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "http", "pathh": "/m"}]},
    }
    with pytest.raises(AssertionError, match="pathh"):
        validate_custom(monitor)


def test_the_prometheusrule_is_generated_from_alerts_yaml() -> None:
    script = RULES / "prometheusrule.py"
    checked = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


@needs_kubectl
@needs_promtool
def test_the_rendered_prometheusrule_passes_promtool_and_the_rule_tests(tmp_path: Path) -> None:
    rule = find(rendered("overlays/prod"), "PrometheusRule", "latency-oracle")
    assert rule["spec"]["groups"] == yaml.safe_load((RULES / "alerts.yaml").read_text())["groups"]
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(RULES / "alerts_test.yaml", tmp_path)
    for args in (("check", "rules", "alerts.yaml"), ("test", "rules", "alerts_test.yaml")):
        done = subprocess.run(
            [str(PROMTOOL), *args], capture_output=True, text=True, cwd=tmp_path, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_waits_and_links_its_own_runbook_section() -> None:
    headings = re.findall(r"^## (\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    names = [rule["alert"] for rule in alerts()]
    assert sorted(headings) == sorted(names), "one runbook section per alert"
    for rule in alerts():
        assert rule.get("for"), f"{rule['alert']} has no for:"
        url = rule["annotations"]["runbook_url"]
        assert url == f"{RUNBOOK_URL}#{rule['alert'].lower()}"  # GitHub's anchor of the heading
    names_absent = {rule["alert"] for rule in alerts() if "absent(" in rule["expr"]}
    assert names_absent == {"LatencyOraclePredictorAbsent", "LatencyOracleTrainerAbsent"}


def pod_ports(template: Doc) -> set[str]:
    pod = template["spec"]
    return {
        port["name"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]
        for port in container.get("ports", [])
    }


@needs_kubectl
def test_pod_monitors_select_pods_with_the_port_they_scrape() -> None:
    prod = rendered("overlays/prod")
    templates = [
        d["spec"]["template"]
        for d in (*prod, *rendered("examples/vllm-sidecar"))
        if d["kind"] == "Deployment"
    ]
    monitors = [d for d in prod if d["kind"] == "PodMonitor"]
    assert len(monitors) == 3
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"].items()
        selected = [t for t in templates if selector <= t["metadata"]["labels"].items()]
        assert selected, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert all(endpoint["port"] in pod_ports(t) for t in selected), endpoint
    sidecar = find(prod, "PodMonitor", "latency-oracle-sidecar")["spec"]
    assert sidecar["namespaceSelector"] == {"any": True}
    assert sidecar["podMetricsEndpoints"][0]["path"] == "/sidecar/metrics"
