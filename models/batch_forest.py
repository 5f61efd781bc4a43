"""The batch method as a contender: llm-d's training server, as one of our learners.

llm-d's latency predictor keeps recent samples in buckets of (queue length, KV-cache
band), a bounded number per bucket so a common load level cannot crowd out rare ones,
and refits a quantile XGBoost model on all of them now and then. Its trees see every
load level at once and are sharp in the steady state, where our incremental trees see
only their sliding window. Here that method is a learner like the others: scored,
elected and calibrated in its model set, its snapshot in the safe codec.

Refits run on one shared background thread (``BackgroundRefit``); learning only files
samples and, when a refit has finished, swaps its forest in, so neither learning nor
prediction ever waits for one. A refit's cost is bounded by what it fits on: at most
``QUEUE_BANDS x KV_BANDS x per_bucket`` samples (20,000 by default, 3.7 MB of float64
rows per key and target), ``rounds`` rounds of depth ``max_depth``; ``last_refit_s``
says what the last one cost (``bench/batch_refit.py`` measures it).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from latency_oracle.features.engineering import FEATURE_NAMES
from latency_oracle.models.baseline_fit import FittedOffset, fit_offset
from latency_oracle.models.forest import CompiledForest
from latency_oracle.models.learner import BaseLearner
from latency_oracle.models.residual import Offset
from latency_oracle.models.ring import RingBuffer
from latency_oracle.models.xgboost_learner import quantile_params

# Waiting requests: 0, 1-2, 3-5, 6-10, 11+ (llm-d's queue buckets).
QUEUE_EDGES = np.array([1, 3, 6, 11])
QUEUE_BANDS = len(QUEUE_EDGES) + 1
KV_BANDS = 20  # KV-cache use in 5% steps, as llm-d buckets it
# llm-d's training server's regularisation (its XGBRegressor, for both targets).
LLMD_REGULARISATION: dict[str, float] = {
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "gamma": 0.2,
    "alpha": 0.01,
    "lambda": 0.1,
}
MIN_FIT = 32  # fewest samples a first forest is fitted on
_WAITING = FEATURE_NAMES.index("waiting_requests")
_KV = FEATURE_NAMES.index("kv_cache_usage")


def bucket_index(features: np.ndarray) -> np.ndarray:
    """(n,) each row's (queue band, KV band) bucket, as one index."""
    queue = np.searchsorted(QUEUE_EDGES, features[:, _WAITING], side="right")
    kv = np.clip((features[:, _KV] * KV_BANDS).astype(np.int64), 0, KV_BANDS - 1)
    return queue * KV_BANDS + kv


_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One refit thread for the process: refits queue behind each other, never beside
    learning on more than one core."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-refit")
        return _EXECUTOR


class BackgroundRefit:
    """At most one refit in flight for a learner; travels in snapshots as nothing (a
    restored learner refits again when due)."""

    def __init__(self) -> None:
        self._future: Future[_Fitted] | None = None

    def __deepcopy__(self, memo: dict[int, object]) -> BackgroundRefit:
        """A copied learner (a dormant regime's) starts with no refit of its own."""
        return BackgroundRefit()

    @property
    def busy(self) -> bool:
        return self._future is not None and not self._future.done()

    def submit(self, job: _RefitJob, background: bool) -> None:
        if background:
            self._future = _executor().submit(job.run)
        else:
            self._future = Future()
            self._future.set_result(job.run())

    def take(self) -> _Fitted | None:
        """The finished refit's result, once (None while none has finished)."""
        future = self._future
        if future is None or not future.done():
            return None
        self._future = None
        return future.result()

    def wait(self) -> None:
        """Block until the refit in flight is done (tests and benches only)."""
        if self._future is not None:
            self._future.exception()


@dataclass(frozen=True, slots=True)
class _Fitted:
    forest: CompiledForest
    offset: FittedOffset | None
    samples: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _RefitJob:
    """A refit's inputs, copied: the learner goes on filing samples meanwhile."""

    features: np.ndarray
    y: np.ndarray
    offset: Offset | None
    params: dict[str, object]
    rounds: int
    n_outputs: int

    def run(self) -> _Fitted:
        started = time.perf_counter()
        fitted = None
        y = self.y
        if self.offset is not None:
            fitted = fit_offset(self.offset, self.offset(self.features), y)
            y = y - fitted(self.features)
        data = xgb.DMatrix(self.features, y, nthread=1)
        booster = xgb.train(self.params, data, num_boost_round=self.rounds)
        forest = CompiledForest.from_booster(booster, self.n_outputs, int(self.params["max_depth"]))
        return _Fitted(forest, fitted, len(y), time.perf_counter() - started)


class BatchQuantileForest(BaseLearner):
    """Bucketed recent samples, a multi-quantile forest refitted on all of them every
    ``refit_every`` new samples, in the background."""

    name = "batch_xgboost"

    def __init__(
        self,
        quantiles: tuple[float, ...],
        n_features: int,
        *,
        per_bucket: int = 200,
        refit_every: int = 2048,
        rounds: int = 36,
        max_depth: int = 5,
        learning_rate: float = 0.2,
        monotone: tuple[int, ...] | None = None,
        offset: Offset | None = None,
        background: bool = True,
    ) -> None:
        super().__init__(quantiles, n_features, offset)
        self.per_bucket = per_bucket
        self.refit_every = refit_every
        self.rounds = rounds
        self.background = background
        self.params = quantile_params(
            self.quantiles, max_depth, learning_rate, monotone, **LLMD_REGULARISATION, seed=42
        )
        self.refit = BackgroundRefit()
        self.reset()

    def reset(self) -> None:
        self._n_samples = 0
        self._function = None
        # Per bucket: rows of features, outcome and arrival number (None until used).
        self._buckets: list[RingBuffer | None] = [None] * (QUEUE_BANDS * KV_BANDS)
        self._since_refit = 0
        self.last_refit_s = 0.0
        self.last_refit_samples = 0
        self.refit = BackgroundRefit()
        self._forget_offset()

    @property
    def stored(self) -> int:
        """Samples held in the buckets now."""
        return sum(len(b) for b in self._buckets if b is not None)

    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None:
        self._adopt()
        numbers = self._n_samples + np.arange(len(y), dtype=np.float64)
        rows = np.column_stack([features, y, numbers])
        buckets = bucket_index(features)
        for bucket in np.unique(buckets).tolist():
            ring = self._buckets[bucket]
            if ring is None:
                ring = self._buckets[bucket] = RingBuffer(self.per_bucket, self.n_features + 2)
            ring.extend(rows[buckets == bucket])
        self._n_samples += len(y)
        self._since_refit += len(y)
        # While few samples are held, refit each time they double (cheap, and the first
        # forests are fitted on more than a handful); then every ``refit_every``.
        due = min(self.refit_every, max(MIN_FIT, self.last_refit_samples))
        if self._since_refit >= due and not self.refit.busy:
            self._start_refit()
        self._adopt()

    def forget(self, keep: int) -> None:
        """After a drift: drop every sample older than the last ``keep`` and refit on the
        rest (at least ``MIN_FIT``) as soon as they are enough."""
        first_kept = self._n_samples - max(keep, MIN_FIT)
        for index, ring in enumerate(self._buckets):
            if ring is None:
                continue
            rows = ring.view()
            rows = rows[rows[:, -1] >= first_kept]
            fresh = RingBuffer(self.per_bucket, self.n_features + 2)
            fresh.extend(rows)
            self._buckets[index] = fresh if len(rows) else None
        self._since_refit = 0
        if self.stored >= MIN_FIT and not self.refit.busy:
            self._start_refit()
            self._adopt()

    def wait_for_refit(self) -> None:
        """Block until the refit in flight has finished and serve it (tests, benches)."""
        self.refit.wait()
        self._adopt()

    def _start_refit(self) -> None:
        rows = np.concatenate([b.view() for b in self._buckets if b is not None])
        job = _RefitJob(
            features=rows[:, : self.n_features].copy(),
            y=rows[:, self.n_features].copy(),
            offset=self.offset,
            params=self.params,
            rounds=self.rounds,
            n_outputs=len(self.quantiles),
        )
        self._since_refit = 0
        self.refit.submit(job, self.background)

    def _adopt(self) -> None:
        """Serve the refit that finished, if one did (on the learning thread, so a new
        function appears between batches, as the other learners' do)."""
        fitted = self.refit.take()
        if fitted is None:
            return
        self._fitted = fitted.offset
        self.last_refit_s = fitted.seconds
        self.last_refit_samples = fitted.samples
        self._publish(fitted.forest)
