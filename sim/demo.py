"""``latency-oracle demo``: the whole product on one machine, as real processes.

Three simulated engines on different accelerators, a sidecar in front of each, the
predictor on its embedded store (sidecars post observations and pod state to it), and a
load generator replaying the Azure trace: each request asks ``/v1/route`` where to go,
then streams from the chosen pod's sidecar. A terminal table, redrawn in place, shows
per pod the predicted p90 TTFT against the TTFT the client measured, and the decisions.
Every child is stopped on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from latency_oracle.sim.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    answers,
    cli_argv,
    free_port,
)
from latency_oracle.sim.workloads import TraceRow, azure_trace, read_trace

from latency_oracle.settings import Settings

DEMO_PODS = (("h100-0", "H100"), ("a100-0", "A100"), ("l4-0", "L4"))
DEMO_SLO = {"ttft_ms": 1_400.0, "tpot_ms": 340.0}  # the evaluation's SLOs (5x unloaded L4)
DEMO_MIN_SAMPLES = 50  # models serve after 50 own samples, so the demo warms in seconds
REDRAW_S = 0.5
RECENT = 50


@dataclass(slots=True)
class PodStats:
    """What the table shows for one pod."""

    accelerator: str
    url: str
    placed: int = 0
    predicted_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    actual_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    last_reason: str = ""


@dataclass(slots=True)
class DemoStats:
    pods: dict[str, PodStats]
    sent: int = 0
    shed: int = 0
    failed: int = 0
    cold: int = 0
    learned: int = 0
    finished: int = 0
    elapsed_s: float = 0.0

    @property
    def decisions(self) -> int:
        return sum(p.placed for p in self.pods.values()) + self.shed


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


async def _one_request(
    client: httpx.AsyncClient,
    predictor: str,
    sidecars: dict[str, str],
    row: TraceRow,
    stats: DemoStats,
) -> None:
    route = {"input_tokens": row.input_tokens, "max_tokens": row.output_tokens, "slo": DEMO_SLO}
    try:
        answer = (await client.post(f"{predictor}/v1/route", json=route)).json()
        if answer.get("decision") != "place":
            stats.shed += 1
            return
        pod = stats.pods[answer["pod"]]
        pod.placed += 1
        pod.last_reason = str(answer.get("reason", ""))
        stats.cold += bool(answer.get("cold"))
        chosen = next(c for c in answer["candidates"] if c["pod"] == answer["pod"])
        pod.predicted_ms.append(float(chosen["ttft_ms"]))
        body = {
            "prompt": [1] * row.input_tokens,
            "max_tokens": row.output_tokens,
            "stream": True,
        }
        started = time.perf_counter()
        first: float | None = None
        async with client.stream("POST", f"{pod.url}/v1/completions", json=body) as response:
            async for _ in response.aiter_bytes():
                if first is None:
                    first = time.perf_counter()
        if first is not None:
            pod.actual_ms.append((first - started) * 1e3)
        stats.finished += 1
    except (httpx.HTTPError, KeyError, StopIteration, ValueError):
        stats.failed += 1


async def _poll_learned(client: httpx.AsyncClient, predictor: str, stats: DemoStats) -> None:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        models = (await client.get(f"{predictor}/v1/models")).json()["models"]
        stats.learned = sum(
            m["samples"] for m in models if m["accelerator"] == "global" and m["target"] == "ttft"
        )


def render_table(stats: DemoStats, elapsed: float, speed: float) -> str:
    """The live table (plain text; the caller adds the ANSI redraw)."""
    lines = [
        f"Latency Oracle demo  {elapsed:6.1f} s  trace speed {speed:g}x  "
        f"sent {stats.sent}  finished {stats.finished}  shed {stats.shed}  "
        f"failed {stats.failed}  observations learned {stats.learned}",
        "",
        f"{'pod':8} {'accel':6} {'placed':>7} {'pred p90 TTFT':>14} {'actual p50':>11} "
        f"{'actual p90':>11} {'covered':>8}  last decision",
    ]
    for name, pod in stats.pods.items():
        predicted = _mean(pod.predicted_ms)
        actual = sorted(pod.actual_ms)
        pairs = list(zip(pod.predicted_ms, pod.actual_ms, strict=False))
        covered = sum(a <= p for p, a in pairs) / len(pairs) if pairs else None
        lines.append(
            f"{name:8} {pod.accelerator:6} {pod.placed:7d} {_ms(predicted):>14} "
            f"{_ms(_pick(actual, 0.5)):>11} {_ms(_pick(actual, 0.9)):>11} "
            f"{'-' if covered is None else f'{covered:.0%}':>8}  {pod.last_reason[:60]}"
        )
    lines += ["", f"(means over the last {RECENT} requests per pod; Ctrl-C stops everything)"]
    return "\n".join(lines)


def _mean(values: deque[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pick(ordered: list[float], q: float) -> float | None:
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


async def replay_load(
    predictor: str,
    sidecars: dict[str, str],
    rows: list[TraceRow],
    speed: float,
    duration_s: float | None,
    live: bool,
) -> DemoStats:
    """Send the trace's requests at their (compressed) times until it ends or time is up."""
    stats = DemoStats({name: PodStats(acc, sidecars[name]) for name, acc in DEMO_PODS})
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120.0, limits=limits, trust_env=False) as client:
        start = time.monotonic()
        deadline = start + duration_s if duration_s is not None else float("inf")
        tasks: set[asyncio.Task[None]] = set()
        next_draw = start
        origin = rows[0].arrival
        for row in rows:
            due = start + (row.arrival - origin) / speed
            while time.monotonic() < min(due, deadline):
                now = time.monotonic()
                if now >= next_draw:
                    await _poll_learned(client, predictor, stats)
                    if live:
                        _redraw(render_table(stats, now - start, speed))
                    next_draw = now + REDRAW_S
                await asyncio.sleep(max(min(due, next_draw, deadline) - time.monotonic(), 0.0))
            if time.monotonic() >= deadline:
                break
            stats.sent += 1
            task = asyncio.create_task(_one_request(client, predictor, sidecars, row, stats))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _poll_learned(client, predictor, stats)
        stats.elapsed_s = time.monotonic() - start
    return stats


def _redraw(table: str) -> None:
    sys.stdout.write("\x1b[H\x1b[2J" + table + "\n")
    sys.stdout.flush()


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


def run_demo(speed: float, duration_s: float | None, trace: Path | None, live: bool) -> DemoStats:
    settings = Settings()
    rows = read_trace(trace or azure_trace(settings))
    with tempfile.TemporaryDirectory(prefix="latency-oracle-demo-") as folder:
        with launched(demo_env(settings), Path(folder)) as cluster:
            stats = asyncio.run(
                replay_load(cluster.predictor, cluster.sidecars, rows, speed, duration_s, live)
            )
        if live:
            _redraw(render_table(stats, stats.elapsed_s, speed))
    return stats


def _run(args: argparse.Namespace) -> None:
    def stop(signum: int, _: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        stats = run_demo(args.speed, args.duration, args.trace, live=not args.quiet)
    except KeyboardInterrupt:
        print("\nstopped; every child process is gone")
        return
    print(
        f"decisions {stats.decisions} (shed {stats.shed}), finished {stats.finished}, "
        f"failed {stats.failed}, observations learned {stats.learned}"
    )


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
    demo.set_defaults(handler=_run)
