"""A regime that returns is served by the champion that knew it, not relearned."""

from __future__ import annotations

import numpy as np

from latency_oracle.features.engineering import RequestColumns, build_features
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import EventKind
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.model_set import ModelSet
from latency_oracle.sim.synthetic_stream import generate_stream

VISIT = 2_000
BATCH = 50
SLOWER = 1.5  # regime B: every request e^1.5 = 4.5x slower


def _pinball(y: np.ndarray, q: np.ndarray) -> float:
    diff = y - q
    return float(np.mean(np.maximum(0.9 * diff, -0.1 * diff)))


def _visits(regime_memory: int) -> tuple[list[float], list[str]]:
    """Served p90 pinball loss of visits A, B, A, and the events."""
    stream = generate_stream(2 * VISIT, seed=5)
    features = build_features(RequestColumns.from_requests(stream.observations))
    y = np.log([o.ttft_ms for o in stream.observations])
    y[VISIT:] += SLOWER
    # Regime A comes back as it was: the same traffic, so the two visits compare.
    features = np.concatenate([features, features[:VISIT]])
    y = np.concatenate([y, y[:VISIT]])
    config = ModelConfig(regime_memory=regime_memory, batch_refit_every=256)
    model_set = ModelSet(ModelKey("H100", Target.TTFT), config)
    served = np.full(len(y), np.nan)
    events: list[str] = []
    for start in range(0, len(y), BATCH):
        rows = slice(start, start + BATCH)
        serving = model_set.serving_model()
        if serving is not None:
            served[rows] = np.exp(serving.predict_log(features[rows])[:, config.headline_index])
        model_set.learn(features[rows], y[rows])
        model_set.slot("batch_xgboost").learner.wait_for_refit()
        events += [e.kind for e in model_set.drift.new_events]
    y_ms, served = np.exp(y), np.nan_to_num(served, nan=np.exp(y[0]))
    losses = [
        _pinball(y_ms[i * VISIT : (i + 1) * VISIT], served[i * VISIT : (i + 1) * VISIT])
        for i in range(3)
    ]
    return losses, events


def test_a_returning_regime_costs_no_more_than_its_first_visit() -> None:
    (first, _, back), events = _visits(regime_memory=3)
    assert EventKind.RECALL in events
    assert back <= 1.1 * first, (first, back)
    (_, _, relearned), _ = _visits(regime_memory=0)
    assert back < relearned


def test_memory_is_bounded_and_survives_a_snapshot() -> None:
    from latency_oracle.models.persistence.allowed_types import SNAPSHOT_TYPES

    stream = generate_stream(1_200, seed=6)
    features = build_features(RequestColumns.from_requests(stream.observations))
    y = np.log([o.ttft_ms for o in stream.observations])
    model_set = ModelSet(ModelKey("H100", Target.TTFT), ModelConfig(regime_memory=2))
    model_set.learn(features[:600], y[:600])
    for _ in range(4):
        model_set.remember_champion()
    assert model_set.memory is not None and len(model_set.memory) == 2
    restored = SNAPSHOT_TYPES.decode(SNAPSHOT_TYPES.encode(model_set))
    assert len(restored.memory) == 2
    restored.learn(features[600:700], y[600:700])  # scores its dormant models
    assert all(len(s.evaluator) == 100 for s in restored.memory.dormant)
