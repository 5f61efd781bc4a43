"""How fast the simulated engine runs, and what step times its performance model gives.

Replays the Azure code trace (one hour, 8,819 requests) round-robin over six engines
(2x H100, 2x A100, 2x L4) in simulated time, at the trace's own rate and compressed 2x,
and prints simulated seconds per wall-clock second (the cluster evaluation's budget is
"one hour in well under a minute"). Then prints single-prompt prefill step times.

    python bench/sim_speed.py
"""

from __future__ import annotations

import csv
import time

from latency_oracle.sim.engine.gpu_profiles import shared_data_dir
from latency_oracle.sim.engine.hardware import accelerator_profile
from latency_oracle.sim.engine.perf_model import PerfModel
from latency_oracle.sim.engine.records import SimRequest
from latency_oracle.sim.engine.scheduler import Engine

POD_ACCELERATORS = ("H100", "H100", "A100", "A100", "L4", "L4")
TRACE = "traces/azure_code_2023.csv"


def load_trace() -> list[tuple[float, int, int]]:
    with (shared_data_dir() / TRACE).open(newline="") as handle:
        return [
            (float(r["arrived_at"]), int(r["num_prefill_tokens"]), int(r["num_decode_tokens"]))
            for r in csv.DictReader(handle)
        ]


def replay(trace: list[tuple[float, int, int]], load: float) -> tuple[float, float, int]:
    """(wall seconds, simulated seconds, steps) of a round-robin replay."""
    pods = [Engine.create(name, seed=i) for i, name in enumerate(POD_ACCELERATORS)]
    steps = 0
    start = time.perf_counter()
    for i, (arrival, prompt, output) in enumerate(trace):
        at = arrival / load
        pod = pods[i % len(pods)]
        steps += len(pod.run_until(at))
        pod.submit(SimRequest(str(i), at, prompt, output))
    for pod in pods:
        while pod.step() is not None:
            steps += 1
    wall = time.perf_counter() - start
    return wall, max(pod.now for pod in pods), steps


def main() -> None:
    trace = load_trace()
    print(f"Azure code trace: {len(trace)} requests over {trace[-1][0]:.0f} s, 6 pods")
    for load in (1.0, 2.0):
        wall, simulated, steps = replay(trace, load)
        print(
            f"load {load:.0f}x: {simulated:,.0f} simulated s in {wall:.2f} wall s "
            f"({simulated / wall:,.0f} sim s per wall s, {steps:,} steps, "
            f"{wall / steps * 1e6:.1f} us per step)"
        )
    print("\nOne prefill step, Llama-2-7B, TP=1 (ms): tokens 1 / 512 / 4096")
    for name in ("H100", "A100", "A40", "L4", "MI300X", "Gaudi3"):
        model = PerfModel(accelerator_profile(name, "Llama-2-7b-hf", shared_data_dir()))
        times = " / ".join(f"{model.prefill_step_ms(n):.1f}" for n in (1, 512, 4096))
        print(f"  {name:7s} {model.profile.source:18s} {times}")


if __name__ == "__main__":
    main()
