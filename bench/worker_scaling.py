"""1 vs 2 uvicorn workers on 2 cores: do the predictor's workers scale with the CPU they get?

Alternates rounds on a 1-worker and a 2-worker predictor (Redis mode: several workers need
shared models) and says, per round, the cores each worker, wrk and the rest of the machine
used and how many of wrk's keep-alive connections each worker holds: uvicorn's workers
share one listening socket, and the first to wake accepts a whole burst of connections, so
a round where one worker holds them all measures one worker, whatever the process count.
Run as part of ``python bench/load_test.py``.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass

from proc_stats import CpuWindow, connections_held, worker_pids
from wrk_runs import PREDICTION, Predictor, predictor, run_wrk

SCALING_CONNECTIONS = 16
SCALING_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class ScalingRound:
    """One wrk run on one predictor: throughput and where the CPU and connections went."""

    workers: int
    requests_per_s: float
    worker_cores: list[float]
    worker_connections: list[int]
    client_cores: float
    rest_cores: float  # everything else on the machine: Redis, other people's work


class _ConnectionWatch:
    """Records how a run's connections are spread over the workers once all are accepted."""

    def __init__(self, pids: list[int], port: int, expected: int) -> None:
        self.pids, self.port, self.expected = pids, port, expected
        self.held: dict[int, int] = {}

    def __call__(self) -> bool:
        self.held = connections_held(self.pids, self.port)
        return sum(self.held.values()) >= self.expected


def scaling_round(server: Predictor, connections: int, duration_s: float) -> ScalingRound:
    pids = worker_pids(server.pid)
    watch = _ConnectionWatch(pids, server.port, connections)
    window = CpuWindow(pids)
    level = run_wrk(f"{server.url}/v1/predictions", PREDICTION, connections, duration_s, watch)
    shares = window.shares()
    return ScalingRound(
        len(pids),
        level.requests_per_s,
        [shares.server[pid] for pid in pids],
        [watch.held.get(pid, 0) for pid in pids],
        shares.client,
        shares.rest,
    )


def worker_scaling(connections: int, duration_s: float, rounds: int) -> dict:
    """1 vs 2 workers in Redis mode (several workers need shared models), alternating rounds.

    Speed-ups are medians of each round's 2-worker over 1-worker figure: requests/s over
    all rounds and over those where every worker held connections, and requests/s per core
    the workers used (near 1: the workers scale with the CPU they get).
    """
    url = os.environ.get("LATENCY_ORACLE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    shared = {"redis_url": url, "redis_key_prefix": f"bench-load-{os.getpid()}"}
    with predictor(1, **shared) as one, predictor(2, **shared) as two:
        for server in (one, two):  # warm every worker
            run_wrk(f"{server.url}/v1/predictions", PREDICTION, connections, 1)
        pairs = [
            (
                scaling_round(one, connections, duration_s),
                scaling_round(two, connections, duration_s),
            )
            for _ in range(rounds)
        ]
    speedups = [two.requests_per_s / one.requests_per_s for one, two in pairs]
    spread = [s for s, (_, two) in zip(speedups, pairs, strict=True) if min(two.worker_connections)]
    return {
        "connections": connections,
        "duration_s": duration_s,
        "rounds": [[asdict(one), asdict(two)] for one, two in pairs],
        "speedup": statistics.median(speedups),
        "speedup_when_spread": statistics.median(spread) if spread else None,
        "rounds_spread": len(spread),
        "per_core_ratio": statistics.median(_per_core(two) / _per_core(one) for one, two in pairs),
    }


def _per_core(sample: ScalingRound) -> float:
    return sample.requests_per_s / max(sum(sample.worker_cores), 1e-9)


def _round_line(sample: ScalingRound) -> str:
    cores = "+".join(f"{c:.2f}" for c in sample.worker_cores)
    held = "+".join(str(n) for n in sample.worker_connections)
    return (
        f"{sample.workers} worker{'s' if sample.workers > 1 else ' '} {sample.requests_per_s:6.0f}"
        f" req/s, {_per_core(sample):5.0f} per server core (server {cores} cores, connections"
        f" {held}; wrk {sample.client_cores:.2f}, rest of machine {sample.rest_cores:.2f})"
    )


def print_scaling(scaling: dict) -> None:
    rounds = scaling["rounds"]
    print(
        f"workers (Redis mode, c={scaling['connections']}, {len(rounds)} alternating rounds of"
        f" {scaling['duration_s']:.0f} s; cores = CPU seconds per second):"
    )
    for i, (one, two) in enumerate(rounds, 1):
        ratio = two["requests_per_s"] / one["requests_per_s"]
        print(f"  round {i}: {_round_line(ScalingRound(**one))}")
        print(f"           {_round_line(ScalingRound(**two))}: {ratio:.2f}x")
    spread = scaling["speedup_when_spread"]
    print(
        f"  2 vs 1 workers: {scaling['speedup']:.2f}x (median of {len(rounds)} rounds), "
        + (
            f"{spread:.2f}x over the {scaling['rounds_spread']} where both workers held connections"
            if spread is not None
            else "no round spread its connections over both workers"
        )
        + f"; per server core {scaling['per_core_ratio']:.2f}x"
    )
