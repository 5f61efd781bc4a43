"""The public API (``__all__`` of each package) imports, and the docs' API reference shows
every name of it.

Each package exports its names lazily (``latency_oracle/lazy_exports.py``); here every one
is read, so a name listed but renamed or moved fails at once rather than for a user.
"""

from __future__ import annotations

import importlib
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
