"""Engine /metrics texts (vLLM current and older names, SGLang) map to the right pod state.

The current vLLM exposition is a capture of a real engine (``bench/real_engine/
capture_metrics.py`` refreshes it); the older vLLM and SGLang ones are written from those
engines' documented metric lists. The parser may read no name they lack, and neither may
the simulated engine export one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sim_support import SHARED_DATA

from latency_oracle.features.schema import ServerState
from latency_oracle.settings import Settings
from latency_oracle.sidecar.accelerator import accelerator_type, detect_gpu_name, pod_identity
from latency_oracle.sidecar.metrics_parser import (
    METRIC_NAMES,
    EngineSample,
    PrefixHitRate,
    parse_engine_metrics,
)
from latency_oracle.sim.engine.exported_metrics import EngineMetrics
from latency_oracle.sim.engine.scheduler import Engine

FIXTURES = Path(__file__).parent / "fixtures"
VLLM_CURRENT = (FIXTURES / "vllm_metrics.txt").read_text()
VLLM_OLDER = (FIXTURES / "vllm_metrics_older.txt").read_text()
SGLANG = (FIXTURES / "sglang_metrics.txt").read_text()


def exported_names(*texts: str) -> set[str]:
    """Every family and sample name in the expositions."""
    names = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    return names


def test_the_parser_reads_only_names_real_engines_export() -> None:
    assert set(METRIC_NAMES) <= exported_names(VLLM_CURRENT, VLLM_OLDER, SGLANG)


def test_the_simulated_engine_exports_only_real_vllm_names() -> None:
    engine = Engine.create("H100", data_dir=SHARED_DATA)
    text = generate_latest(EngineMetrics(engine, "m").registry).decode()
    assert exported_names(text) <= exported_names(VLLM_CURRENT, VLLM_OLDER)


def test_a_real_vllm_exposition_reads_as_its_gauges_and_counters() -> None:
    """The fixture is a real capture (bench/real_engine/capture_metrics.py), one engine,
    taken while a request ran."""
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(VLLM_CURRENT)
        for sample in family.samples
    }
    sample = parse_engine_metrics(VLLM_CURRENT)
    assert sample.running_requests == values["vllm:num_requests_running"] >= 1
    assert sample.waiting_requests == values["vllm:num_requests_waiting"]
    assert sample.kv_cache_usage == values["vllm:kv_cache_usage_perc"] > 0
    assert sample.prefix_cache_queries == values["vllm:prefix_cache_queries_total"] > 0
    assert sample.prefix_cache_hits == values["vllm:prefix_cache_hits_total"] > 0
    assert sample.prefix_cache_hit_rate is None  # V1 exports counters, no rate gauge


def test_data_parallel_engines_sum_counts_and_average_fractions() -> None:
    text = "".join(
        f'vllm:num_requests_running{{engine="{e}"}} {r}\n'
        f'vllm:num_requests_waiting{{engine="{e}"}} {w}\n'
        f'vllm:kv_cache_usage_perc{{engine="{e}"}} {kv}\n'
        f'vllm:prefix_cache_queries_total{{engine="{e}"}} 1000\n'
        f'vllm:prefix_cache_hits_total{{engine="{e}"}} {hits}\n'
        for e, r, w, kv, hits in ((0, 5, 2, 0.5, 300), (1, 3, 0, 0.25, 100))
    )
    sample = parse_engine_metrics(text)
    assert sample.server_state() == ServerState(
        running_requests=8, waiting_requests=2, kv_cache_usage=0.375
    )
    assert (sample.prefix_cache_queries, sample.prefix_cache_hits) == (2000.0, 400.0)


def test_counters_are_read_with_or_without_the_total_suffix() -> None:
    text = "vllm:prefix_cache_queries 50\nvllm:prefix_cache_hits 20\n"
    sample = parse_engine_metrics(text)
    assert (sample.prefix_cache_queries, sample.prefix_cache_hits) == (50.0, 20.0)


def test_older_vllm_names() -> None:
    sample = parse_engine_metrics(VLLM_OLDER)
    assert sample.server_state() == ServerState(
        running_requests=7, waiting_requests=4, kv_cache_usage=0.875
    )
    # Early V1's block counters win over V0's lifetime gauge: 50 hits of 200 blocks...
    assert (sample.prefix_cache_queries, sample.prefix_cache_hits) == (200.0, 50.0)
    rate = PrefixHitRate()
    rate.update(sample)
    assert rate.update(parse_engine_metrics(VLLM_OLDER.replace(" 200.0", " 400.0"))) == 0.0
    # ...and the gauge is read where no counters are exported.
    gauge_only = "vllm:gpu_prefix_cache_hit_rate 0.42\n"
    assert PrefixHitRate().update(parse_engine_metrics(gauge_only)) == pytest.approx(0.42)


def test_sglang_names() -> None:
    sample = parse_engine_metrics(SGLANG)
    assert sample.server_state() == ServerState(
        running_requests=12, waiting_requests=3, kv_cache_usage=0.6
    )
    assert sample.prefix_cache_hit_rate == pytest.approx(0.3)


def test_current_name_wins_when_both_generations_are_exposed() -> None:
    text = VLLM_OLDER + "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.1\n"
    assert parse_engine_metrics(text).kv_cache_usage == pytest.approx(0.1)


def test_out_of_range_values_are_clamped_into_the_schema() -> None:
    text = (
        "vllm:num_requests_running -3\nvllm:kv_cache_usage_perc 1.7\n"
        "vllm:num_requests_waiting NaN\n"
    )
    assert parse_engine_metrics(text).server_state() == ServerState(kv_cache_usage=1.0)


def test_an_engine_without_known_metrics_reads_as_all_absent() -> None:
    assert parse_engine_metrics("# TYPE other gauge\nother 1\n") == EngineSample()


def test_label_values_may_hold_spaces_and_braces_and_samples_timestamps() -> None:
    text = (
        'vllm:num_requests_running{model_name="a} b",engine="0"} 2 1732531234000\n'
        "  vllm:num_requests_waiting\t3\n"
    )
    sample = parse_engine_metrics(text)
    assert (sample.running_requests, sample.waiting_requests) == (2.0, 3.0)


def test_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_engine_metrics("this is { not prometheus\n")


def test_hit_rate_is_over_the_last_interval_from_counters() -> None:
    rate = PrefixHitRate()
    first = EngineSample(prefix_cache_queries=1000.0, prefix_cache_hits=900.0)
    assert rate.update(first) is None  # no interval yet
    second = EngineSample(prefix_cache_queries=1400.0, prefix_cache_hits=1000.0)
    assert rate.update(second) == pytest.approx(0.25)  # 100 hits of 400 queries
    idle = EngineSample(prefix_cache_queries=1400.0, prefix_cache_hits=1000.0)
    assert rate.update(idle) == pytest.approx(0.25)  # nothing queried: keep the last rate
    restarted = EngineSample(prefix_cache_queries=100.0, prefix_cache_hits=10.0)
    assert rate.update(restarted) == pytest.approx(0.25)  # counter reset: new baseline
    after = EngineSample(prefix_cache_queries=200.0, prefix_cache_hits=60.0)
    assert rate.update(after) == pytest.approx(0.5)


def test_accelerator_setting_wins_and_is_normalised() -> None:
    assert accelerator_type(Settings(accelerator="NVIDIA H100 80GB HBM3")) == "H100"


def test_accelerator_detection_reads_the_first_gpu_and_skips_a_missing_tool() -> None:
    assert detect_gpu_name(("echo", "NVIDIA A100-SXM4-80GB\nNVIDIA A100-SXM4-80GB")) == (
        "NVIDIA A100-SXM4-80GB"
    )
    assert detect_gpu_name(("/nonexistent/nvidia-smi", "--query-gpu=name")) is None
    assert detect_gpu_name(("false",)) is None


def test_pod_identity_from_settings() -> None:
    identity = pod_identity(
        Settings(accelerator="mi300x", pod_role="decode", pod_name="pod-7", served_model="m"),
        model="ignored-when-set",
    )
    assert identity.model_dump() == {
        "pod": "pod-7",
        "accelerator": "MI300X",
        "role": "decode",
        "model": "m",
    }
