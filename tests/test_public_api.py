"""The public API (``__all__`` of each package) imports, and the docs' API reference shows
every name of it.

Each package exports its names lazily (``latency_oracle/lazy_exports.py``); here every one
is read, so a name listed but renamed or moved fails at once rather than for a user.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_PACKAGES = ("models", "features", "routing", "sidecar")


def reference_entries() -> dict[str, object]:
    """What each ``::: dotted.path`` of the API reference page documents, by its name."""
    entries = {}
    for line in (ROOT / "docs" / "api-reference.md").read_text().splitlines():
        if line.startswith("::: "):
            module, name = line[4:].strip().rsplit(".", 1)
            entries[name] = getattr(importlib.import_module(module), name)
    return entries


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_name_is_in_the_api_reference(package: str) -> None:
    exported = importlib.import_module(f"latency_oracle.{package}")
    documented = reference_entries()
    missing = [n for n in exported.__all__ if documented.get(n) is not getattr(exported, n)]
    assert exported.__all__, f"latency_oracle.{package} exports nothing"
    assert not missing, f"not in docs/api-reference.md: {missing}"


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_star_import_gives_exactly_the_public_names(package: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from latency_oracle.{package} import *", namespace)
    exported = importlib.import_module(f"latency_oracle.{package}")
    assert set(namespace) - {"__builtins__"} == set(exported.__all__)
    assert set(exported.__all__) <= set(dir(exported))


def test_an_unknown_name_is_an_attribute_error() -> None:
    import latency_oracle.models

    with pytest.raises(AttributeError, match="no attribute 'ModelRegistri'"):
        _ = latency_oracle.models.ModelRegistri


# The core entry points, each with a runnable example that `.venv/bin/pytest` runs
# (``--doctest-modules`` on the modules ``testpaths`` lists; ``conftest.py`` at the root).
CORE_ENTRY_POINTS = (
    ("latency_oracle.models.registry", "ModelRegistry.learn"),
    ("latency_oracle.models.registry", "ModelRegistry.predict"),
    ("latency_oracle.routing.router", "Router.route"),
    ("latency_oracle.features.engineering", "build_features"),
    ("latency_oracle.sidecar.inflight", "InflightCounter"),
)


@pytest.mark.parametrize(("module_name", "attribute"), CORE_ENTRY_POINTS)
def test_core_entry_points_have_examples_that_the_tests_run(
    module_name: str, attribute: str
) -> None:
    module = importlib.import_module(module_name)
    item = module
    for part in attribute.split("."):
        item = getattr(item, part)
    doc = item.__doc__ or ""
    assert "Examples\n" in doc and ">>> " in doc, f"{attribute} has no Examples section"
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    options = options["ini_options"]
    assert str(Path(module.__file__).relative_to(ROOT)) in options["testpaths"]
    assert "--doctest-modules" in options["addopts"].split()
