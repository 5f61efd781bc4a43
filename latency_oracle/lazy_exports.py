"""A package's public names, listed in its ``__init__`` and imported on first use (PEP 562).

``from latency_oracle.models import ModelRegistry`` is the way in, as in river; but an
``__init__`` that imported every module it exports would make each light import pay for
the heaviest: ``latency_oracle.features`` would bring numpy into the sidecar, which stays
small (``tests/test_layering.py``), and ``latency_oracle.sidecar`` its HTTP stack into the
simulator, which only counts in flight with ``sidecar.inflight``. So each name is imported
from its module when it is first read, then kept in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(
    package: str, exports: dict[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for a package that exports names lazily.

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        Module (relative to the package, dotted) -> the public names it defines.

    Returns
    -------
    tuple
        The sorted ``__all__``, and the module-level ``__getattr__`` and ``__dir__``.
    """
    where = {name: f"{package}.{module}" for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)  # read once; then a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return sorted(where), __getattr__, __dir__
