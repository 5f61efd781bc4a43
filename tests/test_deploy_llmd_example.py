"""deploy/examples/llm-d: the gateway's traffic passes the sidecar, the EPP asks Latency Oracle.

Built by a real ``kubectl kustomize``; the Kubernetes objects are validated against the
Kubernetes schemas (the InferencePool is a CRD, checked field by field here instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from manifests import KUBECTL, rendered

from latency_oracle.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def docs() -> tuple[dict[str, Any], ...]:
    return rendered("examples/llm-d")


def one(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pod_containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Containers by name, native sidecars (init containers) included."""
    spec = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def selects(labels: dict[str, str], deployment: dict[str, Any]) -> bool:
    return labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_kubernetes_objects_validate() -> None:
    version = kubernetes_validate.latest_version()
    built_in = [d for d in docs() if d["kind"] != "InferencePool"]
    assert {d["kind"] for d in built_in} == {"ConfigMap", "Service", "Deployment"}
    for doc in built_in:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_pool_targets_the_sidecar_port_of_the_pods_it_selects() -> None:
    pool = one("InferencePool", "vllm-llama")
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    [target] = pool["spec"]["targetPorts"]
    selector = pool["spec"]["selector"]["matchLabels"]
    [deployment] = [d for d in docs() if d["kind"] == "Deployment" and selects(selector, d)]
    containers = pod_containers(deployment)
    sidecar = containers["latency-oracle-sidecar"]
    [measured] = sidecar["ports"]
    # The pool, the sidecar's container port and its listen setting agree...
    assert target["number"] == measured["containerPort"]
    assert Settings(**_settings(sidecar)).sidecar_port == measured["containerPort"]
    # ...and the sidecar forwards to the port vLLM listens on, which the pool does not name.
    vllm_ports = {p["containerPort"] for p in containers["vllm"]["ports"]}
    engine_port = urlsplit(Settings(**_settings(sidecar)).engine_url).port
    assert engine_port in vllm_ports
    assert target["number"] not in vllm_ports
    for probe in ("livenessProbe", "readinessProbe"):
        assert sidecar[probe]["httpGet"]["port"] in (measured["name"], measured["containerPort"])


def test_the_endpoint_picker_is_the_pools_and_asks_latency_oracle() -> None:
    pool = one("InferencePool", "vllm-llama")
    picker = pool["spec"]["endpointPickerRef"]
    service = one("Service", picker["name"])
    assert picker["port"]["number"] in {p["port"] for p in service["spec"]["ports"]}
    epp = one("Deployment", picker["name"])
    assert (
        service["spec"]["selector"].items() <= epp["spec"]["template"]["metadata"]["labels"].items()
    )
    [container] = epp["spec"]["template"]["spec"]["containers"]
    assert f"--pool-name={pool['metadata']['name']}" in container["args"]
    assert "--enable-latency-predictor" in container["args"]
    predictor = _predictor_service()
    name, port = predictor["metadata"]["name"], predictor["spec"]["ports"][0]["port"]
    expected = f"http://{name}.latency-oracle.svc:{port}"
    assert env(container)["PREDICTION_SERVER_URL"] == expected
    assert env(container)["TRAINING_SERVER_URL"] == expected


def _settings(container: dict[str, Any]) -> dict[str, str]:
    prefix = "LATENCY_ORACLE_"
    return {k[len(prefix) :].lower(): v for k, v in env(container).items() if k.startswith(prefix)}


def _predictor_service() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "deploy" / "base" / "predictor.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == "Service")
