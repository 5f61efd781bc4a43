"""Compiled inner loops, or their numpy fallbacks where no C compiler built them.

The feature rows and the forest walk are C extensions (the fast path), built when the
package is installed. An install without a C compiler still works: each has a numpy
module of the same interface and the same results, slower. Which one a process runs is
decided once, at import, logged as a warning when it is the fallback, and reported on
``/readyz`` (``compute_paths``): a slow service must say why it is slow.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

COMPILED = "compiled"
FALLBACK = "numpy fallback (slow: the C extension is not built)"

logger = logging.getLogger(__name__)
_paths: dict[str, str] = {}


def load(extension: str, fallback: str) -> ModuleType:
    """The compiled module ``extension``, or the module ``fallback`` if it cannot be imported.

    Both are full module names; the choice is recorded under the extension's short name
    (``latency_oracle.models._forest_walk`` -> ``forest_walk``).
    """
    name = extension.rsplit(".", 1)[-1].lstrip("_")
    try:
        module = importlib.import_module(extension)
    except ImportError as error:
        logger.warning(
            "%s: C extension not available (%s); using the numpy fallback, which gives the "
            "same results more slowly. Reinstall with a C compiler for the fast path.",
            name,
            error,
        )
        _paths[name] = FALLBACK
        return importlib.import_module(fallback)
    _paths[name] = COMPILED
    return module


def compute_paths() -> dict[str, str]:
    """Each inner loop loaded so far -> ``COMPILED`` or ``FALLBACK``."""
    return dict(_paths)
