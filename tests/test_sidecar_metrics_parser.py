"""Engine /metrics texts (vLLM current and older names, SGLang) map to the right pod state."""

from __future__ import annotations

import pytest
from latency_oracle.features.schema import ServerState
from latency_oracle.sidecar.accelerator import accelerator_type, detect_gpu_name, pod_identity
from latency_oracle.sidecar.metrics_parser import EngineSample, PrefixHitRate, parse_engine_metrics

from latency_oracle.settings import Settings

# vLLM V1 names (docs: "Production Metrics"), two data-parallel engines, plus noise.
VLLM_CURRENT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-2-7b-hf"} 5.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-2-7b-hf"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-2-7b-hf"} 2.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-2-7b-hf"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-2-7b-hf"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-2-7b-hf"} 0.25
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="meta-llama/Llama-2-7b-hf"} 1000.0
vllm:prefix_cache_queries_total{engine="1",model_name="meta-llama/Llama-2-7b-hf"} 1000.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="meta-llama/Llama-2-7b-hf"} 300.0
vllm:prefix_cache_hits_total{engine="1",model_name="meta-llama/Llama-2-7b-hf"} 100.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="meta-llama/Llama-2-7b-hf"} 4.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="meta-llama/Llama-2-7b-hf"} 7.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-2-7b-hf"} 9.0
vllm:time_to_first_token_seconds_count{model_name="meta-llama/Llama-2-7b-hf"} 9.0
vllm:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-2-7b-hf"} 0.8
"""

# vLLM V0 names: gpu_cache_usage_perc and the hit-rate gauge, plus swapped requests.
VLLM_OLDER = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 7.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="m"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 4.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.875
# TYPE vllm:cpu_cache_usage_perc gauge
vllm:cpu_cache_usage_perc{model_name="m"} 0.0
# TYPE vllm:gpu_prefix_cache_hit_rate gauge
vllm:gpu_prefix_cache_hit_rate{model_name="m"} 0.42
"""

SGLANG = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 12.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 3.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.6
# TYPE sglang:num_used_tokens gauge
sglang:num_used_tokens{model_name="m"} 24000.0
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="m"} 0.3
"""


def test_current_vllm_names_sum_counts_and_average_fractions_over_engines() -> None:
    sample = parse_engine_metrics(VLLM_CURRENT)
    assert sample.server_state() == ServerState(
        running_requests=8, waiting_requests=2, kv_cache_usage=0.375
    )
    assert (sample.prefix_cache_queries, sample.prefix_cache_hits) == (2000.0, 400.0)


def test_older_vllm_names() -> None:
    sample = parse_engine_metrics(VLLM_OLDER)
    assert sample.server_state() == ServerState(
        running_requests=7, waiting_requests=4, kv_cache_usage=0.875
    )
    assert PrefixHitRate().update(sample) == pytest.approx(0.42)


def test_sglang_names() -> None:
    sample = parse_engine_metrics(SGLANG)
    assert sample.server_state() == ServerState(
        running_requests=12, waiting_requests=3, kv_cache_usage=0.6, decode_tokens_in_flight=24000
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
