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
from latency_oracle.models.codec import TypeRegistry
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

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...

    def reset(self) -> None: ...


class NotFittedError(RuntimeError):
    """Raised when a learner is asked to predict before it has learned anything."""


class BaseLearner(ABC):
    """Shared plumbing: one-row calls, prediction through the serving function, snapshots,
    and fitting the residual over an ``offset`` baseline when given one (``models.residual``).
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

    def _residual(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        """What the model itself fits: ``y``, less the baseline when there is one."""
        return y if self.offset is None else y - self.offset(features)

    def _publish(self, model: QuantileFunction) -> None:
        """Serve ``model``, with the baseline added back when there is one."""
        self._function = model if self.offset is None else ResidualFunction(model, self.offset)

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

    def snapshot(self) -> bytes:
        """The learner's attributes in the snapshot codec's format (``models.codec``)."""
        return _snapshot_types().encode(self.__dict__)

    def restore(self, data: bytes) -> None:
        state = _snapshot_types().decode(data)
        if type(state) is not dict:
            raise ValueError(f"snapshot of {self.name} is not a learner's state")
        if state.get("quantiles") != self.quantiles or state.get("n_features") != self.n_features:
            raise ValueError(f"snapshot of {self.name} does not match its quantiles/features")
        self.__dict__.update(state)


def _snapshot_types() -> TypeRegistry:
    """The snapshot allow-list, imported when used: it lists the learner classes."""
    from latency_oracle.models.snapshot_types import SNAPSHOT_TYPES

    return SNAPSHOT_TYPES
