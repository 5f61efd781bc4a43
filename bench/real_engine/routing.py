"""Routing on real engines: every policy replays the same production trace on the same pods.

    .venv/bin/python bench/real_engine/routing.py                       # the comparison
    .venv/bin/python bench/real_engine/routing.py --rounds 1 --seconds 60 --policies \\
        round-robin,latency-oracle                                       # a short one
    .venv/bin/python bench/real_engine/routing.py --score FILE.json     # a saved run's table

The fleet: two real vLLM engines of different speeds (the tiny model and the larger
one, both served as ``tiny-llama``, each pinned to a core of its own), each behind its
sidecar, which reports to Latency Oracle's predictor (``latency-oracle serve``). The
load: a window of the Azure code trace (``trace_load.py``), its arrivals scaled to
``--rate`` requests/s (several: a comparison at each), caps as its clients send them,
answers ending at EOS. Policies (``route_policies.py``): round-robin, least-requests,
least-kv-cache (from the engines' ``/metrics``), Latency Oracle's ``/v1/route`` with
and without shedding, and the vLLM project's ``vllm-router`` with its ``power_of_two``,
``cache_aware`` and ``kv_aware`` policies (``peer_router.py``).

The machine is small and shared, so one run proves little: each round replays its own
trace window once per policy, in a shuffled order, and the table gives each number's
median over the rounds and its range. Before the rounds warm-up windows run
round-robin (one, or until the service has learned ``--warmup-observations``), so that
the service's learners have seen both pods (every policy's
requests go through the sidecars, so they keep learning during the others' runs too,
as in production). Between runs the engines drain and their prefix caches are reset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latency_oracle.sim.processes import free_port
from latency_oracle.sim.traces import azure_trace, read_trace
from real_engine import peer_router, route_score, trace_load
from real_engine.client import CUT, stream
from real_engine.engine import EngineSpec
from real_engine.epp_view import PodView
from real_engine.fleet import Fleet
from real_engine.install import VLLM_PIN, ensure_model, ensure_venv, home
from real_engine.prompts import Corpus
from real_engine.route_policies import (
    ALL,
    PEERS,
    SERVICE,
    LatencyOracle,
    Least,
    PeerRouter,
    Policy,
    RoundRobin,
    ScrapedPod,
)
from real_engine.route_report import report, rescore

MODEL = "tiny-llama"
SETTLE_TIMEOUT_S = 90.0
SLO_SCALE = 5.0  # SLOs: this times the idle fleet's slowest latencies (sim/evaluation.py)
CALIBRATION_REPEATS = 3
MAX_WARMUP_WINDOWS = 12


def fleet_specs() -> tuple[list[EngineSpec], dict[str, str], dict[str, str]]:
    """Two pods of different speeds under one served name, their accelerator labels, and
    where each publishes its KV-cache events (ZMQ; ``vllm-router``'s ``kv_aware`` reads
    them, nothing else does). Each pod has a core of its own, as pods have their own
    accelerators: the fast one the last core, the slow one core 0, which it shares with
    the sidecars, the predictor, the peer router and the load generator."""
    cores = sorted(os.sched_getaffinity(0))
    # (name, core, max_num_batched_tokens, label): prefill chunks of 512 tokens make long
    # prompts' first token slower on the slow pod.
    pods = [("pod-fast", cores[-1], 2048, "cpu-core1"), ("pod-slow", cores[0], 512, "cpu-core0")]
    specs, labels, events = [], {}, {}
    for name, core, batched, label in pods:
        events[name] = f"tcp://127.0.0.1:{free_port()}"
        config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": events[name]}
        extra = ("--kv-events-config", json.dumps(config))
        spec = EngineSpec(name, "tiny", MODEL, str(core), batched, extra_args=extra)
        specs.append(spec)
        labels[name] = label
    return specs, labels, events


@dataclass(frozen=True)
class Config:
    rates: tuple[float, ...]  # requests/s; a comparison at each
    seconds: float  # of arrivals per run
    drain_s: float  # after the last arrival, then the rest is cut
    rounds: int
    warmup_s: float  # a warm-up window's arrivals
    warmup_observations: int  # windows run until the service has learned this many
    slo: route_score.Slo | None  # None: calibrated on the idle fleet
    policies: tuple[str, ...]
    seed: int


class Comparison:
    """The engines' live view, the policies, and the runs' rows."""

    def __init__(
        self,
        fleet: Fleet,
        corpus: Corpus,
        config: Config,
        kv_events: dict[str, str],
        out: Path,
        meta: dict[str, object],
    ) -> None:
        self.out = out
        self.meta = meta
        self.fleet = fleet
        self.kv_events = kv_events
        self.corpus = corpus
        self.config = config
        self.views = {n: PodView(f"{p.engine.url}/metrics") for n, p in fleet.pods.items()}
        self.rows: list[dict[str, object]] = []
        self.summaries: dict[float, list[route_score.Summary]] = {}

    def _scraped(self) -> list[ScrapedPod]:
        return [
            ScrapedPod(pod.url, self.views[name], pod.spec.kv_cache_tokens or 32_768)
            for name, pod in self.fleet.pods.items()
        ]

    @contextlib.contextmanager
    def policy(self, name: str, client: httpx.AsyncClient) -> Iterator[Policy]:
        if name == "round-robin":
            yield RoundRobin(self._scraped())
        elif name in ("least-requests", "least-kv-cache"):
            yield Least(self._scraped(), name)
        elif name in SERVICE:
            urls = {n: p.url for n, p in self.fleet.pods.items()}
            predictor = str(self.fleet.predictor_url)
            shed = name.endswith("-shed")
            yield LatencyOracle(predictor, urls, MODEL, self.config.slo, client, shed)
        else:
            workers = {p.url: self.kv_events[n] for n, p in self.fleet.pods.items()}
            router_policy = name.removeprefix("vllm-router-")
            with peer_router.running_router(router_policy, workers, MODEL) as url:
                yield PeerRouter(url, name)

    async def settle(self, client: httpx.AsyncClient) -> None:
        """Until no engine runs or queues a request, then reset their prefix caches."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            busy = sum(
                (v.sample.running_requests or 0) + (v.sample.waiting_requests or 0)
                for v in self.views.values()
            )
            if not busy:
                break
            await asyncio.sleep(0.5)
        for pod in self.fleet.pods.values():
            with contextlib.suppress(httpx.HTTPError):
                await client.post(f"{pod.engine.url}/reset_prefix_cache")
        await asyncio.sleep(1.0)

    async def replay(
        self,
        client: httpx.AsyncClient,
        policy: Policy,
        requests: list[trace_load.TraceRequest],
        label: dict[str, object],
    ) -> list[route_score.Outcome]:
        """Send each request at its arrival time through ``policy``; cut at the run's end."""
        start = time.perf_counter()
        deadline = start + requests[-1].arrival_s + self.config.drain_s

        async def one(request: trace_load.TraceRequest) -> route_score.Outcome:
            await asyncio.sleep(max(start + request.arrival_s - time.perf_counter(), 0.0))
            arrival = time.perf_counter()
            try:
                target = await policy.target(request)
            except httpx.HTTPError as exc:
                return self._row(label, request, None, error=repr(exc)[:200])
            notes = getattr(policy, "decisions", {}).get(request.index, {})
            if target is None:
                return self._row(label, request, None, shed=True, **notes)
            path, body = request.body(self.corpus, MODEL)
            measured = await stream(client, target + path, body, deadline=deadline)
            policy.done(target)
            if measured.first_token is not None:
                ttft_ms = (measured.first_token - arrival) * 1e3
            elif measured.error == CUT:  # still waiting at the end: at least this long
                ttft_ms = (measured.finished or deadline) - arrival
                ttft_ms *= 1e3
            else:
                return self._row(label, request, target, error=measured.error)
            return self._row(
                label,
                request,
                target,
                ttft_ms=ttft_ms,
                tpot_ms=measured.tpot_ms,
                output_tokens=measured.output_tokens,
                finish_reason=measured.finish_reason,
                error=measured.error,
                **notes,
            )

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def _row(
        self,
        label: dict[str, object],
        request: trace_load.TraceRequest,
        target: str | None,
        *,
        ttft_ms: float | None = None,
        tpot_ms: float | None = None,
        shed: bool = False,
        **extra: object,
    ) -> route_score.Outcome:
        pods = {p.url: n for n, p in self.fleet.pods.items()}
        self.rows.append(
            {
                **label,
                "trace_index": request.index,
                "arrival_s": request.arrival_s,
                "prompt_tokens": request.prompt_tokens,
                "max_tokens": request.max_tokens,
                "pod": pods.get(target or "", "via-router" if target else None),
                "ttft_ms": ttft_ms,
                "tpot_ms": tpot_ms,
                "shed": shed,
                **extra,
            }
        )
        return route_score.Outcome(ttft_ms, tpot_ms, shed)

    def save(self) -> None:
        """The rows so far, with the command and the configuration (SLOs calibrated)."""
        meta = {**self.meta, "config": asdict(self.config), "load_average_now": os.getloadavg()}
        self.out.write_text(json.dumps({**meta, "rows": self.rows}, default=str))

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=600.0, limits=limits) as client:
            scrapers = [asyncio.create_task(v.run(client)) for v in self.views.values()]
            try:
                await self._rounds(client)
            finally:
                for task in scrapers:
                    task.cancel()

    def _requests(self, window: int, seconds: float, rate: float) -> list[trace_load.TraceRequest]:
        c = self.config
        count = max(int(seconds * rate), 2)
        start = (window * 997 + c.seed * 4_001) % 8_000
        corpus_tokens = len(self.corpus.ids)
        return trace_load.requests(azure_trace(), corpus_tokens, start, count, rate, c.seed)

    async def learned(self, client: httpx.AsyncClient) -> int:
        """Observations the service's global model has learned (its ``/v1/models``)."""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            response = await client.get(f"{self.fleet.predictor_url}/v1/models")
            keys = response.json()["models"]
            return max((int(m["samples"]) for m in keys if m["accelerator"] == "global"), default=0)
        return 0

    async def calibrate(self, client: httpx.AsyncClient) -> route_score.Slo:
        """SLOs from the idle fleet, as the cluster evaluation sets them: ``SLO_SCALE``
        times the slowest pod's TTFT of the trace's median prompt, and its TPOT."""
        median = int(np.median([r.input_tokens for r in read_trace(azure_trace())]))
        ttfts, tpots = [], []
        for pod in self.fleet.pods.values():
            for _ in range(CALIBRATION_REPEATS):
                body = {"model": MODEL, "prompt": self.corpus.ids[:median].tolist()}
                body |= {"max_tokens": 32, "ignore_eos": True, "stream": True}
                measured = await stream(client, pod.url + "/v1/completions", body)
                if measured.ttft_ms is not None and measured.tpot_ms is not None:
                    ttfts.append((pod.spec.name, measured.ttft_ms))
                    tpots.append((pod.spec.name, measured.tpot_ms))
                await self.settle(client)
        ttft = max(np.median([t for n, t in ttfts if n == name]) for name in self.fleet.pods)
        tpot = max(np.median([t for n, t in tpots if n == name]) for name in self.fleet.pods)
        slo = route_score.Slo(float(round(SLO_SCALE * ttft, -1)), float(round(SLO_SCALE * tpot)))
        print(f"idle: TTFT {ttfts}, TPOT {tpots} -> SLOs {slo}", flush=True)
        return slo

    async def _rounds(self, client: httpx.AsyncClient) -> None:
        if self.config.slo is None:
            self.config = replace(self.config, slo=await self.calibrate(client))
        c = self.config
        assert c.slo is not None
        for window in range(MAX_WARMUP_WINDOWS if c.warmup_s > 0 else 0):
            learned = await self.learned(client)
            if window and learned >= c.warmup_observations:
                break
            print(f"warm-up: round-robin for {c.warmup_s:.0f} s ({learned} learned)", flush=True)
            warm = self._requests(c.rounds + window, c.warmup_s, c.rates[0])
            await self.replay(client, RoundRobin(self._scraped()), warm, {"policy": "warm-up"})
            await self.settle(client)
        order = random.Random(c.seed)
        for rate, round_ in itertools.product(c.rates, range(c.rounds)):
            requests = self._requests(round_, c.seconds, rate)
            policies = list(c.policies)
            order.shuffle(policies)
            for name in policies:
                await self.settle(client)
                label = {"policy": name, "round": round_, "rate": rate}
                with self.policy(name, client) as policy:
                    began = time.perf_counter()
                    outcomes = await self.replay(client, policy, requests, label)
                summary = route_score.summarize(name, outcomes, requests[-1].arrival_s, c.slo)
                self.summaries.setdefault(rate, []).append(summary)
                self.save()  # after every run: an interrupted comparison keeps its runs
                print(
                    f"{rate} req/s, round {round_}, {name}: {time.perf_counter() - began:.0f} s, "
                    f"attainment {summary.attainment:.1%}, "
                    f"TTFT p90 {summary.ttft_p90_all_ms:.0f} ms, shed {summary.shed:.1%}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="0.5", help="requests/s of the replay (a,b: both)")
    parser.add_argument("--seconds", type=float, default=120.0, help="arrivals per run")
    parser.add_argument("--drain", type=float, default=30.0, help="s after the last arrival")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=90.0, help="s of round-robin first")
    parser.add_argument(
        "--warmup-observations",
        type=int,
        default=0,
        help="repeat warm-up windows until the service has learned this many (its global "
        "model answers from 100: LATENCY_ORACLE_GLOBAL_MIN_SAMPLES)",
    )
    parser.add_argument("--slo-ttft-ms", type=float, default=None)
    parser.add_argument("--slo-tpot-ms", type=float, default=None)
    parser.add_argument("--policies", default=",".join(ALL))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write rows and summaries here (.json)")
    parser.add_argument("--score", type=Path, help="only print the table of a saved run")
    args = parser.parse_args()
    given = (args.slo_ttft_ms, args.slo_tpot_ms)
    slo = route_score.Slo(*given) if None not in given else None  # type: ignore[arg-type]
    if args.score:
        print("\n".join(report(rescore(args.score, slo))))
        return
    policies = tuple(p for p in args.policies.split(",") if p)
    unknown = set(policies) - set(ALL)
    if unknown:
        raise SystemExit(f"--policies: unknown {sorted(unknown)}; known: {', '.join(ALL)}")
    config = Config(
        rates=tuple(float(r) for r in args.rate.split(",")),
        seconds=args.seconds,
        drain_s=args.drain,
        rounds=args.rounds,
        warmup_s=args.warmup,
        warmup_observations=args.warmup_observations,
        slo=slo,
        policies=policies,
        seed=args.seed,
    )
    if any(p in PEERS for p in policies):
        peer_router.ensure_router()
    # SIGTERM stops the engines, sidecars and routers as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # vLLM's /reset_prefix_cache (between runs) answers only in its development mode.
    os.environ.setdefault("VLLM_SERVER_DEV_MODE", "1")
    specs, labels, kv_events = fleet_specs()
    out = args.out or home() / "logs" / f"routing-{int(time.time())}.json"
    meta = {
        "command": " ".join(sys.argv),
        "engines": [asdict(s) for s in specs],
        "accelerators": labels,
        "vllm": VLLM_PIN,
        "router": peer_router.ROUTER_PIN,
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
    }
    with Fleet(specs, accelerators=labels, embedded_predictor=True) as fleet:
        for line in fleet.describe():
            print(line, flush=True)
        corpus = Corpus.load(ensure_venv(), ensure_model("tiny"), home() / "corpus")
        comparison = Comparison(fleet, corpus, config, kv_events, out, meta)
        asyncio.run(comparison.run())
    print(f"rows: {out}")
    print("\n".join(report(comparison.summaries)))


if __name__ == "__main__":
    main()
