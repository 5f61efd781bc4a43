"""The learner protocol every model implements, so learners are interchangeable.

Learners work in log-milliseconds: latency noise is multiplicative, and quantiles commute
with the log, so a quantile of log-latency is the log of the latency quantile.

Training and serving are split on purpose. A learner mutates itself while it learns (on
the trainer thread), and hands out an immutable ``QuantileFunction`` that prediction
threads call without locks; a new function is swapped in by reference after each batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np

from latency_oracle.models.baseline_fit import FittedOffset, fit_offset
from latency_oracle.models.persistence.codec import TypeRegistry
from latency_oracle.models.residual import Offset, ResidualFunction


class QuantileFunction(Protocol):
    """An immutable, thread-safe fitted model: (n, d) features -> (n, q) log-ms quantiles."""

    def __call__(self, features: np.ndarray) -> np.ndarray: ...

    def leading(self, k: int) -> QuantileFunction:
        """The same model answering only its first ``k`` quantiles, with less work.

        Routing reads quantiles up to the headline one (the lower ones keep the served
        quantiles monotone); skipping the rest saves a third of a forest walk.
        """
        ...


@runtime_checkable
class Learner(Protocol):
    """What the model set needs of a learner."""

    name: str
    quantiles: tuple[float, ...]

    @property
    def n_samples(self) -> int: ...

    @property
    def is_fitted(self) -> bool: ...

    def learn_one(self, x: np.ndarray, y: float) -> None: ...

    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None: ...

    def predict_one(self, x: np.ndarray) -> np.ndarray: ...

    def predict_many(self, features: np.ndarray) -> np.ndarray: ...

    def serving_function(self) -> QuantileFunction | None: ...

    def snapshot(self, types: TypeRegistry) -> bytes: ...

    def restore(self, data: bytes, types: TypeRegistry) -> None: ...

    def reset(self) -> None: ...

    def forget(self, keep: int) -> None:
        """After a drift: drop what was learned before the last ``keep`` samples, if the
        learner keeps samples at all (an online learner just goes on adapting)."""
        ...


class NotFittedError(RuntimeError):
    """Raised when a learner is asked to predict before it has learned anything."""


class BaseLearner(ABC):
    """Shared plumbing: one-row calls, prediction through the serving function, snapshots,
    and fitting the residual over an ``offset`` baseline when given one (``models.residual``),
    its scale and floor fitted to the data (``models.baseline_fit``).
    """

    name: str = "base"

    def __init__(
        self, quantiles: tuple[float, ...], n_features: int, offset: Offset | None = None
    ) -> None:
        self.quantiles = tuple(quantiles)
        self.n_features = n_features
        self.offset = offset
        self._n_samples = 0
        self._function: QuantileFunction | None = None
        self._forget_offset()

    def _forget_offset(self) -> None:
        """Back to the baseline as imposed (scale 1, no floor) until samples refit it."""
        self._fitted = None if self.offset is None else FittedOffset(self.offset)

    def _fit_offset(self, base_log: np.ndarray, y: np.ndarray) -> None:
        """Refit the baseline's scale and floor to samples (``base_log``: the offset's values)."""
        if self.offset is not None and len(y):
            self._fitted = fit_offset(self.offset, base_log, y)

    def _residual(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        """What the model itself fits: ``y``, less the fitted baseline when there is one."""
        return y if self._fitted is None else y - self._fitted(features)

    def _publish(self, model: QuantileFunction) -> None:
        """Serve ``model``, with the fitted baseline added back when there is one."""
        fitted = self._fitted
        self._function = model if fitted is None else ResidualFunction(model, fitted)

    @property
    def n_samples(self) -> int:
        return self._n_samples

    @property
    def is_fitted(self) -> bool:
        return self._function is not None

    @abstractmethod
    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None:
        """Learn a batch; implementations must end by publishing a new serving function."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything (used when the learner failed or diverged)."""

    def forget(self, keep: int) -> None:
        """Online learners keep no samples to drop; they follow the drift as they learn."""
        del keep

    def learn_one(self, x: np.ndarray, y: float) -> None:
        self.learn_many(np.asarray(x, dtype=np.float64).reshape(1, -1), np.array([y], float))

    def predict_many(self, features: np.ndarray) -> np.ndarray:
        function = self._function
        if function is None:
            raise NotFittedError(f"{self.name} has not learned anything yet")
        return function(features)

    def predict_one(self, x: np.ndarray) -> np.ndarray:
        return self.predict_many(np.asarray(x, dtype=np.float64).reshape(1, -1))[0]

    def serving_function(self) -> QuantileFunction | None:
        return self._function

    def snapshot(self, types: TypeRegistry) -> bytes:
        """The learner's attributes in the snapshot codec's format (``persistence.codec``).

        Parameters
        ----------
        types
            What a snapshot may contain (``persistence.allowed_types.SNAPSHOT_TYPES``).
            The caller passes it in: the allow-list names the learner classes, so a
            learner that imported it would import itself.
        """
        return types.encode(self.__dict__)

    def restore(self, data: bytes, types: TypeRegistry) -> None:
        """Take the state of ``snapshot(types)``; refuses another learner's or shape's."""
        state = types.decode(data)
        if type(state) is not dict:
            raise ValueError(f"snapshot of {self.name} is not a learner's state")
        if state.get("quantiles") != self.quantiles or state.get("n_features") != self.n_features:
            raise ValueError(f"snapshot of {self.name} does not match its quantiles/features")
        self.__dict__.update(state)
