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
import tomllib
from collections.abc import Callable
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
        # The packages' public names are imported when read (latency_oracle/lazy_exports.py):
        # the sidecar's records and counter come without numpy or the learners.
        (
            "from latency_oracle.sidecar import InflightCounter\n"
            "from latency_oracle.features import Observation, PodState",
            {"latency_oracle.models", "latency_oracle.routing", "numpy", *ML_STACK},
        ),
        # The simulated engine and the demo run real processes; neither needs a model.
        (
            "import latency_oracle.sim.engine.server, latency_oracle.sim.demo.launcher",
            {"latency_oracle.models", "latency_oracle.routing", *ML_STACK},
        ),
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


def imported_modules(source: Path) -> list[str]:
    """Every module a source file imports, including imports inside functions."""
    names = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


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
            for name in imported_modules(source):
                parts = name.split(".")
                if name in SHARED_ACROSS_LAYERS:
                    continue
                if parts[0] == "latency_oracle" and len(parts) > 1 and parts[1] in forbidden:
                    wrong.append(f"{source.relative_to(ROOT)}: {name}")
    assert not wrong, wrong


def test_the_simulator_subpackages_go_one_way() -> None:
    """``sim/``'s three jobs: the evaluation and the demo drive the engine, never the reverse,
    and the demo (real processes) does not need the evaluation."""
    above = {"engine": {"evaluation", "demo"}, "demo": {"evaluation"}, "evaluation": {"demo"}}
    wrong = []
    for subpackage, forbidden in above.items():
        for source in (ROOT / "sim" / subpackage).rglob("*.py"):
            for name in imported_modules(source):
                parts = name.split(".")
                if parts[:2] == ["latency_oracle", "sim"] and parts[2:3] and parts[2] in forbidden:
                    wrong.append(f"{source.relative_to(ROOT)}: {name}")
    assert not wrong, wrong


def test_every_import_uses_the_namespace() -> None:
    """The folders install as latency_oracle.*; a bare ``import models`` only works by luck."""
    bare = []
    for package in (*PACKAGES, "latency_oracle", "tests", "bench"):
        for source in (ROOT / package).rglob("*.py"):
            for name in imported_modules(source):
                top = name.split(".")[0]
                if top in PACKAGES:
                    bare.append(f"{source.relative_to(ROOT)}: {top}")
    assert not bare, bare


def test_every_package_folder_is_installed() -> None:
    """``pyproject.toml`` lists packages one by one: a subpackage left out is missing from
    the wheel, while an editable install (and so every other test) still finds it."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed


def package_modules() -> list[Path]:
    """Every module of the installed package, from the folders ``package-dir`` maps."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {ROOT / folder for folder in mapping["package-dir"].values()}
    nested = {f for f in folders if any(f != o and f.is_relative_to(o) for o in folders)}
    return sorted(m for folder in folders - nested for m in folder.rglob("*.py"))


# Names that mean one thing wherever they appear: a package's marker and its
# ``python -m`` entry, and a process's ASGI application (the predictor's, the sidecar's).
ONE_MEANING_EVERYWHERE = frozenset({"__init__.py", "__main__.py", "app.py"})
# The settings package names each module after the part of the product it configures
# (``settings/tracking.py`` holds ``operations/tracking.py``'s knobs), so its names repeat
# those parts' on purpose.
NAMED_AFTER_WHAT_IT_CONFIGURES = ROOT / "latency_oracle" / "settings"


def test_no_module_name_repeats_across_folders() -> None:
    """``from ... import schema`` or a stack trace through ``policies.py`` names one module."""
    folders_of: dict[str, list[str]] = {}
    for module in package_modules():
        if module.name in ONE_MEANING_EVERYWHERE:
            continue
        if module.parent == NAMED_AFTER_WHAT_IT_CONFIGURES:
            continue
        folders_of.setdefault(module.name, []).append(str(module.parent.relative_to(ROOT)))
    repeated = {name: folders for name, folders in folders_of.items() if len(folders) > 1}
    assert not repeated, repeated


def family_prefix(module: Path) -> str:
    """The part of a module's name before its first underscore: ``redis_keys`` -> ``redis``.

    Leading underscores are dropped first, so a compiled loop's private numpy twin
    (``_forest_walk_fallback.py``) counts with the module it serves (``forest.py``).
    """
    return module.stem.lstrip("_").split("_")[0]


def test_no_folder_holds_a_family_of_modules() -> None:
    """Three modules sharing a prefix are one topic: they belong in a subpackage of that
    name (``predictor/llmd/``, ``features/redis/``), not side by side in a flat folder.

    Two may share one (``pod_mirror.py``, ``pod_routes.py`` are two topics about pods);
    ``__init__.py`` and ``__main__.py`` are no family.
    """
    families: dict[tuple[str, str], list[str]] = {}
    for module in package_modules():
        if module.name in {"__init__.py", "__main__.py"}:
            continue
        folder = str(module.parent.relative_to(ROOT))
        families.setdefault((folder, family_prefix(module)), []).append(module.name)
    crowded = {f"{folder}/{prefix}*": names for (folder, prefix), names in families.items()}
    crowded = {family: names for family, names in crowded.items() if len(names) >= 3}
    assert not crowded, crowded


def run_time_imports(source: Path, modules: set[str]) -> set[str]:
    """The package's modules a file imports when it runs, in functions too: everything but
    what ``if TYPE_CHECKING:`` guards (annotations only)."""
    tree = ast.parse(source.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & modules


def test_no_import_cycle_runs(installed_module_name: Callable[[Path], str | None]) -> None:
    """A cycle works only while one of its imports stays inside a function, and breaks the
    day someone hoists it; it also ties modules that should change apart together."""
    sources = {installed_module_name(m): m for m in package_modules()}
    graph = {name: run_time_imports(path, set(sources)) - {name} for name, path in sources.items()}
    cycles = []
    state: dict[str, str] = {}  # "open" while on the DFS path, "done" once explored

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
