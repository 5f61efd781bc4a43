"""The one feature function, shared by training and prediction.

Train/serve skew is the classic bug of online latency models, so there is exactly one
path from a record to a feature row: records become ``RequestColumns`` (one numpy array
per raw field) and ``build_features`` turns columns into the model matrix, vectorised.
Features are chosen so that a linear model on a log-latency target can already express
the physics: prefill time grows with uncached prompt tokens plus queued prefill work over
compute speed, decode time with decode tokens in flight over memory bandwidth.

Only what is known when a request arrives is a feature. Output tokens generated are an
outcome: an observation knows them, a routing request does not (it has ``max_tokens``),
so using them would train on one value and predict on another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from features.accelerators import HARDWARE_SPECS, hardware_spec
from features.schema import PodRole, PredictionRequest

FEATURE_NAMES: tuple[str, ...] = (
    "log_input_tokens",
    "log_cached_tokens",
    "log_uncached_tokens",
    "prefix_hit_fraction",
    "running_requests",
    "waiting_requests",
    "log_running_requests",
    "log_waiting_requests",
    "kv_cache_usage",
    "log_prefill_in_flight",
    "log_decode_in_flight",
    "log_queued_prefill_work",
    "log_max_tokens",
    "role_prefill",
    "role_decode",
    "log_tflops",
    "log_hbm_gbps",
    "log_memory_gb",
    "hardware_known",
    "log_prefill_compute_time",
    "log_decode_memory_time",
)
N_FEATURES = len(FEATURE_NAMES)
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
# Where build_features writes its log1p'd counts and its logged spec-sheet figures.
_LOG1P_AT = [
    _COLUMN[name]
    for name in (
        "log_input_tokens",
        "log_cached_tokens",
        "log_uncached_tokens",
        "log_running_requests",
        "log_waiting_requests",
        "log_prefill_in_flight",
        "log_decode_in_flight",
        "log_queued_prefill_work",
        "log_max_tokens",
    )
]
_LOG_HARDWARE_AT = [_COLUMN[name] for name in ("log_tflops", "log_hbm_gbps", "log_memory_gb")]

# Physics every model must respect, whatever its training data: more queued work, load or
# KV pressure never makes a request faster; more compute (TTFT) or bandwidth (TPOT) never
# makes it slower. Learners are constrained to these signs (+1 rising, -1 falling), which
# keeps predictions sane for pod states outside the data seen so far.
_RISING_BOTH = (
    "running_requests",
    "log_running_requests",
    "kv_cache_usage",
    "log_prefill_in_flight",
    "log_decode_in_flight",
)
MONOTONE_SIGNS: dict[str, dict[str, int]] = {
    "ttft": dict.fromkeys(
        (
            *_RISING_BOTH,
            "log_input_tokens",
            "log_uncached_tokens",
            "waiting_requests",
            "log_waiting_requests",
            "log_queued_prefill_work",
            "log_prefill_compute_time",
        ),
        1,
    )
    | {"log_tflops": -1},
    "tpot": dict.fromkeys((*_RISING_BOTH, "log_decode_memory_time"), 1) | {"log_hbm_gbps": -1},
}


def monotone_signs(target: str) -> tuple[int, ...]:
    """Per-feature monotonicity (-1, 0, +1) of ``target`` ("ttft" or "tpot")."""
    signs = MONOTONE_SIGNS[target]
    return tuple(signs.get(name, 0) for name in FEATURE_NAMES)


_MEDIAN_SPEC = np.median(
    np.array([[s.tflops, s.hbm_gbps, s.memory_gb] for s in HARDWARE_SPECS.values()]), axis=0
)
ROLE_CODES = {PodRole.BOTH: 0, PodRole.PREFILL: 1, PodRole.DECODE: 2}


@dataclass(frozen=True, slots=True)
class RequestColumns:
    """A batch of prediction requests (or observations) as one array per raw field."""

    accelerator: np.ndarray  # object array of canonical names
    pod: np.ndarray  # object array of pod names ("" when unknown); not a feature
    role: np.ndarray  # int8 codes, see ROLE_CODES
    input_tokens: np.ndarray
    cached_tokens: np.ndarray
    max_tokens: np.ndarray
    running_requests: np.ndarray
    waiting_requests: np.ndarray
    kv_cache_usage: np.ndarray
    prefill_tokens_in_flight: np.ndarray
    decode_tokens_in_flight: np.ndarray

    def __len__(self) -> int:
        return len(self.input_tokens)

    @classmethod
    def from_requests(cls, requests: Sequence[PredictionRequest]) -> RequestColumns:
        """Columns of validated records (observations are prediction requests too)."""
        raw = np.array(
            [
                (
                    r.input_tokens,
                    r.cached_tokens(),
                    r.max_tokens,
                    r.running_requests,
                    r.waiting_requests,
                    r.kv_cache_usage,
                    r.prefill_tokens_in_flight,
                    r.decode_tokens_in_flight,
                    ROLE_CODES[r.role],
                )
                for r in requests
            ],
            dtype=np.float64,
        ).reshape(len(requests), 9)
        return cls(
            accelerator=np.array([r.accelerator for r in requests], dtype=object),
            pod=np.array([r.pod for r in requests], dtype=object),
            role=raw[:, 8].astype(np.int8),
            input_tokens=raw[:, 0],
            cached_tokens=raw[:, 1],
            max_tokens=raw[:, 2],
            running_requests=raw[:, 3],
            waiting_requests=raw[:, 4],
            kv_cache_usage=raw[:, 5],
            prefill_tokens_in_flight=raw[:, 6],
            decode_tokens_in_flight=raw[:, 7],
        )

    def take(self, index: np.ndarray) -> RequestColumns:
        """The rows at ``index`` (a boolean mask or integer positions)."""
        return RequestColumns(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@lru_cache(maxsize=1024)
def _hardware_row(accelerator: str) -> tuple[float, float, float, float]:
    spec = hardware_spec(accelerator)
    if spec is None:
        return (*_MEDIAN_SPEC.tolist(), 0.0)
    return (spec.tflops, spec.hbm_gbps, spec.memory_gb, 1.0)


def hardware_matrix(accelerators: np.ndarray) -> np.ndarray:
    """(n, 4) spec-sheet descriptors: TFLOP/s, GB/s, GB, known flag (medians if unknown).

    A router's candidates are mostly of one type: then one row is broadcast.
    """
    names = accelerators.tolist()
    if names and names.count(names[0]) == len(names):
        return np.array((_hardware_row(names[0]),)).repeat(len(names), axis=0)
    return np.array([_hardware_row(name) for name in names]).reshape(-1, 4)


def build_features(columns: RequestColumns) -> np.ndarray:
    """The (n, N_FEATURES) model matrix of a batch, in ``FEATURE_NAMES`` order.

    Columns of the same kind are computed together (one ``log1p`` over every count, one
    ``log`` over the hardware): per-call overhead, not arithmetic, is what a single
    prediction pays here.
    """
    n = len(columns)
    out = np.empty((n, N_FEATURES))
    uncached = np.maximum(columns.input_tokens - columns.cached_tokens, 0.0)
    counts = np.array(
        (
            columns.input_tokens,
            columns.cached_tokens,
            uncached,
            columns.running_requests,
            columns.waiting_requests,
            columns.prefill_tokens_in_flight,
            columns.decode_tokens_in_flight,
            columns.prefill_tokens_in_flight + uncached,  # queued prefill work
            columns.max_tokens,
            columns.decode_tokens_in_flight + columns.running_requests,  # decode load
        )
    )
    logs = np.log1p(counts)
    out[:, _LOG1P_AT] = logs[:-1].T
    hardware = hardware_matrix(columns.accelerator)
    log_hardware = np.log(hardware[:, :3])
    out[:, _LOG_HARDWARE_AT] = log_hardware
    column = _COLUMN
    out[:, column["hardware_known"]] = hardware[:, 3]
    out[:, column["prefix_hit_fraction"]] = columns.cached_tokens / np.maximum(
        columns.input_tokens, 1.0
    )
    out[:, column["running_requests"]] = columns.running_requests
    out[:, column["waiting_requests"]] = columns.waiting_requests
    out[:, column["kv_cache_usage"]] = columns.kv_cache_usage
    out[:, column["role_prefill"]] = columns.role == ROLE_CODES[PodRole.PREFILL]
    out[:, column["role_decode"]] = columns.role == ROLE_CODES[PodRole.DECODE]
    out[:, column["log_prefill_compute_time"]] = logs[7] - log_hardware[:, 0]
    out[:, column["log_decode_memory_time"]] = logs[-1] - log_hardware[:, 1]
    return out
