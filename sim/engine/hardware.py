"""Accelerator profiles: the measured non-attention cost curve of each simulated GPU.

Three GPUs are measured (H100, A100, A40: ``sim/engine/gpu_profiles.py``). Every other type in
``features.accelerators.HARDWARE_SPECS`` is derived from one measured GPU (H100 unless
told otherwise) by spec-sheet ratios, split by a roofline of the layer's GEMMs:

    t_target(n) = t_base(n) * [ w(n) * F_base / F_target + (1 - w(n)) * B_base / B_target ]
    w(n)        = n / (n + F_base / B_base)

``F`` is dense BF16 FLOP/s, ``B`` HBM bytes/s and ``n`` the batch token count. A BF16
GEMM does 2 FLOPs per weight per token and reads 2 bytes per weight, so on the base GPU
its compute time over its weight-read time is ``n / (F/B)``; ``w(n)`` is the share of the
layer bound by compute, the rest is bound by reading weights. Small batches therefore
scale with bandwidth and large prefills with FLOP/s. Memory size sets KV capacity
(``sim/engine/perf_model.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_oracle.features.accelerators import HARDWARE_SPECS, HardwareSpec, normalize_accelerator
from latency_oracle.sim.engine.gpu_profiles import MEASURED_GPUS, MeasuredLayerCosts, load_measured

DEFAULT_BASE_GPU = "H100"


@dataclass(frozen=True, slots=True)
class AcceleratorProfile:
    """One accelerator type as the simulator sees it."""

    name: str
    spec: HardwareSpec
    measured: MeasuredLayerCosts  # the measured GPU this profile's curve comes from

    @property
    def derived(self) -> bool:
        return self.name != self.measured.gpu

    @property
    def source(self) -> str:
        return f"derived from {self.measured.gpu}" if self.derived else "measured"

    def layer_ms(self, tp: int, tokens: np.ndarray) -> np.ndarray:
        """Non-attention ms of one layer (embedding share included) at these token counts."""
        if tp not in self.measured.layer_ms:
            raise ValueError(f"tp={tp}: measured degrees are {self.measured.tp_degrees()}")
        base_ms = self.measured.interpolate(tp, tokens)
        if not self.derived:
            return base_ms
        base = HARDWARE_SPECS[self.measured.gpu]
        ridge_tokens = base.tflops * 1e12 / (base.hbm_gbps * 1e9)
        compute_share = tokens / (tokens + ridge_tokens)
        scale = compute_share * base.tflops / self.spec.tflops + (1 - compute_share) * (
            base.hbm_gbps / self.spec.hbm_gbps
        )
        return base_ms * scale


def accelerator_profile(
    accelerator: str, model: str, data_dir: Path, base_gpu: str = DEFAULT_BASE_GPU
) -> AcceleratorProfile:
    """The profile of ``accelerator`` (any spelling) serving ``model``."""
    name = normalize_accelerator(accelerator)
    spec = HARDWARE_SPECS.get(name)
    if spec is None:
        raise ValueError(f"accelerator {accelerator!r}: known types are {sorted(HARDWARE_SPECS)}")
    source = name if name in MEASURED_GPUS else normalize_accelerator(base_gpu)
    return AcceleratorProfile(name, spec, load_measured(source, model, data_dir))
