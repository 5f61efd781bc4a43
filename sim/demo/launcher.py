"""``latency-oracle demo``: the whole product on one machine, as real processes.

Three simulated engines on different accelerators, a sidecar in front of each, the
predictor on its embedded store (sidecars post observations and pod state to it), and a
load generator replaying the Azure trace: each request asks ``/v1/route`` where to go,
then streams from the chosen pod's sidecar. A warm-up first teaches every model
(``sim/demo/warmup.py``), so routing runs on learned predictions within seconds rather
than after minutes of a sparse trace. A terminal table, redrawn in place, shows per pod
the predicted p90 TTFT against the TTFT the client measured, and the decisions.
Every child is stopped on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from latency_oracle.settings import Settings
from latency_oracle.sim.demo.live_table import DemoStats, PodStats, redraw, render_table
from latency_oracle.sim.demo.warmup import (
    WARM_UP_LIMIT_S,
    poll_models,
    prompt_ids,
    stream_completion,
    warm_up,
)
from latency_oracle.sim.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    answers,
    cli_argv,
    free_port,
)
from latency_oracle.sim.traces import TraceRow, azure_trace, read_trace

DEMO_PODS = (("h100-0", "H100"), ("a100-0", "A100"), ("l4-0", "L4"))
DEMO_SLO = {"ttft_ms": 1_400.0, "tpot_ms": 340.0}  # the evaluation's SLOs (5x unloaded L4)
DEMO_MIN_SAMPLES = 50  # models serve after 50 own samples, so the demo warms in seconds
REDRAW_S = 0.5


class Children:
    """Child processes in their own sessions, stopped together (TERM, then KILL)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                cli_argv(*args),
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def check(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(map(str, process.args[3:]))} exited with {process.returncode}; "
                    f"logs in {self.log_dir}"
                )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True, slots=True)
class DemoCluster:
    predictor: str
    sidecars: dict[str, str]  # pod name -> sidecar URL
    children: Children


@contextlib.contextmanager
def launched(base_env: dict[str, str], log_dir: Path) -> Iterator[DemoCluster]:
    """Start the predictor, engines and sidecars; stop them all when the block exits."""
    children = Children(log_dir)
    predictor_port = free_port()
    predictor = f"http://127.0.0.1:{predictor_port}"
    sidecars: dict[str, str] = {}
    health: list[str] = [f"{predictor}/readyz"]
    try:
        children.start(
            "predictor",
            ["serve", "--port", str(predictor_port)],
            {**base_env, "LATENCY_ORACLE_STATE_DIR": str(log_dir / "state")},
        )
        engines: dict[str, str] = {}
        for i, (pod, accelerator) in enumerate(DEMO_PODS):
            engine_port = free_port()
            children.start(
                f"engine-{pod}",
                [
                    "sim-engine",
                    "--accelerator",
                    accelerator,
                    "--port",
                    str(engine_port),
                    "--seed",
                    str(i),
                ],
                base_env,
            )
            engines[pod] = f"http://127.0.0.1:{engine_port}"
        # Sidecars start once the predictor answers: their first pod state then lands at
        # once, where a failed one would wait out the publisher's backoff.
        _wait_healthy([*health, *(f"{url}/health" for url in engines.values())], children)
        for pod, accelerator in DEMO_PODS:
            sidecar_port = free_port()
            children.start(
                f"sidecar-{pod}",
                [
                    "sidecar",
                    "--engine-url",
                    engines[pod],
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(sidecar_port),
                ],
                {
                    **base_env,
                    "LATENCY_ORACLE_ACCELERATOR": accelerator,
                    "LATENCY_ORACLE_POD_NAME": pod,
                    "LATENCY_ORACLE_PREDICTOR_URL": predictor,
                },
            )
            sidecars[pod] = f"http://127.0.0.1:{sidecar_port}"
        _wait_healthy([f"{url}/sidecar/readyz" for url in sidecars.values()], children)
        yield DemoCluster(predictor, sidecars, children)
    finally:
        children.stop()


def _wait_healthy(urls: list[str], children: Children) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = list(urls)
    while pending:
        children.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"not healthy after {START_TIMEOUT_S:.0f} s: {pending}")
        if answers(pending[0]):
            pending.pop(0)
            continue
        time.sleep(0.1)


def route_body(index: int, row: TraceRow) -> dict[str, object]:
    """What the demo asks ``/v1/route`` for trace row ``index``: the request as its client
    sends it (prompt size and cap), never the trace's output length."""
    return {
        "input_tokens": row.input_tokens,
        "max_tokens": row.sent_cap(index) or 0,
        "slo": DEMO_SLO,
    }


async def _one_request(
    client: httpx.AsyncClient, predictor: str, index: int, row: TraceRow, stats: DemoStats
) -> None:
    """Route the request, then stream it from the chosen pod, where the engine ends it at
    its EOS or the cap."""
    try:
        answer = (await client.post(f"{predictor}/v1/route", json=route_body(index, row))).json()
        if answer.get("decision") != "place":
            stats.shed += 1
            return
        pod = stats.pods[answer["pod"]]
        pod.placed += 1
        pod.last_reason = str(answer.get("reason", ""))
        stats.decided(bool(answer.get("cold")))
        chosen = next(c for c in answer["candidates"] if c["pod"] == answer["pod"])
        pod.predicted_ms.append(float(chosen["ttft_ms"]))
        prompt = prompt_ids(index, row.input_tokens)
        ttft_ms = await stream_completion(client, pod.url, prompt, row.sent_cap(index))
        if ttft_ms is not None:
            pod.actual_ms.append(ttft_ms)
        stats.finished += 1
    except (httpx.HTTPError, KeyError, StopIteration, ValueError):
        stats.failed += 1


async def replay_load(
    predictor: str,
    sidecars: dict[str, str],
    rows: list[TraceRow],
    speed: float,
    duration_s: float | None,
    live: bool,
    *,
    warm_up_first: bool = False,
    startup_s: float = 0.0,
) -> DemoStats:
    """Send the trace's requests at their (compressed) times until it ends or time is up;
    those in flight when the trace ends finish, within the same time.

    With ``warm_up_first``, every pod first serves trace-shaped requests until all models
    serve (``sim/demo/warmup.py``), within the same ``duration_s``.
    """
    stats = DemoStats(
        {name: PodStats(acc, sidecars[name]) for name, acc in DEMO_PODS}, startup_s=startup_s
    )
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120.0, limits=limits, trust_env=False) as client:
        deadline = stats.started + duration_s if duration_s is not None else float("inf")

        def draw() -> None:
            if live:
                redraw(render_table(stats, stats.clock(), speed, DEMO_MIN_SAMPLES))

        if warm_up_first:
            limit = min(deadline, stats.started + WARM_UP_LIMIT_S)
            await warm_up(client, predictor, rows, stats, limit, draw)
        tasks: set[asyncio.Task[None]] = set()
        start, next_draw, origin = time.monotonic(), time.monotonic(), rows[0].arrival
        for index, row in enumerate(rows):
            due = start + (row.arrival - origin) / speed
            while time.monotonic() < min(due, deadline):
                if time.monotonic() >= next_draw:
                    await poll_models(client, predictor, stats)
                    draw()
                    next_draw = time.monotonic() + REDRAW_S
                await asyncio.sleep(max(min(due, next_draw, deadline) - time.monotonic(), 0.0))
            if time.monotonic() >= deadline:
                break
            stats.sent += 1
            task = asyncio.create_task(_one_request(client, predictor, index, row, stats))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        # The trace has ended: requests in flight finish (until time is up), so the
        # table counts what the pods served, not what the clock cut.
        if tasks and time.monotonic() < deadline:
            remaining = None if deadline == float("inf") else deadline - time.monotonic()
            await asyncio.wait(set(tasks), timeout=remaining)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await poll_models(client, predictor, stats)
        stats.elapsed_s = stats.clock()
    return stats


def demo_env(settings: Settings) -> dict[str, str]:
    """Environment of every child: quiet logs, no MLflow, models that warm up in seconds."""
    env = {
        "LATENCY_ORACLE_LOG_LEVEL": "warning",
        "LATENCY_ORACLE_MLFLOW_ENABLED": "false",
        "LATENCY_ORACLE_MIN_SAMPLES": str(DEMO_MIN_SAMPLES),
    }
    if settings.shared_data_dir is not None:
        env["LATENCY_ORACLE_SHARED_DATA_DIR"] = str(settings.shared_data_dir)
    return env


def run_demo(
    speed: float, duration_s: float | None, trace: Path | None, live: bool, warm_up_first: bool
) -> DemoStats:
    settings = Settings()
    rows = read_trace(trace or azure_trace(settings))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="latency-oracle-demo-") as folder:
        with launched(demo_env(settings), Path(folder)) as cluster:
            stats = asyncio.run(
                replay_load(
                    cluster.predictor,
                    cluster.sidecars,
                    rows,
                    speed,
                    duration_s,
                    live,
                    warm_up_first=warm_up_first,
                    startup_s=time.monotonic() - began,
                )
            )
        if live:
            redraw(render_table(stats, stats.elapsed_s, speed, DEMO_MIN_SAMPLES))
    return stats


def summary(stats: DemoStats) -> str:
    """The closing lines: what happened, and when learned predictions took over."""
    took_over = (
        "never: every decision was the cold heuristic"
        if stats.first_learned_s is None
        else f"{stats.first_learned_s:.1f} s into the demo "
        f"({stats.startup_s + stats.first_learned_s:.1f} s after the command started)"
    )
    return (
        f"processes started in {stats.startup_s:.1f} s; warm-up requests {stats.warm_up_sent}\n"
        f"decisions {stats.decisions} (shed {stats.shed}, heuristic {stats.cold}), "
        f"finished {stats.finished}, failed {stats.failed}, "
        f"observations learned {stats.learned}\n"
        f"learned predictions took over: {took_over}"
    )


def _run(args: argparse.Namespace) -> None:
    def stop(signum: int, _: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        stats = run_demo(args.speed, args.duration, args.trace, not args.quiet, not args.no_warm_up)
    except KeyboardInterrupt:
        print("\nstopped; every child process is gone")
        return
    print(summary(stats))


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    """Register ``demo`` on the CLI's subcommands."""
    demo = commands.add_parser(
        "demo",
        help="run 3 simulated engines, their sidecars, the predictor and a trace replay live",
    )
    demo.add_argument("--speed", type=_positive, default=1.0, help="trace replay speed-up")
    demo.add_argument("--duration", type=_positive, help="stop after this many seconds")
    demo.add_argument("--trace", type=Path, help="trace to replay (default: the Azure trace)")
    demo.add_argument("--quiet", action="store_true", help="no live table, just the summary")
    demo.add_argument(
        "--no-warm-up",
        action="store_true",
        help="replay the trace at once: decisions stay heuristic until enough of it is learned",
    )
    demo.set_defaults(handler=_run)
