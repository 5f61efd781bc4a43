"""A learner that fails or diverges is dropped from serving, reset, and shown loudly."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from guarded_learners import DivergingLearner, ExplodingLearner, guarded_config

from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream


def test_diverging_learner_is_reset_and_never_served(
    fast_config: ModelConfig, stream: SyntheticStream
) -> None:
    DivergingLearner.diverge = False
    registry = ModelRegistry(guarded_config(fast_config))
    for start in range(0, 1_000, 100):
        registry.learn(stream.observations[start : start + 100])
    DivergingLearner.diverge = True
    try:
        report = registry.learn(stream.observations[1_000:1_100])
    finally:
        DivergingLearner.diverge = False
    errors = [f.error for f in report.failures if f.learner == "diverging"]
    assert errors and "out of range" in errors[0]
    model_set = next(m for m in registry.model_sets() if m.key == ModelKey("H100", Target.TTFT))
    slot = model_set.slot("diverging")
    assert slot.health.state == "failed" and slot.learner.n_samples == 0
    assert model_set.champion == "exploding"
    from latency_oracle.features.engineering import RequestColumns

    batch = registry.predict(RequestColumns.from_requests(stream.observations[:50]))
    assert np.all(batch.ttft_ms < 1e6)
    assert set(batch.ttft_model) == {"exploding@H100"}


def test_learning_exception_shows_on_readyz_and_metrics(
    settings: Settings, fast_config: ModelConfig, stream: SyntheticStream
) -> None:
    ExplodingLearner.explode = False
    service = OracleService(settings, model_config=guarded_config(fast_config))
    with TestClient(create_app(settings, service)) as client:
        ok = client.post(
            "/v1/observations", json=[o.model_dump() for o in stream.observations[:300]]
        )
        assert ok.status_code == 202
        assert service.wait_learned(300, timeout_s=10)
        assert client.get("/readyz").json()["status"] == "ready"
        ExplodingLearner.explode = True
        try:
            client.post(
                "/v1/observations", json=[o.model_dump() for o in stream.observations[300:310]]
            )
            assert service.wait_learned(310, timeout_s=10)
        finally:
            ExplodingLearner.explode = False
        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert any("exploding failed: RuntimeError: boom" in p for p in ready["problems"])
        metrics = client.get("/metrics").text
        labels = '{accelerator="H100",learner="exploding",target="ttft"}'
        assert f"latency_oracle_learner_failed{labels} 1.0" in metrics
        assert f"latency_oracle_learner_failures_total{labels} 1.0" in metrics
        models = client.get("/v1/models").json()["models"]
        h100 = next(m for m in models if m["accelerator"] == "H100" and m["target"] == "ttft")
        assert h100["champion"] == "diverging"
