"""What ``latency-oracle demo`` counts and the live table it redraws from those counts.

Besides the per-pod predictions and measurements, the table says which decisions are
learned: while any accelerator's models are cold the router falls back to a load heuristic,
and a newcomer should see when (and that) learned predictions take over.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field

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
    started: float = field(default_factory=time.monotonic)  # the demo clock's zero
    startup_s: float = 0.0  # starting the processes, before the clock
    warming: bool = False  # in the warm-up, before the trace replay
    warm_up_sent: int = 0
    samples: dict[str, int] = field(default_factory=dict)  # own TTFT samples per accelerator
    serving: set[str] = field(default_factory=set)  # accelerators whose models both serve
    first_learned_s: float | None = None  # the clock at the first learned decision

    @property
    def decisions(self) -> int:
        return sum(p.placed for p in self.pods.values()) + self.shed

    @property
    def accelerators(self) -> set[str]:
        return {pod.accelerator for pod in self.pods.values()}

    def clock(self) -> float:
        return time.monotonic() - self.started

    def decided(self, cold: bool) -> None:
        """Count a placement; the first learned one is the moment the table reports."""
        self.cold += cold
        if not cold and self.first_learned_s is None:
            self.first_learned_s = self.clock()


def _models_line(stats: DemoStats, min_samples: int) -> str:
    if stats.first_learned_s is not None:
        warm = stats.decisions - stats.shed - stats.cold
        return (
            f"routing on learned predictions since {stats.first_learned_s:.1f} s "
            f"({warm} learned, {stats.cold} heuristic decisions)"
        )
    learned = "  ".join(
        f"{accelerator} {stats.samples.get(accelerator, 0)}/{min_samples}"
        for accelerator in sorted(stats.accelerators)
    )
    doing = (
        f"warm-up: each pod serves trace-shaped requests ({stats.warm_up_sent} so far) "
        "so its model learns; "
        if stats.warming
        else ""
    )
    return f"{doing}heuristic routing until every model has {min_samples} samples: {learned}"


def render_table(stats: DemoStats, elapsed: float, speed: float, min_samples: int) -> str:
    """The live table (plain text; the caller adds the ANSI redraw)."""
    lines = [
        f"Latency Oracle demo  {elapsed:6.1f} s  trace speed {speed:g}x  "
        f"sent {stats.sent}  finished {stats.finished}  shed {stats.shed}  "
        f"failed {stats.failed}  observations learned {stats.learned}",
        _models_line(stats, min_samples),
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


def redraw(table: str) -> None:
    sys.stdout.write("\x1b[H\x1b[2J" + table + "\n")
    sys.stdout.flush()
