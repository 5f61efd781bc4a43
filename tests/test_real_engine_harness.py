"""The real-engine harness's own parts that need no engine: specs, the EPP's view, the
recordings' round trip and the baselines' arithmetic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from real_engine import recording, score
from real_engine.__main__ import parse_engine
from real_engine.engine import Engine, EngineSpec, parse_cpus
from real_engine.epp_view import BLOCK, EppFeatures, PrefixIndex, training_entries


def test_engine_specs_parse_and_pin() -> None:
    spec, label = parse_engine("name=b,preset=large,cpus=2-3,max_num_batched_tokens=256", 1)
    assert (spec.name, spec.preset, spec.served_name, spec.cpus) == (
        "b",
        "large",
        "small-llama",
        "2-3",
    )
    assert spec.max_num_batched_tokens == 256 and label == "CPU"
    assert parse_engine("accelerator=slow-cpu", 4)[0].name == "engine-4"
    with pytest.raises(SystemExit):
        parse_engine("colour=red", 0)
    assert parse_cpus("1") == {1} and parse_cpus("2-3,5") == {2, 3, 5}
    assert EngineSpec().cpus == str(max(os.sched_getaffinity(0)))  # core 0 stays free
    engine = Engine(spec, Path("/py"), Path("/model"), 1234, Path("/logs"))
    argv, env = engine.argv(), engine.env()
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--enable-prompt-tokens-details" in argv and "--enable-prefix-caching" in argv
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "256"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "2-3" and env["HF_HUB_OFFLINE"] == "1"


def test_the_epp_scores_the_leading_blocks_it_sent_before() -> None:
    index = PrefixIndex()
    shared = list(range(10 * BLOCK))
    assert index.score(shared) == 0.0
    index.add(shared)
    assert index.score(shared) == 1.0
    assert index.score(shared[: 5 * BLOCK] + [9999] * (5 * BLOCK)) == pytest.approx(0.5)
    assert index.score([7, *shared]) == 0.0  # a different first block: nothing matches


def test_epp_training_entries_are_llmds_ttft_and_tpot_entries() -> None:
    features = EppFeatures(0.5, 300, 2, 4, 0.25, 900, 5000)
    ttft, tpot = training_entries(features, 120.0, 8.5)
    assert ttft["actual_ttft_ms"] == 120.0 and ttft["actual_tpot_ms"] == 0
    assert tpot["actual_tpot_ms"] == 8.5 and tpot["actual_ttft_ms"] == 0
    assert tpot["prefix_cache_score"] == 0 and tpot["num_tokens_generated"] == 0
    assert training_entries(features, 120.0, None) == [ttft]


def _rows(n: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        ttft = float(rng.lognormal(5, 0.5))
        rows.append(
            {
                "request": i,
                "phase": "light",
                "drift": int(i >= n // 2),
                "pod": "p",
                "accelerator": "CPU",
                "served_model": "m",
                "arrival_s": i * 0.5,
                "first_token_s": i * 0.5 + ttft / 1e3,
                "finished_s": i * 0.5 + 2.0,
                "client_input_tokens": 100 + i,
                "prompt_tokens": 101 + i,
                "output_tokens": 20,
                "ttft_ms": ttft,
                "tpot_ms": 10.0 if i % 7 else None,
                "route_cold": i < 3,
                **{f"sc_{f}": 1 for f in recording.SIDECAR_FIELDS},
                "sc_ttft_ms": ttft if i != 5 else None,  # one request the sidecar missed
                "sc_prefix_cache_hit_tokens": None,
                **{f"epp_{f}": 0.5 for f in recording.EPP_FIELDS},
                "route_ttft_p90": 200.0,
                "llmd_ttft_p90": 250.0,
            }
        )
    return rows


def test_recordings_round_trip_and_load_as_the_benches_replay_them(tmp_path: Path) -> None:
    path = tmp_path / "run.csv.gz"
    recording.write(path, _rows(80), {"command": "test"})
    assert (tmp_path / "run.json").exists()
    columns = recording.read(path)
    assert list(columns["route_cold"][:4]) == [1.0, 1.0, 1.0, 0.0]
    assert np.isnan(columns["tpot_ms"][0]) and columns["tpot_ms"][1] == 10.0
    rec = recording.load(path)
    assert len(rec) == 79  # the unobserved request is left out
    assert rec.drift_at == 39 and rec.fields["prefix_cache_hit_tokens"].sum() == 0
    batches = list(rec.schedule(batch=10))
    learned = np.concatenate([known for _, known in batches])
    assert len(np.unique(learned)) == len(learned)  # each outcome learned once
    for rows, known in batches:  # and only once it had finished
        assert (rec.finished[known] <= rec.timestamp[rows[0]]).all()


def test_the_rolling_p90_sees_only_finished_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "run.csv.gz"
    recording.write(path, _rows(80), {})
    rec = recording.load(path)
    rolling = score.rolling_p90(rec, rec.ttft_ms)
    assert np.isnan(rolling[:4]).all()  # nothing had finished (2 s each, 0.5 s apart)
    i = 60
    known = rec.ttft_ms[rec.finished <= rec.timestamp[i]]
    assert rolling[i] == pytest.approx(np.quantile(known[-score.ROLLING :], 0.9))


def test_llmd_buckets_are_llmds() -> None:
    assert score.llmd_bucket(0, 0.0, 0.0) == (0, 0, 0)
    assert score.llmd_bucket(2, 0.99, 0.3) == (1, 19, 1)
    assert score.llmd_bucket(5, 0.5, 1.0) == (2, 10, 3)
    assert score.llmd_bucket(10, 0.05, 0.75) == (3, 1, 3)
    assert score.llmd_bucket(11, 1.0, 0.0)[0] == 4
