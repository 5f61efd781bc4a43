"""``latency-oracle demo``: real engines, sidecars and predictor warm up, route and learn,
then stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from latency_oracle.settings import Settings
from latency_oracle.sim.demo.launcher import (
    DEMO_MIN_SAMPLES,
    DEMO_PODS,
    demo_env,
    launched,
    replay_load,
    summary,
)
from latency_oracle.sim.demo.live_table import DemoStats, PodStats, render_table
from latency_oracle.sim.evaluation.workloads import read_trace


def test_demo_warms_up_then_routes_on_learned_predictions_and_stops_every_child(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "burst.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"arrival": i * 0.05, "input_tokens": 200 + 40 * i, "output_tokens": 4})
            for i in range(60)
        )
    )
    rows = read_trace(trace)
    with launched(demo_env(Settings()), tmp_path) as cluster:
        stats = asyncio.run(
            replay_load(
                cluster.predictor, cluster.sidecars, rows, 1.0, 90.0, False, warm_up_first=True
            )
        )
    assert stats.serving == {accelerator for _, accelerator in DEMO_PODS}  # warm-up done
    assert stats.warm_up_sent >= len(DEMO_PODS) * DEMO_MIN_SAMPLES
    assert stats.sent == 60 and stats.failed == 0
    assert stats.decisions >= 50 and stats.finished == stats.decisions  # in flight drained
    assert stats.cold == 0 and stats.first_learned_s is not None  # every decision learned
    assert set(stats.pods) == {name for name, _ in DEMO_PODS}
    assert all(process.poll() is not None for process in cluster.children.processes)
    table = render_table(stats, 4.0, 1.0, DEMO_MIN_SAMPLES)
    assert "h100-0" in table and "observations learned" in table
    assert "routing on learned predictions since" in table
    assert "learned predictions took over:" in summary(stats)


def test_the_table_says_why_decisions_are_heuristic_during_the_warm_up() -> None:
    stats = DemoStats({name: PodStats(accelerator, "") for name, accelerator in DEMO_PODS})
    stats.warming, stats.samples = True, {"H100": 50, "L4": 12}
    table = render_table(stats, 3.0, 1.0, DEMO_MIN_SAMPLES)
    assert "warm-up" in table and "heuristic routing until every model has 50 samples" in table
    assert "L4 12/50" in table and "A100 0/50" in table
    assert "never" in summary(stats)
