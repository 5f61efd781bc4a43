"""Imports go one way (DEVELOPERS.md, "Layers"): each entry point, imported in a fresh
interpreter, loads only the packages below it.

A fresh interpreter per entry point, because within the test process everything is
already imported; what a process loads is what it pays for in start-up and memory.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "routing", "operations", "predictor", "trainer", "sidecar", "sim")
ML_STACK = ("xgboost", "river", "mlflow", "sklearn")


def loaded_by(statement: str) -> set[str]:
    """Top-level modules and latency_oracle subpackages a fresh interpreter has after it."""
    probe = (
        f"import sys, json\n{statement}\n"
        "print(json.dumps(sorted({'.'.join(m.split('.')[:2]) if m.startswith('latency_oracle.')"
        " else m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        # The sidecar: a proxy in every vLLM pod, through the CLI as it is started.
        (
            "import latency_oracle.cli as c; c.build_parser(); import latency_oracle.sidecar.app",
            {"latency_oracle.models", "latency_oracle.predictor", "latency_oracle.routing"}
            | set(ML_STACK),
        ),
        (
            "import latency_oracle.trainer.loop",
            {"latency_oracle.predictor", "latency_oracle.routing", "latency_oracle.sidecar"},
        ),
        ("import latency_oracle.sim.evaluation.load_sweep", {"latency_oracle.predictor"}),
        (
            "import latency_oracle.routing.router",
            {"latency_oracle.predictor", "latency_oracle.operations"},
        ),
        ("import latency_oracle.models.registry", {"latency_oracle.predictor"}),
        (
            "import latency_oracle.features.engineering,"
            " latency_oracle.features.redis.observation_store",
            {"latency_oracle.models", *ML_STACK},
        ),
    ],
)
def test_entry_point_loads_nothing_above_it(statement: str, forbidden: set[str]) -> None:
    loaded = loaded_by(statement)
    assert not loaded & forbidden, f"{statement!r} loaded {sorted(loaded & forbidden)}"


# Modules of a higher layer that a lower one may use: pure, without I/O or dependencies.
# The cluster simulator counts in-flight work with the sidecar's own counter, so the
# evaluation's policies see what a real sidecar would publish.
SHARED_ACROSS_LAYERS = frozenset({"latency_oracle.sidecar.inflight"})


def test_no_module_imports_a_layer_above_it() -> None:
    """Statically, including imports inside functions: a lazy import is still a dependency."""
    above = {
        "features": {"models", "routing", "operations", "predictor", "trainer", "sidecar", "sim"},
        "models": {"routing", "operations", "predictor", "trainer", "sidecar", "sim"},
        "routing": {"operations", "predictor", "trainer", "sidecar", "sim"},
        "operations": {"routing", "predictor", "trainer", "sidecar", "sim"},
        "trainer": {"predictor", "routing", "sidecar", "sim"},
        "sidecar": {"models", "routing", "predictor", "trainer", "sim"},
        "sim": {"predictor", "trainer", "sidecar"},
    }
    # The simulated cluster counts in-flight work with the sidecar's own counter (a plain,
    # dependency-free module), so the evaluation's policies see what production sees.
    wrong = []
    for package, forbidden in above.items():
        for source in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    if name in SHARED_ACROSS_LAYERS:
                        continue
                    if parts[0] == "latency_oracle" and len(parts) > 1 and parts[1] in forbidden:
                        wrong.append(f"{source.relative_to(ROOT)}: {name}")
    assert not wrong, wrong


def test_every_import_uses_the_namespace() -> None:
    """The folders install as latency_oracle.*; a bare ``import models`` only works by luck."""
    bare = []
    for package in (*PACKAGES, "latency_oracle", "tests", "bench"):
        for source in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    top = node.module.split(".")[0]
                elif isinstance(node, ast.Import):
                    top = node.names[0].name.split(".")[0]
                else:
                    continue
                if top in PACKAGES:
                    bare.append(f"{source.relative_to(ROOT)}: {top}")
    assert not bare, bare
