"""Accelerator names and the spec-sheet numbers the global model transfers knowledge with.

Pods report accelerator names in many spellings (``NVIDIA H100 80GB HBM3``, ``h100-sxm``,
``AMD Instinct MI300X``); models are keyed by one canonical name per type, so every name is
normalised here before it reaches a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """Public spec-sheet figures of one accelerator (dense BF16, no sparsity)."""

    tflops: float
    hbm_gbps: float
    memory_gb: float


# Vendor spec sheets: dense BF16 TFLOP/s, memory bandwidth GB/s, memory GB (SXM/OAM parts).
HARDWARE_SPECS: dict[str, HardwareSpec] = {
    "B200": HardwareSpec(2250.0, 8000.0, 180.0),
    "H200": HardwareSpec(989.0, 4800.0, 141.0),
    "H100": HardwareSpec(989.0, 3350.0, 80.0),
    "A100": HardwareSpec(312.0, 2039.0, 80.0),
    "L40S": HardwareSpec(362.0, 864.0, 48.0),
    "L40": HardwareSpec(181.0, 864.0, 48.0),
    "A40": HardwareSpec(149.7, 696.0, 48.0),
    "A10G": HardwareSpec(70.0, 600.0, 24.0),
    "L4": HardwareSpec(121.0, 300.0, 24.0),
    "T4": HardwareSpec(65.0, 320.0, 16.0),
    "MI300X": HardwareSpec(1307.0, 5300.0, 192.0),
    "MI250X": HardwareSpec(383.0, 3277.0, 128.0),
    "Gaudi2": HardwareSpec(432.0, 2460.0, 96.0),
    "Gaudi3": HardwareSpec(1835.0, 3700.0, 128.0),
    "TPUv5e": HardwareSpec(197.0, 819.0, 16.0),
    "CPU": HardwareSpec(4.0, 300.0, 512.0),
}

UNKNOWN_ACCELERATOR = "unknown"
# The pseudo-type of the model that learns from every accelerator (and its stream).
GLOBAL_ACCELERATOR = "global"
MAX_ACCELERATOR_NAME = 64

_CANONICAL_BY_KEY = {name.upper(): name for name in HARDWARE_SPECS}
_VENDOR_WORDS = re.compile(r"\b(NVIDIA|AMD|INSTINCT|INTEL|HABANA|GOOGLE|TESLA|GEFORCE)\b")
_NOISE = re.compile(r"[^A-Z0-9]")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Longest first so "H100" wins over "H10", "MI300X" over "MI300".
_PATTERNS = sorted(_CANONICAL_BY_KEY, key=len, reverse=True)


@lru_cache(maxsize=4096)
def normalize_accelerator(name: str) -> str:
    """Canonical accelerator type: a known type when one is named, else a cleaned token.

    Unknown types stay distinct (they get their own models) but are made safe for metric
    labels and Redis keys.
    """
    upper = _VENDOR_WORDS.sub(" ", name.strip().upper())
    compact = _NOISE.sub("", upper)
    if not compact:
        return UNKNOWN_ACCELERATOR
    for key in _PATTERNS:
        if compact.startswith(key):
            return _CANONICAL_BY_KEY[key]
    if compact.startswith(("XEON", "EPYC", "CPU")):
        return "CPU"
    cleaned = _SAFE.sub("-", name.strip()).strip("-")[:MAX_ACCELERATOR_NAME]
    return cleaned or UNKNOWN_ACCELERATOR


def hardware_spec(accelerator: str) -> HardwareSpec | None:
    """Spec-sheet numbers of a canonical accelerator type, or None when unknown."""
    return HARDWARE_SPECS.get(accelerator)
