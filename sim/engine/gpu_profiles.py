"""Measured per-layer GPU step costs (vidur's ``mlp.csv``), loaded once and interpolated.

The files in ``sim/data/gpu-profiles/<gpu>/<model>/mlp.csv`` are the vidur project's
CUDA-event measurements (MIT licence, ``sim/data/gpu-profiles/LICENSE-vidur``) of every
operator of a Llama-2 decoder layer except attention, by batch token count and
tensor-parallel degree. They ship inside the package (``sim/data/README.md`` attributes
them), so a wheel runs the simulated engine with nothing beside it.

One layer's cost is the sum of the operator medians, with the residual ``add`` counted
twice (a decoder layer has two residual adds) and the embedding lookup left out (it runs
once per forward pass, not once per layer: see ``embedding_ms``). Rows measured twice
for the same (tokens, TP) are averaged.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from latency_oracle.settings import Settings

# The reference data vendored as package data (latency_oracle/sim/data once installed).
PACKAGED_DATA = Path(__file__).resolve().parents[1] / "data"

# Operators of one decoder layer and how often each runs per layer.
LAYER_OPS: dict[str, int] = {
    "input_layernorm": 1,
    "attn_pre_proj": 1,
    "attn_rope": 1,
    "attn_post_proj": 1,
    "post_attention_layernorm": 1,
    "mlp_up_proj": 1,
    "mlp_act": 1,
    "mlp_down_proj": 1,
    "add": 2,
}

# Published model names -> layer count (not a column of the files).
MODEL_LAYERS: dict[str, int] = {"Llama-2-7b-hf": 32, "Llama-2-70b-hf": 80}
MODEL_ALIASES: dict[str, str] = {
    "7b": "Llama-2-7b-hf",
    "llama-2-7b": "Llama-2-7b-hf",
    "llama-2-7b-hf": "Llama-2-7b-hf",
    "meta-llama/llama-2-7b-hf": "Llama-2-7b-hf",
    "70b": "Llama-2-70b-hf",
    "llama-2-70b": "Llama-2-70b-hf",
    "llama-2-70b-hf": "Llama-2-70b-hf",
    "meta-llama/llama-2-70b-hf": "Llama-2-70b-hf",
}
MEASURED_GPUS: dict[str, str] = {"H100": "h100", "A100": "a100", "A40": "a40"}
# Beyond the largest measured batch, extrapolate along the slope of this last stretch.
EXTRAPOLATION_SPAN_TOKENS = 512
# GEMM kernels cover the batch in tiles of this many tokens: the measured cost jumps just
# past each multiple (72, 136, 264, 520 tokens...) and stays nearly flat within a tile.
GEMM_TILE_TOKENS = 64


class ReferenceDataMissing(FileNotFoundError):
    """The reference measurements are not on this machine."""


def shared_data_dir(settings: Settings | None = None) -> Path:
    """The reference data folder: the setting when given, else the data the package ships."""
    configured = (settings or Settings()).shared_data_dir
    return Path(configured) if configured is not None else PACKAGED_DATA


def canonical_model(name: str) -> str:
    """``7b``, ``meta-llama/Llama-2-7b-hf`` ... -> the profile folder name."""
    if name in MODEL_LAYERS:
        return name
    try:
        return MODEL_ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"model {name!r}: known models are {sorted(MODEL_LAYERS)}") from None


@dataclass(frozen=True, slots=True)
class ModelShape:
    """Llama-2 shape from the profile's columns plus the layer count."""

    name: str
    n_layers: int
    n_head: int
    n_kv_head: int
    n_embd: int
    n_expanded_embd: int
    vocab_size: int

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def parameters(self) -> int:
        """Weights: attention (q, o full; k, v grouped), gated MLP, embedding and LM head."""
        kv_width = self.n_kv_head * self.head_dim
        attention = 2 * self.n_embd * self.n_embd + 2 * self.n_embd * kv_width
        mlp = 3 * self.n_embd * self.n_expanded_embd
        return self.n_layers * (attention + mlp) + 2 * self.vocab_size * self.n_embd


@dataclass(frozen=True, slots=True)
class MeasuredLayerCosts:
    """One GPU's measured non-attention cost of one layer, per TP degree."""

    gpu: str
    shape: ModelShape
    tokens: np.ndarray  # sorted distinct measured batch token counts
    layer_ms: dict[int, np.ndarray]  # TP degree -> ms per layer at ``tokens``
    embedding_ms: dict[int, np.ndarray]  # TP degree -> ms of the embedding lookup

    def tp_degrees(self) -> tuple[int, ...]:
        return tuple(sorted(self.layer_ms))

    def interpolate(self, tp: int, tokens: np.ndarray) -> np.ndarray:
        """ms per layer (embedding included once per layer count) at any token counts."""
        layer = _interpolate(self.tokens, self.layer_ms[tp], tokens)
        embedding = _interpolate(self.tokens, self.embedding_ms[tp], tokens)
        return layer + embedding / self.shape.n_layers


def _interpolate(known_x: np.ndarray, known_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear between measured points in the same GEMM tile; flat across a tile boundary.

    A straight line across a boundary averages two cost levels and misses both (by up to
    20% on these files); the measured neighbour in the query's own tile has its level.
    Above the largest measurement: linear extrapolation along the last stretch.
    """
    inside = np.interp(x, known_x, known_y)
    upper = np.clip(np.searchsorted(known_x, x), 1, len(known_x) - 1)
    lower = upper - 1
    tile, known_tile = np.ceil(x / GEMM_TILE_TOKENS), np.ceil(known_x / GEMM_TILE_TOKENS)
    lower_in, upper_in = known_tile[lower] == tile, known_tile[upper] == tile
    inside = np.where(lower_in & ~upper_in, known_y[lower], inside)
    inside = np.where(upper_in & ~lower_in, known_y[upper], inside)
    last = known_x[-1]
    anchor = int(np.searchsorted(known_x, last - EXTRAPOLATION_SPAN_TOKENS))
    slope = (known_y[-1] - known_y[anchor]) / max(last - known_x[anchor], 1)
    return np.where(x > last, known_y[-1] + slope * (x - last), inside)


@lru_cache(maxsize=16)
def load_measured(gpu: str, model: str, data_dir: Path) -> MeasuredLayerCosts:
    """Parse one ``mlp.csv`` (about 1,000 rows) into per-TP cost curves."""
    folder = MEASURED_GPUS.get(gpu)
    if folder is None:
        raise ValueError(f"no measurements for {gpu!r}: measured GPUs are {list(MEASURED_GPUS)}")
    model = canonical_model(model)
    path = data_dir / "gpu-profiles" / folder / model / "mlp.csv"
    if not path.is_file():
        raise ReferenceDataMissing(f"{path} not found (set LATENCY_ORACLE_SHARED_DATA_DIR)")
    sums: dict[tuple[int, int], list[tuple[float, float]]] = {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        key = (int(row["num_tensor_parallel_workers"]), int(row["num_tokens"]))
        layer = sum(float(row[f"time_stats.{op}.median"]) * n for op, n in LAYER_OPS.items())
        sums.setdefault(key, []).append((layer, float(row["time_stats.emb.median"])))
    first = rows[0]
    shape = ModelShape(
        name=model,
        n_layers=MODEL_LAYERS[model],
        n_head=int(first["n_head"]),
        n_kv_head=int(first["n_kv_head"]),
        n_embd=int(first["n_embd"]),
        n_expanded_embd=int(first["n_expanded_embd"]),
        vocab_size=int(first["vocab_size"]),
    )
    tokens = np.array(sorted({t for _, t in sums}), dtype=float)
    layer_ms: dict[int, np.ndarray] = {}
    embedding_ms: dict[int, np.ndarray] = {}
    for tp in sorted({tp for tp, _ in sums}):
        means = np.array([np.mean(sums[(tp, int(t))], axis=0) for t in tokens])
        layer_ms[tp], embedding_ms[tp] = means[:, 0], means[:, 1]
    return MeasuredLayerCosts(gpu, shape, tokens, layer_ms, embedding_ms)
