"""Doctests of the package, run on its modules as installed (``latency_oracle.*``).

``pyproject.toml``'s ``package-dir`` maps the top-level folders into one namespace
(``models/`` is ``latency_oracle.models``). pytest's ``--doctest-modules`` imports a file
by its place in the tree, as ``models.registry``: a second copy of a module already loaded
as ``latency_oracle.models.registry``, with classes of its own. Here each collected
module is swapped for one that imports the installed module instead.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

ROOT = Path(__file__).resolve().parent


def installed_name(path: Path) -> str | None:
    """``models/registry.py`` -> ``latency_oracle.models.registry``; None outside the package."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in sorted(mapping["package-dir"].items(), key=lambda p: -len(p[1])):
        if path.is_relative_to(ROOT / folder):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            return ".".join([package, *(p for p in parts if p != "__init__")])
    return None


@pytest.fixture(scope="session")
def installed_module_name() -> Callable[[Path], str | None]:
    """``installed_name``, for the tests that map source files to their modules."""
    return installed_name


class InstalledDoctestModule(DoctestModule):
    """A module's doctests, found in the module under its installed name."""

    def _getobj(self) -> ModuleType:
        return importlib.import_module(installed_name(self.path))


@pytest.hookimpl(wrapper=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> Iterator[pytest.Collector]:
    """A package folder as a plain folder: a ``Package`` node imports its ``__init__``
    as ``models`` (say), a second copy of ``latency_oracle.models``."""
    collected = yield
    if isinstance(collected, pytest.Package) and installed_name(path / "__init__.py"):
        return pytest.Dir.from_parent(parent, path=path)
    return collected


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Iterator[list]:
    """A package module's doctests, imported as installed; and no test module for it.

    A file named in ``testpaths`` is also collected as a test module (pytest collects
    what it is pointed at, whatever its name), which would import it a second time: the
    package's modules hold no tests, only examples.
    """
    collected = yield
    if installed_name(file_path) is None:
        return collected
    return [
        InstalledDoctestModule.from_parent(parent, path=file_path)
        for node in collected
        if type(node) is DoctestModule
    ]
