"""Live accuracy on real engines: load through the sidecars, predictions asked before each request.

    .venv/bin/python bench/real_engine/live.py                    # full run (~20 min)
    .venv/bin/python bench/real_engine/live.py --quick            # a short one (~5 min)
    .venv/bin/python bench/real_engine/live.py --record bench/data/real_engine/NAME.csv.gz

What runs: the engines (``fleet.py``), a sidecar in front of each delivering through a tap
that records its observations (``recording_sink.py``) to Latency Oracle's predictor
(``latency-oracle serve``, the embedded default), and a second predictor that learns only
through llm-d's API, from the entries llm-d's endpoint picker would send it
(``epp_view.py``). Requests arrive as a Poisson process in phases of rising then falling
load up to saturation; halfway, the engine is restarted with another configuration (the
drift), unannounced; then the phases run again. Before each request the client asks
``/v1/route`` (which pod, and its p90s) and ``/predict/bulk/strict`` (llm-d's API, with the
EPP's view of that pod) and then measures the truth. At the end it prints coverage and
pinball per window against a state-blind rolling p90 and llm-d's batch baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latency_oracle.sim.processes import cli_argv, free_port, running_process
from real_engine import recording, score
from real_engine.client import stream
from real_engine.engine import EngineSpec
from real_engine.epp_view import PodView, training_entries
from real_engine.fleet import Fleet
from real_engine.install import VLLM_PIN, ensure_model, ensure_venv, home
from real_engine.prompts import Corpus, Workload
from real_engine.recording_sink import RecordingSink

LLMD_FLUSH_S = 1.0
REQUEST_TIMEOUT_S = 300.0
# After the last phase, requests still running get this long to finish; then the drift
# (a restart) cuts the rest, as a rollout that stops waiting does. Answers of thousands of
# tokens at saturation's TPOT would otherwise hold the run for many minutes.
DRAIN_S = 90.0


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    rate: float  # requests/s, Poisson


# Rates for one pinned core of a shared 2-core machine, where the tiny engine saturates
# near 2 requests/s of this workload; --rate-scale scales them for other machines.
FULL = [
    Phase("light", 75, 0.3),
    Phase("rising", 75, 0.7),
    Phase("busy", 75, 1.2),
    Phase("saturated", 60, 2.0),
    Phase("easing", 75, 0.8),
    Phase("quiet", 60, 0.3),
]
QUICK = [Phase("light", 15, 0.5), Phase("busy", 15, 1.5), Phase("quiet", 10, 0.5)]


@dataclass(frozen=True)
class Plan:
    engine: EngineSpec
    drifted: EngineSpec
    phases: list[Phase]
    phases_after: list[Phase] | None = None  # after the drift (default: the same)
    accelerator: str = "CPU"
    seed: int = 0


class Run:
    """One live run: the processes, the clients' view, and a row per request."""

    def __init__(self, plan: Plan, fleet: Fleet, native: str, llmd: str, sink: RecordingSink):
        self.plan = plan
        self.fleet = fleet
        self.native = native
        self.llmd = f"{llmd}/accelerators/{plan.accelerator}"
        self.sink = sink
        model = ensure_model(plan.engine.preset)
        corpus = Corpus.load(ensure_venv(), model, home() / "corpus")
        self.workload = Workload(corpus, plan.seed)
        self.views = {
            name: PodView(f"{pod.engine.url}/metrics") for name, pod in fleet.pods.items()
        }
        self.rows: list[dict[str, object]] = []
        self.entries: list[dict[str, object]] = []
        self.started = time.perf_counter()
        self.ids = itertools.count()
        self.drift = 0

    async def drive(self, client: httpx.AsyncClient, phases: list[Phase]) -> None:
        rng = np.random.default_rng(self.plan.seed + 100 * self.drift)
        tasks: set[asyncio.Task[None]] = set()
        for phase in phases:
            end = time.perf_counter() + phase.seconds
            while (now := time.perf_counter()) < end:
                task = asyncio.create_task(self.one(client, phase))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(min(rng.exponential(1.0 / phase.rate), max(end - now, 0)))
        if tasks:
            await asyncio.wait(tasks, timeout=DRAIN_S)

    async def one(self, client: httpx.AsyncClient, phase: Phase) -> None:
        prompt = self.workload.next()
        request = next(self.ids)
        drift = self.drift  # as it was when the request arrived
        arrival = time.perf_counter()
        served = self.plan.engine.served_name
        route = await client.post(
            f"{self.native}/v1/route",
            json={
                "input_tokens": len(prompt.ids),
                "max_tokens": prompt.session.max_tokens,
                "model": served,
            },
        )
        decision = route.json() if route.status_code == 200 else {}
        name = decision.get("pod") or next(iter(self.fleet.pods))
        chosen = next((c for c in decision.get("candidates", []) if c["pod"] == name), {})
        pod, view = self.fleet.pods[name], self.views[name]
        config = _describe(pod.spec)
        epp = view.features(prompt.ids)
        llmd = await client.post(
            f"{self.llmd}/predict/bulk/strict", json={"requests": [epp.request()]}
        )
        llmd_p90 = llmd.json()["predictions"][0] if llmd.status_code == 200 else {}
        view.prefixes.add(prompt.ids)
        key = str(request)
        view.inflight.arrive(key, len(prompt.ids))
        path, body = prompt.body(served)
        try:
            measured = await stream(
                client, pod.url + path, body, lambda: view.inflight.first_token(key)
            )
        finally:
            view.inflight.finish(key)
        self.entries += training_entries(epp, measured.ttft_ms, measured.tpot_ms)
        self.rows.append(
            {
                "request": request,
                "phase": phase.name,
                "phase_rate": phase.rate,
                "drift": drift,
                "engine_config": config,
                "pod": name,
                "accelerator": pod.accelerator,
                "served_model": served,
                "arrival_s": arrival - self.started,
                "first_token_s": _since(measured.first_token, self.started),
                "finished_s": _since(measured.finished, self.started),
                "api": "chat" if prompt.session.chat else "completions",
                "prompt_form": "ids" if isinstance(body.get("prompt"), list) else "text",
                "session": prompt.session.index,
                "max_tokens": prompt.session.max_tokens,
                "shared_prefix": prompt.prefix_id,
                "client_input_tokens": len(prompt.ids),
                "prompt_tokens": measured.usage.get("prompt_tokens"),
                "cached_tokens": measured.cached_tokens,
                "output_tokens": measured.output_tokens if measured.ok else None,
                "finish_reason": measured.finish_reason,
                "ttft_ms": measured.ttft_ms if measured.ok else None,
                "tpot_ms": measured.tpot_ms if measured.ok else None,
                "finished_wall": time.time(),
                **{f"epp_{k}": v for k, v in asdict(epp).items() if k != "input_token_length"},
                "route_ttft_p90": chosen.get("ttft_ms"),
                "route_tpot_p90": chosen.get("tpot_ms"),
                "route_cold": chosen.get("cold"),
                "llmd_ttft_p90": llmd_p90.get("ttft_ms"),
                "llmd_tpot_p90": llmd_p90.get("tpot_ms"),
            }
        )

    async def flush_llmd(self, client: httpx.AsyncClient) -> None:
        """Send the EPP's training entries every second, as its client does."""
        while True:
            await asyncio.sleep(LLMD_FLUSH_S)
            entries, self.entries = self.entries, []
            if entries:
                await client.post(f"{self.llmd}/add_training_data_bulk", json={"entries": entries})

    async def main(self) -> None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
            background = [asyncio.create_task(v.run(client)) for v in self.views.values()]
            background.append(asyncio.create_task(self.flush_llmd(client)))
            try:
                await self.drive(client, self.plan.phases)
                print(f"drift: restarting with {_describe(self.plan.drifted)}", flush=True)
                name = self.plan.engine.name
                await asyncio.to_thread(self.fleet.restart, name, self.plan.drifted)
                # The pod left the live list while it was down (its state expired); it is
                # routable again once its sidecar has reported the new engine.
                serving = time.monotonic()
                if not await asyncio.to_thread(self.sink.wait_reported, name, serving):
                    print(f"drift: {name} not reported within a minute", flush=True)
                self.drift = 1
                await self.drive(client, self.plan.phases_after or self.plan.phases)
            finally:
                for task in background:
                    task.cancel()

    def attach_observations(self) -> None:
        """Each request's sidecar observation: same pod, prompt and output tokens, finished
        within a few seconds of the client's end (the closest such)."""
        taken = self.sink.taken()
        for row in self.rows:
            candidates = [
                o
                for o in taken
                if o.get("pod") == row["pod"]
                and o.get("input_tokens") == row["prompt_tokens"]
                and o.get("output_tokens") == row["output_tokens"]
                and abs(float(o.get("timestamp", 0)) - float(row["finished_wall"])) < 5
            ]
            if candidates:
                best = min(candidates, key=lambda o: abs(o["timestamp"] - row["finished_wall"]))
                taken.remove(best)
                row.update({f"sc_{f}": best.get(f) for f in recording.SIDECAR_FIELDS})


def _since(t: float | None, start: float) -> float | None:
    return None if t is None else t - start


def _describe(spec: EngineSpec) -> str:
    return (
        f"{spec.preset} batched={spec.max_num_batched_tokens} seqs={spec.max_num_seqs} "
        f"cpus={spec.cpus}"
    )


def run(plan: Plan, out: Path | None, fleet: Fleet | None = None) -> Path:
    """Run ``plan``; write the recording (under the harness's logs when ``out`` is None).

    ``fleet``: engines already running (the tests' session engine), named as
    ``plan.engine``; they get their sidecars here. Else the plan's engine is started.
    """
    logs = home() / "logs"
    native_port, llmd_port = free_port(), free_port()
    native, llmd = f"http://127.0.0.1:{native_port}", f"http://127.0.0.1:{llmd_port}"
    quiet = {"LATENCY_ORACLE_MLFLOW_ENABLED": "false", "LATENCY_ORACLE_LOG_LEVEL": "warning"}
    load_before = os.getloadavg()
    with ExitStack() as stack:
        for port in (native_port, llmd_port):
            argv = cli_argv("serve", "--port", str(port))
            env = {**quiet, "LATENCY_ORACLE_STATE_DIR": str(logs / f"predictor-{port}")}
            stack.enter_context(running_process(argv, env, f"http://127.0.0.1:{port}/healthz"))
        sink = stack.enter_context(RecordingSink(native))
        if fleet is None:
            labels = {plan.engine.name: plan.accelerator}
            fleet = stack.enter_context(Fleet([plan.engine], accelerators=labels))
        fleet.add_sidecars(sink.url)
        for line in fleet.describe():
            print(line, flush=True)
        live = Run(plan, fleet, native, llmd, sink)
        asyncio.run(live.main())
        time.sleep(2.0)  # the sidecars' last observations reach the tap
        live.attach_observations()
    out = out or logs / f"live-{int(time.time())}.csv.gz"
    meta = {
        "command": " ".join(sys.argv),
        "engine": asdict(plan.engine),
        "drifted": asdict(plan.drifted),
        "phases": [asdict(p) for p in plan.phases],
        "phases_after": [asdict(p) for p in plan.phases_after or plan.phases],
        "vllm": VLLM_PIN,
        "models": {
            preset: json.loads((ensure_model(preset) / "latency_oracle_model.json").read_text())
            for preset in {plan.engine.preset, plan.drifted.preset}
        },
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "requests": len(live.rows),
        "observed": sum(r.get("sc_ttft_ms") is not None for r in live.rows),
    }
    live.rows.sort(key=lambda r: float(r["arrival_s"]))  # type: ignore[arg-type]
    recording.write(out, live.rows, meta)
    print(json.dumps(meta), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (~5 min)")
    parser.add_argument("--record", type=Path, help="write the recording here (.csv.gz)")
    parser.add_argument("--drift", choices=("batched-tokens", "model"), default="batched-tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-scale", type=float, default=1.0, help="multiply every rate")
    parser.add_argument(
        "--after-rate-scale", type=float, default=1.0, help="and every rate after the drift"
    )
    parser.add_argument("--score", type=Path, help="only print the table of a recording")
    args = parser.parse_args()
    if args.score is None:
        engine = EngineSpec(name="pod-0")
        drifted = (
            engine.with_(max_num_batched_tokens=512, max_num_seqs=16)
            if args.drift == "batched-tokens"
            else engine.with_(preset="large")
        )
        base = QUICK if args.quick else FULL
        phases = [Phase(p.name, p.seconds, p.rate * args.rate_scale) for p in base]
        after = [Phase(p.name, p.seconds, p.rate * args.after_rate_scale) for p in phases]
        plan = Plan(engine, drifted, phases, after, seed=args.seed)
        args.score = run(plan, args.record)
    print("\n".join(score.table(recording.load(args.score))))


if __name__ == "__main__":
    main()
