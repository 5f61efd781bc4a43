"""The one feature function, shared by training and prediction.

Train/serve skew is the classic bug of online latency models, so there is exactly one
path from a record to a feature row: records become ``RequestColumns`` (a matrix of raw
numbers, one row per record) and ``build_features`` turns them into the model matrix, in
one compiled loop over the rows that training and serving both call.
Features are chosen so that a linear model on a log-latency target can already express
the physics: prefill time grows with uncached prompt tokens plus queued prefill work over
compute speed, decode time with decode tokens in flight over memory bandwidth.

Only what is known when a request arrives is a feature. Output tokens generated are an
outcome: an observation knows them, a routing request does not (it has ``max_tokens``),
so using them would train on one value and predict on another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from functools import lru_cache

import numpy as np

from latency_oracle.features import native
from latency_oracle.features.accelerators import HARDWARE_SPECS, hardware_spec
from latency_oracle.features.number_fields import NUMBER_FIELDS
from latency_oracle.features.schema import PodIdentity, PodRole, PredictionRequest

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
# Where ``record_numbers`` reads each attribute of a record to: NUMBER_FIELDS' columns, the
# prefix-cache hit tokens where ``cached_tokens`` goes (the hint becomes it), nothing where
# the role goes (its codes are looked up), and the prefix-cache hit fraction after them.
_READ_INSTEAD: dict[str, str | None] = {"cached_tokens": "prefix_cache_hit_tokens", "role": None}
_GATHERED: tuple[str | None, ...] = (
    *(_READ_INSTEAD.get(name, name) for name in NUMBER_FIELDS),
    "prefix_cache_score",
)
_INPUT, _CACHED, _ROLE = (NUMBER_FIELDS.index(n) for n in ("input_tokens", "cached_tokens", "role"))

_rows = native.load(
    "latency_oracle.features._feature_rows", "latency_oracle.features._feature_rows_fallback"
)


def check_columns(rows: object) -> None:
    """Refuse feature rows whose columns are not ours, by name: a stale or foreign build
    would otherwise put every feature in the wrong place and predict nonsense quietly."""
    for what, ours in (("FEATURE_NAMES", FEATURE_NAMES), ("NUMBER_FIELDS", NUMBER_FIELDS)):
        theirs = tuple(getattr(rows, what, ()))
        if theirs != ours:
            raise ImportError(
                f"{getattr(rows, '__name__', rows)}.{what} is {theirs}, features/engineering.py "
                f"has {ours}: rebuild the extension (pip install -e .)"
            )


check_columns(_rows)
build_rows, gather = _rows.build, _rows.gather


class _Number:
    """One raw number of every request: a view of its column in ``RequestColumns.numbers``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._index = NUMBER_FIELDS.index(name)

    def __get__(self, columns: RequestColumns, owner: type | None = None) -> np.ndarray:
        return columns.numbers[:, self._index]


@dataclass(frozen=True, slots=True)
class RequestColumns:
    """A batch of prediction requests (or observations): names, and one matrix of numbers.

    The numbers are one (n, len(NUMBER_FIELDS)) float64 matrix rather than an array per
    field: one row is built, copied and handed to the feature rows in one piece.
    """

    accelerator: np.ndarray  # object array of canonical names
    pod: np.ndarray  # object array of pod names ("" when unknown); not a feature
    numbers: np.ndarray  # (n, len(NUMBER_FIELDS)) float64 (a view of a wider matrix, maybe)

    input_tokens = _Number()
    cached_tokens = _Number()
    max_tokens = _Number()
    running_requests = _Number()
    waiting_requests = _Number()
    kv_cache_usage = _Number()
    prefill_tokens_in_flight = _Number()
    decode_tokens_in_flight = _Number()
    role = _Number()

    def __len__(self) -> int:
        return len(self.numbers)

    @classmethod
    def of(cls, accelerator: np.ndarray, pod: np.ndarray, **numbers: np.ndarray) -> RequestColumns:
        """Columns from one array per raw number, each of ``NUMBER_FIELDS`` by name."""
        return cls(
            accelerator,
            pod,
            np.column_stack([np.asarray(numbers[name], np.float64) for name in NUMBER_FIELDS]),
        )

    @classmethod
    def from_requests(cls, requests: Sequence[PredictionRequest]) -> RequestColumns:
        """Columns of validated records (observations are prediction requests too)."""
        return cls(
            np.array([r.accelerator for r in requests], dtype=object),
            np.array([r.pod for r in requests], dtype=object),
            record_numbers(requests),
        )

    def take(self, index: np.ndarray) -> RequestColumns:
        """The rows at ``index`` (a boolean mask or integer positions)."""
        return RequestColumns(self.accelerator[index], self.pod[index], self.numbers[index])


def record_numbers(records: Sequence[PodIdentity], **shared: float) -> np.ndarray:
    """The (n, len(NUMBER_FIELDS)) raw numbers of records with a request's and a pod's fields.

    Each number is read off its record (``gather``, compiled), except the ``shared`` ones:
    a router asks one request of many candidate pods, so its ``input_tokens`` and
    ``max_tokens`` are given once. The prefix-cache hint becomes ``cached_tokens``: the hit
    tokens when given, else the hit fraction of the prompt, else none.
    """
    raw = np.empty((len(records), len(_GATHERED)))
    gather(records, _names_to_read(tuple(shared)), raw)
    for name, value in shared.items():
        raw[:, _GATHERED.index(name)] = value
    hits, hit_fraction = raw[:, _CACHED], raw[:, -1]
    # Without hit tokens, the fraction of the prompt (fmax reads a missing one as none).
    raw[:, _CACHED] = np.where(np.isnan(hits), np.fmax(hit_fraction, 0.0) * raw[:, _INPUT], hits)
    roles = [record.role for record in records]
    all_both = roles.count(PodRole.BOTH) == len(roles)  # the common pool: no lookups
    raw[:, _ROLE] = 0.0 if all_both else [ROLE_CODES[role] for role in roles]
    return raw[:, : len(NUMBER_FIELDS)]


@lru_cache(maxsize=8)
def _names_to_read(shared: tuple[str, ...]) -> tuple[str | None, ...]:
    return tuple(None if name in shared else name for name in _GATHERED)


@lru_cache(maxsize=1024)
def _hardware_row(accelerator: str) -> np.ndarray:
    """(1, 4) spec-sheet descriptors: TFLOP/s, GB/s, GB, known flag (medians if unknown)."""
    spec = hardware_spec(accelerator)
    row = [*_MEDIAN_SPEC.tolist(), 0.0] if spec is None else [*astuple(spec), 1.0]
    array = np.array([row], dtype=np.float64)
    array.flags.writeable = False  # cached and shared by every call
    return array


def hardware_matrix(accelerators: np.ndarray) -> np.ndarray:
    """(n, 4) spec-sheet descriptors of each row, or (1, 4) when all rows share one type.

    A router's candidates are mostly of one type: then one row serves them all.
    """
    names = accelerators.tolist()
    if not names:
        return np.empty((0, 4))
    if names.count(names[0]) == len(names):
        return _hardware_row(names[0])
    return np.concatenate([_hardware_row(name) for name in names])


def build_features(columns: RequestColumns) -> np.ndarray:
    """The (n, N_FEATURES) model matrix of a batch, in ``FEATURE_NAMES`` order.

    The one feature function: training and prediction both call it, so a model sees at
    serving time exactly the features it learned on. The arithmetic is compiled
    (``features/_feature_rows.c``, one loop over the rows): a single prediction is one
    row, and per-call overhead, not arithmetic, is what a numpy formulation of ~20 array
    operations paid for it. Without a C compiler the same arithmetic runs in numpy
    (``features/native.py``).

    Parameters
    ----------
    columns
        The requests (or observations) as columns: ``RequestColumns.from_requests`` of
        records, or ``RequestColumns.of`` arrays.

    Returns
    -------
    numpy.ndarray
        float64, one row per request, one column per name in ``FEATURE_NAMES``.

    Examples
    --------
    >>> from latency_oracle.features import (
    ...     FEATURE_NAMES, PredictionRequest, RequestColumns, build_features,
    ... )
    >>> columns = RequestColumns.from_requests([
    ...     PredictionRequest(accelerator="H100", input_tokens=2048, prefix_cache_score=0.5,
    ...                       running_requests=3),
    ...     PredictionRequest(accelerator="L4", input_tokens=512),
    ... ])
    >>> features = build_features(columns)
    >>> features.shape == (2, len(FEATURE_NAMES))
    True
    >>> row = dict(zip(FEATURE_NAMES, features[0].tolist()))
    >>> row["prefix_hit_fraction"], row["running_requests"]
    (0.5, 3.0)
    """
    out = np.empty((len(columns), N_FEATURES))
    build_rows(
        np.ascontiguousarray(columns.numbers, np.float64), hardware_matrix(columns.accelerator), out
    )
    return out
