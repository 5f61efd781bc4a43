"""The sidecar component as a cluster runs it: a native sidecar in front of vLLM.

It must start before the engine and stop after it (an init container with
``restartPolicy: Always``), never be restarted while the engine loads a model (liveness is
the process, readiness the engine), take the Service's traffic on its port, and learn
each GPU pool under its own accelerator type, read from the pod's label.
"""

from __future__ import annotations

from manifests import Doc, find, needs_kubectl, rendered

from latency_oracle.features.accelerators import UNKNOWN_ACCELERATOR, normalize_accelerator

EXAMPLE = "examples/vllm-sidecar"
SIDECAR = "latency-oracle-sidecar"
ACCELERATOR_LABEL = "latency-oracle.io/accelerator"


def patched_deployments() -> list[Doc]:
    docs = rendered(EXAMPLE)
    patched = [d for d in docs if d["kind"] == "Deployment"]
    assert len(patched) >= 2, "the example shows two GPU pools"
    return patched


def sidecar_of(deployment: Doc) -> Doc:
    pod = deployment["spec"]["template"]["spec"]
    assert SIDECAR not in {c["name"] for c in pod["containers"]}
    [sidecar] = [c for c in pod["initContainers"] if c["name"] == SIDECAR]
    return sidecar


@needs_kubectl
def test_sidecar_is_native_and_probed_on_process_then_engine() -> None:
    for deployment in patched_deployments():
        sidecar = sidecar_of(deployment)
        assert sidecar["restartPolicy"] == "Always"
        assert sidecar["args"] == ["sidecar"]
        paths = {
            probe: sidecar[probe]["httpGet"]["path"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert paths == {
            "startupProbe": "/sidecar/livez",
            "livenessProbe": "/sidecar/livez",
            "readinessProbe": "/sidecar/readyz",
        }


@needs_kubectl
def test_service_port_goes_to_the_sidecar_which_fronts_vllm() -> None:
    docs = rendered(EXAMPLE)
    [port] = find(docs, "Service", "vllm-llama")["spec"]["ports"]
    for deployment in patched_deployments():
        sidecar = sidecar_of(deployment)
        env = {e["name"]: e.get("value") for e in sidecar["env"]}
        [vllm] = deployment["spec"]["template"]["spec"]["containers"]
        assert (
            env["LATENCY_ORACLE_ENGINE_URL"]
            == f"http://127.0.0.1:{vllm['ports'][0]['containerPort']}"
        )
        [measured] = sidecar["ports"]
        assert measured["containerPort"] == int(env["LATENCY_ORACLE_SIDECAR_PORT"])
        # by number: named ports of init containers resolve for Services only from 1.32
        assert port["targetPort"] == measured["containerPort"]
        assert sidecar["readinessProbe"]["httpGet"]["port"] == measured["name"]


@needs_kubectl
def test_each_pool_learns_under_its_own_accelerator_from_the_pod_label() -> None:
    accelerators = set()
    for deployment in patched_deployments():
        template = deployment["spec"]["template"]
        [source] = [
            e for e in sidecar_of(deployment)["env"] if e["name"] == "LATENCY_ORACLE_ACCELERATOR"
        ]
        field = source["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == f"metadata.labels['{ACCELERATOR_LABEL}']"
        value = template["metadata"]["labels"][ACCELERATOR_LABEL]
        accelerator = normalize_accelerator(value)
        assert accelerator != UNKNOWN_ACCELERATOR, value
        # the label names the GPU the pool's pods are pinned to
        node_gpu = template["spec"].get("nodeSelector", {}).get("nvidia.com/gpu.product")
        assert node_gpu is None or normalize_accelerator(node_gpu) == accelerator
        accelerators.add(accelerator)
    assert len(accelerators) == len(patched_deployments()), "pools share no hard-coded type"
