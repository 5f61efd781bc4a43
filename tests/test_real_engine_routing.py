"""Routing on real engines, the parts that need no engine: the trace's requests as clients
send them, the policies' choices on scraped state, and the scoring of runs."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
from real_engine import route_score, trace_load
from real_engine.epp_view import PodView
from real_engine.prompts import Corpus
from real_engine.route_policies import ALL, Least, RoundRobin, ScrapedPod
from real_engine.route_report import report, rescore
from real_engine.route_score import Outcome, Slo

from latency_oracle.sidecar.metrics_parser import EngineSample

SLO = Slo(ttft_ms=1000.0, tpot_ms=100.0)


def _trace(path: Path, outputs: list[int]) -> Path:
    lines = ["arrived_at,num_prefill_tokens,num_decode_tokens"]
    for i, out in enumerate(outputs):
        lines.append(f"{i * 0.5 + (i % 3) * 0.2},{100 + 937 * i % 9000},{out}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trace_requests_carry_what_clients_send_and_never_the_true_length(
    tmp_path: Path,
) -> None:
    short = _trace(tmp_path / "short.csv", [5] * 40)
    long = _trace(tmp_path / "long.csv", [3000] * 40)
    a = trace_load.requests(short, 100_000, start=3, count=30, rate=2.0, seed=1)
    b = trace_load.requests(long, 100_000, start=3, count=30, rate=2.0, seed=1)
    assert a == b  # the answers' lengths change nothing a router or an engine is sent
    rows = trace_load.window(trace_load.read_trace(short), 3, 30)
    for request, (index, row) in zip(a, rows, strict=True):
        assert request.max_tokens == (row.sent_cap(index, 1) or 0)
        assert request.prompt_tokens + request.max_tokens < trace_load.CONTEXT_TOKENS
        assert request.prompt_tokens == min(row.input_tokens, request.prompt_tokens)
    gaps = np.diff([r.arrival_s for r in a])
    assert a[0].arrival_s == 0.0 and gaps.min() >= 0
    assert np.mean(gaps) == pytest.approx(0.5, rel=1e-9)  # scaled to 2 requests/s


def test_a_window_wraps_around_the_trace(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.csv", [10] * 10)
    requests = trace_load.requests(trace, 50_000, start=8, count=5, rate=1.0)
    assert [r.index for r in requests] == [8, 9, 0, 1, 2]
    assert all(np.diff([r.arrival_s for r in requests]) >= 0)


def test_bodies_send_the_cap_or_none_through_chat() -> None:
    ids = np.arange(1000, dtype=np.int32)
    corpus = Corpus("x" * 1000, ids, np.arange(1000), np.arange(1, 1001))
    capped = trace_load.TraceRequest(0, 0.0, 10, 5, 256)
    path, body = capped.body(corpus, "m")
    assert path == "/v1/completions" and body["prompt"] == [10, 11, 12, 13, 14]
    assert body["max_tokens"] == 256 and "seed" not in body and body["stream"] is True
    path, body = trace_load.TraceRequest(0, 0.0, 10, 5, 0).body(corpus, "m")
    assert path == "/v1/chat/completions" and "max_tokens" not in body
    assert body["messages"] == [{"role": "user", "content": "xxxxx"}]


def _pod(url: str, running: float, waiting: float, kv: float) -> ScrapedPod:
    view = PodView(f"{url}/metrics")
    view.sample = EngineSample(
        running_requests=running, waiting_requests=waiting, kv_cache_usage=kv
    )
    return ScrapedPod(url, view, kv_capacity_tokens=10_000)


def _request(prompt_tokens: int) -> trace_load.TraceRequest:
    return trace_load.TraceRequest(0, 0.0, 0, prompt_tokens, 0)


def test_heuristics_count_what_they_sent_since_the_scrape() -> None:
    a, b = _pod("a", running=2, waiting=0, kv=0.10), _pod("b", running=3, waiting=0, kv=0.12)
    least = Least([a, b], "least-requests")
    picks = [asyncio.run(least.target(_request(100))) for _ in range(3)]
    assert picks == ["a", "a", "b"]  # 2 vs 3; then 3 vs 3 (the first listed wins); 4 vs 3
    a.view.sample = EngineSample(running_requests=0, waiting_requests=0, kv_cache_usage=0.0)
    assert asyncio.run(least.target(_request(100))) == "a"  # a new scrape: a is empty now
    kv = Least([_pod("a", 0, 0, 0.10), _pod("b", 0, 0, 0.12)], "least-kv-cache")
    assert asyncio.run(kv.target(_request(300))) == "a"  # 0.10 + 300 / 10,000 = 0.13
    assert asyncio.run(kv.target(_request(300))) == "b"
    rr = RoundRobin([a, b])
    assert [asyncio.run(rr.target(_request(1))) for _ in range(4)] == ["a", "b", "a", "b"]


def test_a_run_is_scored_with_sheds_as_never_answered() -> None:
    outcomes = [Outcome(100.0 * (i + 1), 50.0) for i in range(8)]
    outcomes += [Outcome(None, None, shed=True), Outcome(500.0, 150.0)]
    s = route_score.summarize("p", outcomes, duration_s=5.0, slo=Slo(600.0, 100.0))
    assert s.requests == 10 and s.shed == 0.1 and s.failed == 0.0
    assert s.attainment == pytest.approx(0.6)  # 100-600 ms with TPOT 50: 6; a shed, a slow TPOT
    assert s.goodput == pytest.approx(6 / 5.0)
    assert s.ttft_ms[0] == pytest.approx(np.percentile([*range(100, 900, 100), 500], 50))
    assert math.isinf(s.ttft_p90_all_ms) is False and s.ttft_p90_all_ms > s.ttft_ms[1]
    everyone_shed = route_score.summarize("p", [Outcome(None, None, True)] * 3, 1.0, SLO)
    assert math.isinf(everyone_shed.ttft_p90_all_ms) and math.isnan(everyone_shed.ttft_ms[1])
    assert Outcome(900.0, None).meets(SLO) and not Outcome(None, None).meets(SLO)


def _summary(policy: str, p90: float, attainment: float) -> route_score.Summary:
    return route_score.Summary(
        policy, 100, attainment, 1.0, 0.0, 0.0, (p90 / 2, p90, 2 * p90), p90, 50.0
    )


def test_runs_pool_as_medians_and_the_verdict_takes_the_best_rival() -> None:
    runs = [
        _summary("least-requests", 1000, 0.90),
        _summary("least-requests", 1400, 0.85),
        _summary("least-requests", 1200, 0.88),
        _summary("vllm-router-power_of_two", 900, 0.91),
        _summary("latency-oracle", 700, 0.93),
    ]
    pooled = route_score.pool(runs)
    assert [p.policy for p in pooled] == [
        "least-requests",
        "vllm-router-power_of_two",
        "latency-oracle",
    ]
    assert pooled[0].numbers["ttft_p90_all"] == (1200.0, 1000.0, 1400.0)
    v = route_score.verdict(
        pooled, "latency-oracle", ["least-requests", "vllm-router-power_of_two"]
    )
    assert v is not None and v.best == "vllm-router-power_of_two"
    assert v.ttft_p90_ratio == pytest.approx(700 / 900) and v.met and v.best_attainment_in_band
    worse = [*runs[:-1], _summary("latency-oracle", 800, 0.90)]
    v = route_score.verdict(route_score.pool(worse), "latency-oracle", ["vllm-router-power_of_two"])
    assert v is not None and not v.met  # 11% lower only, and less attainment
    lines = route_score.table(pooled)
    assert "1200 (1000-1400)" in lines[2] and lines[4].startswith("| latency-oracle | 1 |")


def test_a_saved_run_is_rescored_per_rate_and_policy(tmp_path: Path) -> None:
    rows = []
    for policy, ttft in (("least-requests", 900.0), ("latency-oracle", 400.0)):
        for round_ in (0, 1):
            for i in range(10):
                row = {"policy": policy, "round": round_, "rate": 0.25, "arrival_s": i * 4.0}
                row |= {"ttft_ms": ttft + 10 * i, "tpot_ms": 50.0, "shed": False}
                rows.append(row)
    rows.append({"policy": "warm-up", "ttft_ms": 1.0, "tpot_ms": 1.0, "shed": False})
    saved = tmp_path / "run.json"
    saved.write_text(
        json.dumps({"config": {"slo": {"ttft_ms": 950.0, "tpot_ms": 100.0}}, "rows": rows})
    )
    summaries = rescore(saved, None)
    assert list(summaries) == [0.25]
    assert [s.policy for s in summaries[0.25]] == ["least-requests"] * 2 + ["latency-oracle"] * 2
    assert summaries[0.25][0].attainment == pytest.approx(0.6)  # 900-950 ms of 900-990 ms
    assert summaries[0.25][0].goodput == pytest.approx(6 / 36.0)
    lines = report(rescore(saved, Slo(2000.0, 100.0)))
    assert any(line.startswith("| least-requests | 2 | 100.0%") for line in lines)
    verdict = next(line for line in lines if line.startswith("latency-oracle:"))
    assert "bar met" in verdict and "outside the 80-95% band" in verdict


def test_the_shipped_comparison_rescores_to_every_policy_and_a_verdict() -> None:
    saved = Path(__file__).resolve().parents[1] / "bench/data/real_engine/routing-1.json.gz"
    summaries = rescore(saved, None)
    assert list(summaries) == [0.15]
    pooled = route_score.pool(summaries[0.15])
    assert {p.policy for p in pooled} == set(ALL) and all(p.runs == 2 for p in pooled)
    lines = report(summaries)
    assert sum(line.startswith("latency-oracle") for line in lines) == 2
