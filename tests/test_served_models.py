"""The served model is a signal: two models on one accelerator stay apart, a pair never
seen is answered by the global model scaled to its served model, a request naming no
model is still answered, and every answer names the key that gave it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latency_oracle.features.engineering import RequestColumns
from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.persistence.snapshot import decode_snapshot, encode_snapshot
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.operations.mlflow.server_client import registered_model_name
from latency_oracle.operations.model_versions import parse_key
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream, served_model_stream

SMALL, LARGE = "llama-8b", "meta-llama/Llama-3.1-70B"  # the 70B is 8x slower
RATIO = 8.0


def _interleaved(*streams: SyntheticStream) -> list[Observation]:
    return [o for group in zip(*(s.observations for s in streams), strict=True) for o in group]


def _new_pods(model: str, accelerator: str, n: int = 200) -> SyntheticStream:
    stream = served_model_stream(n, seed=50, accelerator=accelerator, model=model, slowdown=1.0)
    fresh = [o.model_copy(update={"pod": f"new-{o.pod}"}) for o in stream.observations]
    return SyntheticStream(fresh, stream.ttft_median_ms, stream.tpot_median_ms)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    """8B and 70B on H100, and the 8B on A100 too (the 70B never ran on an A100)."""
    config = ModelConfig(min_samples=100, xgb_boost_every=128, xgb_window=512)
    registry = ModelRegistry(config)
    observations = _interleaved(
        served_model_stream(800, seed=1, accelerator="H100", model=SMALL, slowdown=1.0),
        served_model_stream(800, seed=2, accelerator="H100", model=LARGE, slowdown=RATIO),
        served_model_stream(800, seed=3, accelerator="A100", model=SMALL, slowdown=2.5),
    )
    for start in range(0, len(observations), 240):
        registry.learn(observations[start : start + 240])
    return registry


def _predict(registry: ModelRegistry, stream: SyntheticStream, model: str | None):
    served = None if model is None else np.full(len(stream.observations), model, dtype=object)
    return registry.predict(RequestColumns.from_requests(stream.observations), False, served)


def test_two_served_models_on_one_accelerator_stay_apart(registry: ModelRegistry) -> None:
    probe = _new_pods("any", "H100")  # the same requests, asked of new pods of each model
    small, large = _predict(registry, probe, SMALL), _predict(registry, probe, LARGE)
    assert set(small.ttft_key) == {f"H100/ttft/{SMALL}"} and not small.cold.any()
    assert set(large.tpot_key) == {f"H100/tpot/{LARGE}"} and not large.cold.any()
    for target in ("ttft_ms", "tpot_ms"):
        ratio = np.median(getattr(large, target)[:, 0] / getattr(small, target)[:, 0])
        assert RATIO / 1.5 < ratio < RATIO * 1.5, (target, ratio)


def test_a_pair_never_seen_gets_the_global_model_scaled_to_its_served_model(
    registry: ModelRegistry,
) -> None:
    probe = _new_pods("any", "A100")
    small, large = _predict(registry, probe, SMALL), _predict(registry, probe, LARGE)
    assert set(large.ttft_key) == {f"global/ttft/{LARGE}"} and large.cold.all()
    unscaled = _predict(registry, probe, "a-model-never-seen")
    assert set(unscaled.ttft_key) == {"global/ttft"}
    # The served model's scale carries over to an accelerator it never ran on.
    ratio = np.median(large.ttft_ms[:, 0] / small.ttft_ms[:, 0])
    assert ratio > RATIO / 3, ratio


def test_a_request_naming_no_model_is_still_answered(registry: ModelRegistry) -> None:
    batch = _predict(registry, _new_pods("any", "H100"), None)
    assert np.isfinite(batch.ttft_ms).all() and batch.cold.all()  # no unnamed traffic learned
    assert set(batch.ttft_key) == {"global/ttft"}


def test_keys_naming_no_model_keep_their_names() -> None:
    key = ModelKey("H100", Target.TTFT)
    assert key == ModelKey("H100", Target.TTFT, "") and key.label() == "H100/ttft"
    assert registered_model_name(key) == "latency-oracle-H100-ttft"
    named = ModelKey("H100", Target.TPOT, LARGE)
    assert named.label() == f"H100/tpot/{LARGE}" and ModelKey.parse(named.label()) == named
    assert parse_key(f"nvidia-h100/tpot/{LARGE}") == named
    assert "/" not in registered_model_name(named)
    assert registered_model_name(named) != registered_model_name(named._replace(model="m"))


def test_served_model_keys_survive_a_snapshot(registry: ModelRegistry) -> None:
    state = registry.export_state()
    payload = decode_snapshot(
        encode_snapshot(state, registry.config.quantiles), registry.config.quantiles
    )
    restored = ModelRegistry(registry.config)
    restored.import_state(payload["model_sets"])
    probe = _new_pods("any", "A100")
    before, after = _predict(registry, probe, LARGE), _predict(restored, probe, LARGE)
    assert after.ttft_key == before.ttft_key
    np.testing.assert_allclose(after.ttft_ms, before.ttft_ms)


@pytest.fixture
def client(settings: Settings) -> Iterator[tuple[TestClient, OracleService]]:
    service = OracleService(settings)
    with TestClient(create_app(settings, service)) as test_client:
        yield test_client, service


def test_the_api_names_the_key_that_answered(client: tuple[TestClient, OracleService]) -> None:
    http, service = client
    observations = _interleaved(
        served_model_stream(300, seed=4, accelerator="H100", model=SMALL, slowdown=1.0),
        served_model_stream(300, seed=5, accelerator="H100", model=LARGE, slowdown=RATIO),
    )
    body = [o.model_dump(mode="json") for o in observations]
    assert http.post("/v1/observations", json=body).status_code == 202
    assert service.wait_learned(len(observations), timeout_s=30)
    request = {"pod": "brand-new", "accelerator": "H100", "input_tokens": 900}
    named = http.post("/v1/predictions", json=[{**request, "model": m} for m in (SMALL, LARGE)])
    small, large = named.json()["predictions"]
    assert small["key"] == {"ttft": f"H100/ttft/{SMALL}", "tpot": f"H100/tpot/{SMALL}"}
    assert large["key"]["ttft"] == f"H100/ttft/{LARGE}" and not large["cold"]
    assert large["ttft_ms"]["p50"] > 3 * small["ttft_ms"]["p50"]
    unnamed = http.post("/v1/predictions", json=request).json()
    assert unnamed["key"] == {"ttft": "global/ttft", "tpot": "global/tpot"} and unnamed["cold"]
    models = {m["key"]: m for m in http.get("/v1/models").json()["models"]}
    assert models[f"H100/ttft/{LARGE}"]["served_model"] == LARGE
    assert models[f"H100/ttft/{LARGE}"]["samples"] == 300
    assert set(models["global/ttft"]["scaled_models"]) == {SMALL, LARGE}
    metrics = http.get("/metrics").text
    assert (
        f'latency_oracle_model_samples{{accelerator="H100",model="{LARGE}",target="ttft"}} 300.0'
        in metrics
    )
    assert 'latency_oracle_model_samples{accelerator="global",target="ttft"} 600.0' in metrics
