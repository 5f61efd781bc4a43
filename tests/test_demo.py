"""``latency-oracle demo``: real engines, sidecars and predictor route and learn, then stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from latency_oracle.sim.demo import DEMO_PODS, demo_env, launched, render_table, replay_load
from latency_oracle.sim.workloads import read_trace

from latency_oracle.settings import Settings


def test_demo_routes_learns_and_stops_every_child(tmp_path: Path) -> None:
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
            replay_load(cluster.predictor, cluster.sidecars, rows, 1.0, 4.0, live=False)
        )
    assert stats.sent == 60 and stats.failed == 0
    assert stats.decisions >= 50 and stats.finished >= 50  # a few may be in flight at the end
    assert stats.learned >= 30  # observations the sidecars reported, learned by the predictor
    assert {p.placed > 0 for p in stats.pods.values()} == {True}
    assert set(stats.pods) == {name for name, _ in DEMO_PODS}
    assert all(process.poll() is not None for process in cluster.children.processes)
    table = render_table(stats, 4.0, 1.0)
    assert "h100-0" in table and "observations learned" in table
