"""``features/_feature_rows.c`` in numpy: the feature rows where no C compiler built it.

The same interface (``build``, ``gather``, ``FEATURE_NAMES``, ``NUMBER_FIELDS``) and the
same results bit for bit: the logarithms are the C library's (``math.log1p``, ``math.log``
call what the C loop calls; numpy's own may be vectorised differently per CPU), and the
rest is exact IEEE arithmetic done in the same order. It is slower (tens of microseconds a
row rather than under one), which is why ``features/native.py`` reports it on ``/readyz``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from latency_oracle.features.number_fields import NUMBER_FIELDS

_HARDWARE_WIDTH = 4  # TFLOP/s, GB/s, GB, known flag
_ROLE_PREFILL, _ROLE_DECODE = 1.0, 2.0  # ROLE_CODES of features/engineering.py


def _c_log1p(value: float) -> float:
    """C's log1p: the C library's value, and -inf or NaN off its domain (math raises)."""
    if value > -1.0:
        return math.log1p(value)
    return -math.inf if value == -1.0 else math.nan


def _c_log(value: float) -> float:
    """C's log: the C library's value, and -inf or NaN off its domain (math raises)."""
    if value > 0.0:
        return math.log(value)
    return -math.inf if value == 0.0 else math.nan


def _elementwise(function: Callable[[float], float]) -> Callable[[np.ndarray], np.ndarray]:
    """``function`` over an array, one C library call per element."""
    vectorised = np.frompyfunc(function, 1, 1)

    def apply(values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # NaN compared: C's loop is silent about it too
            return vectorised(values).astype(np.float64)

    return apply


_log1p, _log = _elementwise(_c_log1p), _elementwise(_c_log)


def _columns(x: dict[str, np.ndarray], hardware: np.ndarray) -> dict[str, np.ndarray]:
    """Every feature column by name, in FEATURE_NAMES order (the C row's formulas)."""
    uncached = np.fmax(x["input_tokens"] - x["cached_tokens"], 0.0)
    log_queued = _log1p(x["prefill_tokens_in_flight"] + uncached)
    log_tflops, log_hbm_gbps, log_memory_gb = (_log(hardware[:, i]) for i in range(3))
    return {
        "log_input_tokens": _log1p(x["input_tokens"]),
        "log_cached_tokens": _log1p(x["cached_tokens"]),
        "log_uncached_tokens": _log1p(uncached),
        "prefix_hit_fraction": x["cached_tokens"] / np.fmax(x["input_tokens"], 1.0),
        "running_requests": x["running_requests"],
        "waiting_requests": x["waiting_requests"],
        "log_running_requests": _log1p(x["running_requests"]),
        "log_waiting_requests": _log1p(x["waiting_requests"]),
        "kv_cache_usage": x["kv_cache_usage"],
        "log_prefill_in_flight": _log1p(x["prefill_tokens_in_flight"]),
        "log_decode_in_flight": _log1p(x["decode_tokens_in_flight"]),
        "log_queued_prefill_work": log_queued,
        "log_max_tokens": _log1p(x["max_tokens"]),
        "role_prefill": x["role"] == _ROLE_PREFILL,
        "role_decode": x["role"] == _ROLE_DECODE,
        "log_tflops": log_tflops,
        "log_hbm_gbps": log_hbm_gbps,
        "log_memory_gb": log_memory_gb,
        "hardware_known": hardware[:, 3],
        "log_prefill_compute_time": log_queued - log_tflops,
        "log_decode_memory_time": (
            _log1p(x["decode_tokens_in_flight"] + x["running_requests"]) - log_hbm_gbps
        ),
    }


FEATURE_NAMES: tuple[str, ...] = tuple(
    _columns(dict.fromkeys(NUMBER_FIELDS, np.zeros(0)), np.ones((0, _HARDWARE_WIDTH), np.float64))
)


def _doubles(buffer: object) -> np.ndarray:
    """A flat float64 view of a buffer (writable when the buffer is), as the C reads it."""
    return np.frombuffer(buffer, np.float64)  # type: ignore[call-overload]


def build(numbers: object, hardware: object, out: object) -> None:
    """Write the model row of every row of raw numbers into ``out`` (see the C file)."""
    x, hw, f = _doubles(numbers), _doubles(hardware), _doubles(out)
    rows, hw_rows = x.size // len(NUMBER_FIELDS), hw.size // _HARDWARE_WIDTH
    if (
        x.size != rows * len(NUMBER_FIELDS)
        or hw.size != hw_rows * _HARDWARE_WIDTH
        or hw_rows not in (1, rows)
        or f.size != rows * len(FEATURE_NAMES)
    ):
        raise ValueError("build_features: arrays of inconsistent sizes")
    if not f.flags.writeable:
        raise TypeError("build_features: out must be writable")
    x = x.reshape(rows, len(NUMBER_FIELDS))
    columns = _columns(
        {name: x[:, i] for i, name in enumerate(NUMBER_FIELDS)},
        hw.reshape(hw_rows, _HARDWARE_WIDTH),
    )
    f = f.reshape(rows, len(FEATURE_NAMES))
    for i, column in enumerate(columns.values()):
        f[:, i] = column


def _number(value: object) -> float:
    """An attribute as the C reads it: None is NaN; text is refused, not parsed."""
    if value is None:
        return math.nan
    if isinstance(value, str | bytes | bytearray):
        raise TypeError(f"must be real number, not {type(value).__name__}")
    return float(value)  # type: ignore[arg-type]


def gather(records: Sequence[object], names: tuple[str | None, ...], out: object) -> None:
    """Write the named number attributes of every record into ``out`` (see the C file)."""
    if not isinstance(names, tuple):
        raise TypeError("gather: names must be a tuple")
    records = list(records)
    cells = _doubles(out)
    if cells.size != len(records) * len(names):
        raise ValueError("gather: out has the wrong size")
    table = cells.reshape(len(records), len(names))
    for c, name in enumerate(names):
        if name is not None:
            table[:, c] = [_number(getattr(record, name)) for record in records]
