"""Shared fixtures: small, fast model settings and a service per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import LocalCluster, local_cluster
from redis_support import SHARED_REDIS_URL

from latency_oracle.models.config import ModelConfig
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream, generate_stream

# The benches' packages (bench/real_engine) import in tests as they do from bench/.
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a private state dir and small windows so models warm up quickly.

    MLflow tracking is off here (its tests turn it on): it is a background worker whose
    start-up would only slow every service test down.
    """
    return Settings(
        state_dir=tmp_path / "state",
        mlflow_enabled=False,
        min_samples=100,
        eval_window=500,
        xgb_boost_every=128,
        xgb_window=512,
        snapshot_interval_s=3600,
    )


@pytest.fixture
def fast_config(settings: Settings) -> ModelConfig:
    return ModelConfig.from_settings(settings)


@pytest.fixture(scope="session")
def stream() -> Iterator[SyntheticStream]:
    yield generate_stream(3_000, seed=7)


@pytest.fixture(scope="session")
def real_engine() -> Iterator[object]:
    """One real vLLM (the harness's tiny engine) for every real-engine test of the session;
    installed and made on first use (tests/real_engine_support.py)."""
    from real_engine_support import real_engine_fleet

    with real_engine_fleet() as fleet:
        yield fleet


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One local three-master Redis Cluster for the whole session (started on first use)."""
    with local_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(params=["single", "cluster"])
def redis_kind(request: pytest.FixtureRequest) -> str:
    """Each Redis-backed test runs on a single Redis and on a three-master Redis Cluster."""
    return str(request.param)


@pytest.fixture
def redis_url(redis_kind: str, request: pytest.FixtureRequest) -> str:
    """The shared single Redis, or the session's local cluster."""
    if redis_kind == "single":
        return SHARED_REDIS_URL
    return request.getfixturevalue("redis_cluster").url
