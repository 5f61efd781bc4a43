"""The cluster evaluation: every policy on the identical workload, swept over load.

Plan: replay the workload at each load factor through every policy; find the load where
the best heuristic starts missing its SLOs (its SLO attainment drops below
``ATTAINMENT_TARGET``); replay that load again with the scheduled shifts to watch the
predictions' coverage through them. SLOs come from the data, not from the results:
``slo_scale`` times the unloaded latency of the median prompt on the slowest pod type.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from latency_oracle.settings import Settings
from latency_oracle.sim.engine.gpu_profiles import shared_data_dir
from latency_oracle.sim.evaluation.cluster import (
    ClusterConfig,
    RunResult,
    build_engines,
    run_cluster,
)
from latency_oracle.sim.evaluation.evaluated_policies import (
    HEURISTICS,
    POLICY_NAMES,
    SloTargets,
    make_policy,
)
from latency_oracle.sim.evaluation.workloads import (
    DEFAULT_RATE,
    Arrival,
    Shift,
    SyntheticSpec,
    WorkloadName,
    apply_shifts,
    default_shifts,
    replay,
    synthetic,
)
from latency_oracle.sim.traces import read_trace

ATTAINMENT_TARGET = 0.90  # the SLOs are p90 objectives: missing them = under 90% met
WINDOW_S = 300.0  # coverage windows (5 minutes)
SERIES_BIN_S = 60.0  # latency-over-time bins
DEFAULT_LOADS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
DEFAULT_SLO_SCALE = 5.0
COVERAGE_TARGET = 0.90
COVERAGE_TOLERANCE = 0.03


@dataclass(frozen=True, slots=True)
class Workload:
    """Where the arrivals come from: a trace file or a synthetic generator."""

    name: WorkloadName
    trace: Path | None = None
    duration_s: float = 3600.0  # synthetic: its length; a trace: the first this many s
    seed: int = 0
    rate: float = DEFAULT_RATE  # synthetic requests/s at load 1

    def describe(self) -> str:
        if self.trace is not None:
            return f"trace replay of `{self.trace.name}` (its first {self.duration_s:.0f} s)"
        return (
            f"synthetic `{self.name}`, {self.rate:g} req/s at 1x, {self.duration_s:.0f} s, "
            f"seed {self.seed}"
        )

    def arrivals(self, load: float, settings: Settings) -> list[Arrival]:
        if self.trace is not None:
            rows = read_trace(self.trace)
            start = rows[0].arrival
            window = [r for r in rows if r.arrival - start < self.duration_s]
            return replay(window, load, seed=self.seed)
        spec = SyntheticSpec(self.name, self.rate, self.duration_s, self.seed)
        return synthetic(spec, load, settings)


def data_slos(
    config: ClusterConfig, median_prompt: int, scale: float, data_dir: Path
) -> SloTargets:
    """``scale`` x the unloaded TTFT and decode step of the median prompt on the slowest pod."""
    engines = build_engines(config, data_dir, 0)
    ttft = max(e.perf.prefill_step_ms(median_prompt) for e in engines)
    tpot = max(e.perf.step_ms(1, 0.0, median_prompt + 1) for e in engines)
    return SloTargets(round(scale * ttft, 1), round(scale * tpot, 1))


@dataclass(frozen=True, slots=True)
class Summary:
    """One policy at one load: the report's numbers."""

    policy: str
    load: float
    requests: int
    attainment: float  # met both SLOs / arrived (shed counts as a miss)
    goodput: float  # requests/s meeting both SLOs
    shed_rate: float
    ttft_ms: tuple[float, float, float]  # p50, p90, p99 of served requests
    # p90 over every arrival, a shed request counted as never answered: what a caller sees,
    # so shedding the slowest requests cannot flatter a policy's tail
    ttft_p90_all_ms: float
    tpot_ms: tuple[float, float, float]
    ttft_coverage: float | None  # share of warm p90 predictions the outcome stayed under
    tpot_coverage: float | None
    ttft_pinball_ms: float | None
    wall_s: float
    capped: int = 0  # oracle decisions its fork horizon made (it could not finish the fork)


@dataclass(frozen=True, slots=True)
class Window:
    start_s: float
    predictions: int  # warm ones: what coverage and pinball are measured on
    coverage: float | None
    pinball_ms: float | None
    cold: int  # made while a candidate's model was cold (the heuristic placed them)


@dataclass(slots=True)
class TimeSeries:
    """Per-bin p90 TTFT and per-window prediction quality of one run."""

    bins_s: list[float]
    ttft_p90_ms: list[float]
    windows: list[Window]


def summarize(result: RunResult, load: float, slo: SloTargets) -> Summary:
    ttft = np.array([o.ttft_ms for o in result.outcomes])
    tpot = np.array([o.tpot_ms for o in result.outcomes if o.tpot_ms is not None])
    met = sum(1 for o in result.outcomes if _meets(o.ttft_ms, o.tpot_ms, slo))
    warm = [o for o in result.outcomes if o.ttft_pred_ms is not None and not o.cold]
    tpot_pairs = [
        (o.tpot_ms, o.tpot_pred_ms)
        for o in warm
        if o.tpot_ms is not None and o.tpot_pred_ms is not None
    ]
    return Summary(
        policy=result.policy,
        load=load,
        requests=result.arrivals,
        attainment=met / max(result.arrivals, 1),
        goodput=met / max(result.duration_s, 1e-9),
        shed_rate=len(result.shed) / max(result.arrivals, 1),
        ttft_ms=_percentiles(ttft),
        ttft_p90_all_ms=_p90_counting_shed(ttft, len(result.shed)),
        tpot_ms=_percentiles(tpot),
        ttft_coverage=_coverage([(o.ttft_ms, o.ttft_pred_ms) for o in warm]),
        tpot_coverage=_coverage(tpot_pairs),
        ttft_pinball_ms=_pinball([(o.ttft_ms, o.ttft_pred_ms) for o in warm]),
        wall_s=result.wall_s,
        capped=result.capped,
    )


def time_series(result: RunResult) -> TimeSeries:
    outcomes = sorted(result.outcomes, key=lambda o: o.arrival)
    end = max((o.arrival for o in outcomes), default=0.0)
    bins = np.arange(0.0, end + SERIES_BIN_S, SERIES_BIN_S)
    arrivals = np.array([o.arrival for o in outcomes])
    ttft = np.array([o.ttft_ms for o in outcomes])
    p90 = []
    for start in bins:
        inside = ttft[(arrivals >= start) & (arrivals < start + SERIES_BIN_S)]
        p90.append(float(np.percentile(inside, 90)) if len(inside) else float("nan"))
    windows = []
    for start in np.arange(0.0, end + 1e-9, WINDOW_S):
        predicted = [
            o
            for o in outcomes
            if start <= o.arrival < start + WINDOW_S and o.ttft_pred_ms is not None
        ]
        warm = [(o.ttft_ms, o.ttft_pred_ms) for o in predicted if not o.cold]
        cold = len(predicted) - len(warm)
        windows.append(Window(float(start), len(warm), _coverage(warm), _pinball(warm), cold))
    return TimeSeries(bins.tolist(), p90, windows)


def _meets(ttft_ms: float, tpot_ms: float | None, slo: SloTargets) -> bool:
    return ttft_ms <= slo.ttft_ms and (tpot_ms is None or tpot_ms <= slo.tpot_ms)


def _percentiles(values: np.ndarray) -> tuple[float, float, float]:
    if not len(values):
        return (float("nan"),) * 3
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def _p90_counting_shed(served_ttft_ms: np.ndarray, shed: int) -> float:
    """p90 TTFT with each shed request an infinite TTFT (inf once they reach the p90)."""
    everyone = np.concatenate([served_ttft_ms, np.full(shed, np.inf)])
    if not len(everyone):
        return float("nan")
    with np.errstate(invalid="ignore"):  # interpolating between two infinities
        return float(np.nan_to_num(np.percentile(everyone, 90), nan=np.inf))


def _coverage(pairs: Sequence[tuple[float, float]]) -> float | None:
    if not pairs:
        return None
    return float(np.mean([actual <= predicted for actual, predicted in pairs]))


def _pinball(pairs: Sequence[tuple[float, float]], q: float = 0.9) -> float | None:
    if not pairs:
        return None
    diff = np.array([actual - predicted for actual, predicted in pairs])
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


class ProgressBar:
    """A one-line bar on stderr with an ETA, redrawn in place; silent when ``enabled`` is
    False. ``total`` may grow as a sweep finds it needs more loads (the ETA follows)."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.width = width
        self.done = 0
        self.label = ""
        self._start = self._next_draw = time.monotonic()

    def advance(self, by: int = 1) -> None:
        self.done += by
        now = time.monotonic()
        if self.enabled and (now >= self._next_draw or self.done >= self.total):
            self._next_draw = now + 0.5
            share = min(self.done / self.total, 1.0)
            filled = int(share * self.width)
            elapsed = time.monotonic() - self._start
            eta = elapsed / max(self.done, 1) * max(self.total - self.done, 0)
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (self.width - filled)}] {share:4.0%} "
                f"{elapsed:5.0f} s, ETA {eta:5.0f} s  {self.label:<40.40}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


@dataclass(slots=True)
class Evaluation:
    workload: str
    seed: int
    slo: SloTargets
    slo_scale: float
    pods: list[str]
    loads: list[float]
    policies: list[str]
    sweep: list[Summary] = field(default_factory=list)
    chosen_load: float | None = None
    shifts: list[Shift] = field(default_factory=list)
    shift_summaries: list[Summary] = field(default_factory=list)
    shift_series: dict[str, TimeSeries] = field(default_factory=dict)
    series: dict[tuple[float, str], TimeSeries] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    def at(self, load: float, summaries: Sequence[Summary] | None = None) -> list[Summary]:
        return [s for s in (summaries if summaries is not None else self.sweep) if s.load == load]


def run_policy(
    arrivals: list[Arrival],
    name: str,
    config: ClusterConfig,
    settings: Settings,
    slo: SloTargets,
    seed: int,
    shifts: Sequence[Shift] = (),
    progress: ProgressBar | None = None,
    weight: int = 1,
) -> RunResult:
    """One policy over the arrivals; each arrival advances ``progress`` by ``weight`` (a
    policy's relative cost per arrival, so the ETA weighs slow policies right)."""
    policy = make_policy(name, settings, slo, seed)
    engines = build_engines(config, shared_data_dir(settings), seed)
    started = time.perf_counter()
    result = run_cluster(
        arrivals,
        policy,  # type: ignore[arg-type]
        engines,
        config.pods,
        shifts,
        config.scrape_interval_s,
        None if progress is None else lambda _: progress.advance(weight),
    )
    result.wall_s = time.perf_counter() - started
    result.capped = getattr(policy, "capped", 0)
    return result


def evaluate(
    workload: Workload,
    loads: Sequence[float] = DEFAULT_LOADS,
    policies: Sequence[str] = POLICY_NAMES,
    seed: int = 0,
    settings: Settings | None = None,
    config: ClusterConfig | None = None,
    slo_scale: float = DEFAULT_SLO_SCALE,
    with_shifts: bool = True,
    show_progress: bool = True,
) -> Evaluation:
    """Sweep ``loads`` x ``policies``, then replay the chosen load with shifts."""
    settings = settings or Settings(mlflow_enabled=False)
    config = config or ClusterConfig()
    unknown = sorted(set(policies) - set(POLICY_NAMES))
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {', '.join(POLICY_NAMES)}")
    started = time.perf_counter()
    base = workload.arrivals(1.0, settings)
    median_prompt = int(np.median([a.request.prompt_tokens for a in base]))
    slo = data_slos(config, median_prompt, slo_scale, shared_data_dir(settings))
    evaluation = Evaluation(
        workload.describe(),
        seed,
        slo,
        slo_scale,
        [f"{p.name} ({p.accelerator})" for p in config.pods],
        list(loads),
        list(policies),
        versions=versions(),
    )
    runs = len(loads) * len(policies) + (len(policies) if with_shifts else 0)
    progress = ProgressBar(len(base) * runs, show_progress)
    load_arrivals = {load: workload.arrivals(load, settings) for load in loads}
    for load, arrivals in load_arrivals.items():
        for name in policies:
            progress.label = f"{name} at load {load:g}"
            result = run_policy(arrivals, name, config, settings, slo, seed, (), progress)
            evaluation.sweep.append(summarize(result, load, slo))
            evaluation.series[load, name] = time_series(result)
    evaluation.chosen_load = choose_load(evaluation.sweep, loads)
    if with_shifts and evaluation.chosen_load is not None:
        arrivals = load_arrivals[evaluation.chosen_load]
        span = arrivals[-1].request.arrival
        evaluation.shifts = default_shifts(span)
        shifted = apply_shifts(arrivals, evaluation.shifts, settings, seed)
        for name in policies:
            progress.label = f"{name} with shifts"
            result = run_policy(
                shifted, name, config, settings, slo, seed, evaluation.shifts, progress
            )
            evaluation.shift_summaries.append(summarize(result, evaluation.chosen_load, slo))
            evaluation.shift_series[name] = time_series(result)
    progress.close()
    evaluation.wall_s = time.perf_counter() - started
    return evaluation


def choose_load(sweep: Sequence[Summary], loads: Sequence[float]) -> float | None:
    """The lowest load where the best heuristic meets its SLOs for under 90% of requests.

    None when no heuristic ran; the highest load when every heuristic kept up throughout.
    """
    heuristics = [s for s in sweep if s.policy in HEURISTICS]
    if not heuristics:
        return max(loads, default=None)
    for load in sorted(loads):
        best = max((s.attainment for s in heuristics if s.load == load), default=1.0)
        if best < ATTAINMENT_TARGET:
            return load
    return max(loads)


def versions() -> dict[str, str]:
    """Package versions and the git commit, so a report says what produced it."""
    out = {}
    for package in ("latency-oracle", "numpy", "river", "xgboost-cpu", "xgboost", "pydantic"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = sys.version.split()[0]
    try:
        dirty = _git("status", "--porcelain")
        out["git"] = _git("rev-parse", "--short", "HEAD") + (
            " (with uncommitted changes)" if dirty else ""
        )
    except (OSError, subprocess.SubprocessError):
        out["git"] = "unknown"
    return out


def _git(*args: str) -> str:
    folder = Path(__file__).resolve().parent
    done = subprocess.run(
        ["git", *args], capture_output=True, text=True, timeout=5, cwd=folder, check=True
    )
    return done.stdout.strip()
