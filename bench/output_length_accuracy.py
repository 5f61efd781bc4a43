"""Accuracy of the learned output-length distribution against a per-model rolling p90.

Run: ``python bench/output_length_accuracy.py``. Each workload's requests, as their
clients send them (prompt and cap, ``sim/evaluation/workloads.py``), are predicted before they run
and learned once they finish, in arrival order, ``LAG`` requests late in batches of
``BATCH`` (a predictor learns what sidecars reported, a little after the fact). Both
contenders see the same finished requests: the rolling p90 of the served model's last
``window`` outputs, the best of several windows taken as the baseline, and Latency
Oracle's distribution by prompt band and cap band (``models/output_length.py``).
Reported per workload: how much its requests tell (the share cut at their cap; the
correlation of log prompt and log true output length), coverage of the p90 (target
0.87-0.93), pinball loss at 0.9 in tokens, and its ratio to the baseline's (target
<= 0.7). The first ``WARM`` requests are left out of the scores (both start from
nothing).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from latency_oracle.features.schema import Observation
from latency_oracle.models.output_length import OutputLengths
from latency_oracle.settings import Settings
from latency_oracle.sim.evaluation.load_sweep import Workload
from latency_oracle.sim.evaluation.suite import suite_workloads
from latency_oracle.sim.evaluation.workloads import Arrival, SyntheticSpec, synthetic

LAG = 50
BATCH = 25
WARM = 500
WINDOWS = (200, 1_000, 5_000)
TARGET_COVERAGE = (0.87, 0.93)
TARGET_RATIO = 0.7


@dataclass(frozen=True, slots=True)
class Score:
    coverage: float
    pinball: float


def served_lengths(arrivals: list[Arrival]) -> np.ndarray:
    """Output tokens as the engine serves them: the answer, cut at the cap."""
    return np.array([min(a.request.output_tokens, a.request.max_tokens or 10**9) for a in arrivals])


def _score(actual: np.ndarray, predicted: np.ndarray) -> Score:
    diff = actual - predicted
    pinball = np.maximum(0.9 * diff, -0.1 * diff)
    return Score(float(np.mean(actual <= predicted)), float(np.mean(pinball)))


def latency_oracle(arrivals: list[Arrival], served: np.ndarray) -> np.ndarray:
    """p90 predictions of the learned distribution, made before each request ran."""
    model = OutputLengths()
    prompt = np.array([a.request.prompt_tokens for a in arrivals])
    cap = np.array([a.request.max_tokens or 0 for a in arrivals])
    predicted = np.empty(len(arrivals))
    learned = 0
    for start in range(0, len(arrivals), BATCH):
        stop = min(start + BATCH, len(arrivals))
        rows = slice(start, stop)
        forecast = model.predict(np.full(stop - start, "", dtype=object), prompt[rows], cap[rows])
        predicted[rows] = forecast.p90
        known = max(stop - LAG, 0)
        model.learn(
            [
                Observation(
                    accelerator="H100",
                    input_tokens=int(prompt[i]),
                    max_tokens=int(cap[i]),
                    output_tokens=int(served[i]),
                    ttft_ms=1.0,
                )
                for i in range(learned, known)
            ]
        )
        learned = known
    return predicted


def rolling_p90(served: np.ndarray, window: int) -> np.ndarray:
    """The p90 of the last ``window`` outputs known when each request arrived."""
    recent: deque[int] = deque(maxlen=window)
    predicted = np.empty(len(served))
    learned = 0
    for start in range(0, len(served), BATCH):
        stop = min(start + BATCH, len(served))
        predicted[start:stop] = np.percentile(recent, 90) if recent else 1.0
        known = max(stop - LAG, 0)
        recent.extend(served[learned:known].tolist())
        learned = known
    return predicted


def compare(arrivals: list[Arrival]) -> tuple[Score, Score, int]:
    """Latency Oracle's score, the best rolling window's, and that window."""
    served = served_lengths(arrivals)
    scored = slice(WARM, None)
    mine = _score(served[scored], latency_oracle(arrivals, served)[scored])
    baselines = {w: _score(served[scored], rolling_p90(served, w)[scored]) for w in WINDOWS}
    window = min(baselines, key=lambda w: baselines[w].pinball)
    return mine, baselines[window], window


def workloads(settings: Settings) -> dict[str, list[Arrival]]:
    """The suite's four mixes at 1x plus chat sessions, each with the documented cap mix."""
    out = {w.name: w.arrivals(1.0, settings) for w in suite_workloads(settings)}
    chat = Workload("chat", duration_s=1_800.0, rate=4.0)
    out["chat"] = chat.arrivals(1.0, settings)
    out["azure-poisson"] = synthetic(SyntheticSpec("poisson", duration_s=3_000.0), 1.0, settings)
    return out


def main() -> None:
    settings = Settings(mlflow_enabled=False)
    print(
        f"{'workload':14s} {'requests':>8s} {'cut at cap':>10s} {'corr':>6s} {'coverage':>8s} "
        f"{'pinball':>8s} {'rolling':>8s} {'window':>6s} {'ratio':>6s}"
    )
    for name, arrivals in workloads(settings).items():
        served = served_lengths(arrivals)
        caps = np.array([a.request.max_tokens or 0 for a in arrivals])
        cut = float(np.mean((caps > 0) & (served >= caps)))
        prompt = np.log([a.request.prompt_tokens for a in arrivals])
        corr = np.corrcoef(prompt, np.log([a.request.output_tokens for a in arrivals]))[0, 1]
        mine, base, window = compare(arrivals)
        ratio = mine.pinball / base.pinball
        low, high = TARGET_COVERAGE
        verdict = "met" if low <= mine.coverage <= high and ratio <= TARGET_RATIO else "NOT met"
        print(
            f"{name:14s} {len(arrivals):8d} {cut:10.1%} {corr:6.2f} {mine.coverage:8.3f} "
            f"{mine.pinball:8.1f} {base.pinball:8.1f} {window:6d} {ratio:6.2f}  {verdict}"
        )
    print(f"targets: coverage {low}-{high}, pinball ratio <= {TARGET_RATIO}")


if __name__ == "__main__":
    main()
