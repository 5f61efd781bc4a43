"""Everything a model snapshot may contain: the codec's allow-list (``models.persistence.codec``).

A class a learner or model set keeps in its state must be listed here, one line each, or
encoding a snapshot fails naming the class and the attribute path to it. Plain classes
are rebuilt from their attributes, dataclasses through their constructor; a class whose
state is not plain data (River's Rust-backed parts, caches a snapshot leaves out) gets an
``Adapter``. Renaming or moving a listed class changes its name in the format: bump
``models.persistence.snapshot.FORMAT_VERSION``.
"""

from __future__ import annotations

from river import linear_model, optim
from river.utils import VectorDict

from latency_oracle.models.baseline_fit import FittedOffset
from latency_oracle.models.batch_forest import BackgroundRefit, BatchQuantileForest
from latency_oracle.models.calibration import AdaptiveConformal
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import (
    ChallengerRace,
    DriftWatch,
    EventKind,
    ModelEvent,
    ResidualDriftDetector,
)
from latency_oracle.models.evaluation import PrequentialEvaluator
from latency_oracle.models.forest import CompiledForest
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.model_set import LearnerHealth, LearnerSlot, ModelSet
from latency_oracle.models.output_length import LengthCounts
from latency_oracle.models.persistence.codec import Adapter, TypeRegistry
from latency_oracle.models.pod_calibration import PodOffsets
from latency_oracle.models.prior import prefill_backlog_log_ms
from latency_oracle.models.regime_memory import RegimeMemory
from latency_oracle.models.residual import ResidualFunction
from latency_oracle.models.ring import RingBuffer
from latency_oracle.models.river_linear import (
    LinearQuantileFunction,
    RiverQuantileLinear,
    RunningStandardizer,
)
from latency_oracle.models.rolling_quantile import ConstantQuantileFunction, RollingQuantile
from latency_oracle.models.served_history import ServedHistory
from latency_oracle.models.served_model_scale import ServedModelScale
from latency_oracle.models.xgboost_learner import IncrementalXGBoost

SNAPSHOT_TYPES = TypeRegistry(
    classes=[
        ModelKey,
        Target,
        ModelConfig,
        ModelSet,
        LearnerSlot,
        LearnerHealth,
        AdaptiveConformal,
        PodOffsets,
        PrequentialEvaluator,
        RingBuffer,
        DriftWatch,
        ChallengerRace,
        ModelEvent,
        EventKind,
        RiverQuantileLinear,
        RunningStandardizer,
        LinearQuantileFunction,
        IncrementalXGBoost,
        RollingQuantile,
        RegimeMemory,
        BatchQuantileForest,
        ConstantQuantileFunction,
        CompiledForest,
        ResidualFunction,
        FittedOffset,
        ServedModelScale,
        LengthCounts,
        linear_model.LinearRegression,
        optim.SGD,
        optim.schedulers.Constant,
        optim.losses.Quantile,
        optim.initializers.Zeros,
    ],
    adapters=[
        # River's weights live in a Rust mapping: travel as a dict of floats.
        Adapter(VectorDict, lambda weights: weights.to_dict(), VectorDict),
        # Recent versions re-fill within minutes and would bloat every snapshot.
        Adapter(ServedHistory, lambda history: history.size, lambda size: ServedHistory(int(size))),
        # A refit in flight is not state: a restored learner refits again when due.
        Adapter(BackgroundRefit, lambda refit: None, lambda state: BackgroundRefit()),
        # ADWIN's window is a Rust object with no plain-data form: a restored detector
        # starts a fresh window (a drift is then detected from the restore on).
        Adapter(
            ResidualDriftDetector,
            lambda detector: [detector.delta, detector.grace],
            lambda state: ResidualDriftDetector(float(state[0]), int(state[1])),
        ),
    ],
    functions=[prefill_backlog_log_ms],
)
