"""MkDocs hook: the package laid out as it is installed, for mkdocstrings to read.

``pyproject.toml``'s ``package-dir`` maps the top-level folders into one namespace
(``models/`` is ``latency_oracle.models``). Static analysis (griffe, under mkdocstrings)
finds a package's modules by walking its folder, so it cannot follow that mapping. This
builds the installed layout out of symbolic links under ``build/docs-src/`` (ignored by
git), the search path ``mkdocs.yml`` gives mkdocstrings, before any page is read.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority

SOURCE_TREE = Path("build") / "docs-src"


def package_dirs(root: Path) -> dict[str, Path]:
    """Package name to its folder, from ``[tool.setuptools.package-dir]``."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {package: root / folder for package, folder in mapping.items()}


def build_source_tree(root: Path) -> Path:
    """Link every package's folder where its dotted name puts it; returns the tree's root.

    Built afresh each time, so a package moved or dropped leaves no stale link. A
    top-level package is a real folder whose entries link to its source's (so the
    subpackages mapped from elsewhere can be linked beside them without writing into the
    source); a subpackage whose folder already shows up there through its parent is left
    as it is.
    """
    tree = root / SOURCE_TREE
    shutil.rmtree(tree, ignore_errors=True)  # removes the links, never what they point at
    for package, folder in sorted(package_dirs(root).items(), key=lambda p: p[0].count(".")):
        target = tree.joinpath(*package.split("."))
        if "." not in package:
            target.mkdir(parents=True)
            for entry in folder.iterdir():
                if entry.name != "__pycache__":
                    (target / entry.name).symlink_to(entry.resolve(), entry.is_dir())
        elif not (target.exists() and target.resolve() == folder.resolve()):
            target.symlink_to(folder.resolve(), target_is_directory=True)
    return tree


@event_priority(100)  # before mkdocstrings reads its search paths
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    build_source_tree(Path(config.config_file_path).parent)
    return config
