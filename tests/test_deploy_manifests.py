"""The Kubernetes manifests and the Containerfile, checked by the tools that consume them.

Every kustomization is built by a real ``kubectl kustomize`` and every rendered object is
validated against the Kubernetes 1.29 and 1.33 OpenAPI schemas shipped in ``kubernetes-validate``
(offline, strict: unknown fields fail). No container engine runs in CI, so the
Containerfile is checked structurally instead of built.
"""

from __future__ import annotations

import re
import tomllib

import kubernetes_validate
import pytest
from manifests import (
    DEPLOY,
    KUSTOMIZATIONS,
    ROOT,
    WORKLOADS,
    containers,
    find,
    needs_kubectl,
    rendered,
)

from latency_oracle.predictor.app import create_app
from latency_oracle.settings import ENV_PREFIX, Settings

# The oldest Kubernetes the manifests support (native sidecars are on by default from 1.29)
# and a current one; kubernetes-validate ships both schemas, so no network is needed.
KUBERNETES_VERSIONS = ["1.29.0", "1.33.0"]
# Custom resources: validated against their CRDs' schemas in test_prometheus_operator.py.
CUSTOM_GROUPS = ("monitoring.coreos.com/",)


@needs_kubectl
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_validates_against_the_kubernetes_schema(
    kustomization: str, version: str
) -> None:
    docs = rendered(kustomization)
    assert len(docs) >= 2
    for doc in docs:
        if not doc["apiVersion"].startswith(CUSTOM_GROUPS):
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_object() -> None:
    """The schema check has teeth: a port that is not a number is refused."""
    broken = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "eighty"}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="port"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_setting_a_manifest_sets_is_a_real_setting(kustomization: str) -> None:
    docs = rendered(kustomization)
    config_maps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    checked = 0
    for _, container in containers(docs):
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env |= config_maps[source["configMapRef"]["name"]]
        env |= {e["name"]: e.get("value", "from-a-reference") for e in container.get("env", [])}
        ours = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        assert set(ours) <= fields, f"{container['name']}: unknown {set(ours) - fields}"
        literal = {k[len(ENV_PREFIX) :].lower(): v for k, v in ours.items() if "reference" not in v}
        Settings(**literal)  # the values parse and pass validation too
        checked += len(ours)
    assert checked > 0


@needs_kubectl
def test_predictor_probes_hit_the_apps_health_routes() -> None:
    docs = rendered("overlays/dev")
    predictor = find(docs, "Deployment", "latency-oracle-predictor")
    [container] = predictor["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    paths = {getattr(route, "path", None) for route in create_app(Settings()).routes}
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    trainer = find(docs, "Deployment", "latency-oracle-trainer")
    assert trainer["spec"]["template"]["spec"]["containers"][0]["args"] == ["train"]


@needs_kubectl
def test_trainer_is_probed_and_scraped_on_its_metrics_port() -> None:
    """The port the manifests name is the one the trainer's settings make it listen on."""
    trainer = find(rendered("overlays/dev"), "Deployment", "latency-oracle-trainer")
    template = trainer["spec"]["template"]
    [container] = template["spec"]["containers"]
    [port] = container["ports"]
    assert port["containerPort"] == Settings().trainer_metrics_port
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    assert template["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_container_requests_resources_and_services_select_pods(kustomization: str) -> None:
    docs = rendered(kustomization)
    for workload, container in containers(docs):
        assert container["resources"].get("requests"), f"{workload['metadata']['name']}"
    pod_labels = [
        d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] in WORKLOADS
    ]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        assert any(selector <= labels.items() for labels in pod_labels), service["metadata"]


@needs_kubectl
def test_redis_persists_with_aof_and_mlflow_uses_postgresql_from_a_secret() -> None:
    docs = rendered("overlays/dev")
    redis = find(docs, "StatefulSet", "latency-oracle-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert redis["spec"]["volumeClaimTemplates"]
    mlflow = find(docs, "Deployment", "latency-oracle-mlflow")["spec"]["template"]["spec"]
    [server] = mlflow["containers"]
    assert server["command"] == ["mlflow", "server"]
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in server["args"]
    ref = server["env"][0]["valueFrom"]["secretKeyRef"]
    secret = find(docs, "Secret", ref["name"])
    assert ref["key"] in secret["data"]
    assert find(docs, "StatefulSet", "latency-oracle-postgres")


@needs_kubectl
def test_prod_scales_the_predictor_and_guards_disruptions() -> None:
    docs = rendered("overlays/prod")
    assert find(docs, "Deployment", "latency-oracle-predictor")["spec"]["replicas"] == 3
    assert find(docs, "Deployment", "latency-oracle-trainer")["spec"]["replicas"] == 2
    hpa = find(docs, "HorizontalPodAutoscaler", "latency-oracle-predictor")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "latency-oracle-predictor"
    for name in ("latency-oracle-predictor", "latency-oracle-trainer"):
        pdb = find(docs, "PodDisruptionBudget", name)
        labels = find(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # prod brings its own PostgreSQL: no bundled database, no generated credentials
    assert not [d for d in docs if d["kind"] in ("Secret",) or "postgres" in d["metadata"]["name"]]
    images = {c["image"] for _, c in containers(docs)}
    assert all(image.startswith("registry.example.com/") for image in images - {"redis:7.2-alpine"})


def containerfile_stages() -> dict[str, list[str]]:
    """Instructions per stage name of the Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Containerfile").read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            name = line.split()[-1] if " AS " in line.upper() else f"stage{len(stages)}"
            current = stages.setdefault(name, [])
        current.append(line)
    return stages


def test_containerfile_is_multi_stage_slim_non_root_with_the_cli_entrypoint() -> None:
    stages = containerfile_stages()
    assert len(stages) >= 2
    final_name, final = list(stages.items())[-1]
    assert final[0].startswith("FROM python:3.11-slim")
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["latency-oracle"]' in final
    assert any(line.startswith("COPY --from=build ") for line in final)
    assert not any("pip install" in line for line in final), "the runtime stage builds nothing"

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "latency-oracle" in pyproject["project"]["scripts"]
    assert any(dep.startswith("xgboost-cpu") for dep in pyproject["project"]["dependencies"])
    copied = {line.split()[1].rstrip("/") for line in stages["build"] if line.startswith("COPY ")}
    packages = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    missed = {p for p in packages if not any(p == c or p.startswith(f"{c}/") for c in copied)}
    assert not missed, f"packages the image would miss: {missed}"
    if pyproject["tool"]["setuptools"].get("ext-modules"):
        assert any("gcc" in line for line in stages["build"]), "C extensions need a compiler"
    assert final_name == "runtime"
