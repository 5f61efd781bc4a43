"""Scoring routing policies on real engines: one run's numbers, and runs pooled per policy.

The definitions are the cluster evaluation's (``sim/evaluation.py``): a request meets
its SLOs when its TTFT and its TPOT (when it has one) are within them; a shed request
(or one that failed) counts as a miss, and as never answered in the p90 TTFT "counting
sheds", so that shedding the slowest requests cannot flatter a policy's tail. Goodput is
requests meeting both SLOs per second of the run's arrivals. A request still waiting
for its first token when the run ends is cut: its TTFT is at least the time it waited,
which counts as a miss when it passed the SLO.

Repeated runs of a policy are pooled as the median of each number over the runs, with
its range: on a busy 2-core machine one run is one draw of the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Slo:
    ttft_ms: float
    tpot_ms: float


@dataclass(frozen=True)
class Outcome:
    """What the client saw of one request."""

    ttft_ms: float | None  # None: shed or failed, never answered
    tpot_ms: float | None  # None: fewer than two tokens, or never answered
    shed: bool = False

    def meets(self, slo: Slo) -> bool:
        if self.ttft_ms is None or self.ttft_ms > slo.ttft_ms:
            return False
        return self.tpot_ms is None or self.tpot_ms <= slo.tpot_ms


@dataclass(frozen=True)
class Summary:
    """One policy's run."""

    policy: str
    requests: int
    attainment: float  # met both SLOs / arrived
    goodput: float  # requests/s meeting both SLOs
    shed: float  # share shed
    failed: float  # share never answered for another reason (an error)
    ttft_ms: tuple[float, float, float]  # p50, p90, p99 of answered requests
    ttft_p90_all_ms: float  # p90 over every arrival, sheds and failures as never answered
    tpot_p90_ms: float


def summarize(policy: str, outcomes: Sequence[Outcome], duration_s: float, slo: Slo) -> Summary:
    n = len(outcomes)
    answered = np.array([o.ttft_ms for o in outcomes if o.ttft_ms is not None], dtype=float)
    tpot = np.array([o.tpot_ms for o in outcomes if o.tpot_ms is not None], dtype=float)
    met = sum(o.meets(slo) for o in outcomes)
    shed = sum(o.shed for o in outcomes)
    unanswered = n - len(answered)
    return Summary(
        policy=policy,
        requests=n,
        attainment=met / max(n, 1),
        goodput=met / max(duration_s, 1e-9),
        shed=shed / max(n, 1),
        failed=(unanswered - shed) / max(n, 1),
        ttft_ms=_quantiles(answered, (50, 90, 99)),
        ttft_p90_all_ms=_p90_counting_unanswered(answered, unanswered),
        tpot_p90_ms=_quantiles(tpot, (90,))[0],
    )


def _quantiles(values: np.ndarray, qs: Sequence[float]) -> tuple[float, ...]:
    if not len(values):
        return (math.nan,) * len(qs)
    return tuple(float(v) for v in np.percentile(values, qs))


def _p90_counting_unanswered(answered: np.ndarray, unanswered: int) -> float:
    everyone = np.concatenate([answered, np.full(unanswered, np.inf)])
    if not len(everyone):
        return math.nan
    with np.errstate(invalid="ignore"):  # interpolating between two infinities
        return float(np.nan_to_num(np.percentile(everyone, 90), nan=np.inf))


@dataclass(frozen=True)
class Pooled:
    """A policy over its repeated runs: each number's median and range."""

    policy: str
    runs: int
    numbers: dict[str, tuple[float, float, float]]  # name -> (median, min, max)

    def median(self, name: str) -> float:
        return self.numbers[name][0]


NUMBERS = {
    "attainment": lambda s: s.attainment,
    "goodput": lambda s: s.goodput,
    "shed": lambda s: s.shed,
    "ttft_p50": lambda s: s.ttft_ms[0],
    "ttft_p90": lambda s: s.ttft_ms[1],
    "ttft_p99": lambda s: s.ttft_ms[2],
    "ttft_p90_all": lambda s: s.ttft_p90_all_ms,
    "tpot_p90": lambda s: s.tpot_p90_ms,
}


def pool(summaries: Sequence[Summary]) -> list[Pooled]:
    """Runs grouped by policy (in first-seen order), each number's median and range."""
    by_policy: dict[str, list[Summary]] = {}
    for s in summaries:
        by_policy.setdefault(s.policy, []).append(s)
    pooled = []
    for policy, runs in by_policy.items():
        numbers = {}
        for name, get in NUMBERS.items():
            values = np.array([get(s) for s in runs], dtype=float)
            with np.errstate(invalid="ignore"):
                numbers[name] = (
                    float(np.median(values)),
                    float(np.min(values)),
                    float(np.max(values)),
                )
        pooled.append(Pooled(policy, len(runs), numbers))
    return pooled


@dataclass(frozen=True)
class Verdict:
    """The issue's bar: the service's p90 TTFT (counting sheds) at least ``margin`` below
    the best contender's, with attainment at least as high."""

    service: str
    best: str
    ttft_p90_ratio: float  # service / best (lower is better)
    attainment_service: float
    attainment_best: float
    best_attainment_in_band: bool  # the load is where the best meets 80-95% of SLOs
    met: bool


def verdict(
    pooled: Sequence[Pooled],
    service: str,
    contenders: Sequence[str],
    margin: float = 0.15,
    band: tuple[float, float] = (0.80, 0.95),
) -> Verdict | None:
    """The best contender is the one with the lowest median p90 TTFT counting sheds."""
    named = {p.policy: p for p in pooled}
    rivals = [named[c] for c in contenders if c in named]
    if service not in named or not rivals:
        return None
    best = min(rivals, key=lambda p: p.median("ttft_p90_all"))
    ours = named[service]
    ratio = ours.median("ttft_p90_all") / best.median("ttft_p90_all")
    a_ours, a_best = ours.median("attainment"), best.median("attainment")
    return Verdict(
        service=service,
        best=best.policy,
        ttft_p90_ratio=ratio,
        attainment_service=a_ours,
        attainment_best=a_best,
        best_attainment_in_band=band[0] <= a_best <= band[1],
        met=ratio <= 1 - margin and a_ours >= a_best,
    )


def _cell(values: tuple[float, float, float], fmt: str) -> str:
    median, low, high = values
    if low == high:
        return format(median, fmt)
    return f"{median:{fmt}} ({low:{fmt}}-{high:{fmt}})"


def table(pooled: Sequence[Pooled]) -> list[str]:
    """A Markdown table: each number's median over the runs and, in brackets, its range."""
    head = (
        "| policy | runs | attainment | goodput (req/s) | shed | TTFT p50 (ms) | "
        "TTFT p90 (ms) | TTFT p90 counting sheds (ms) | TTFT p99 (ms) | TPOT p90 (ms) |"
    )
    lines = [head, "|" + "---|" * 10]
    for p in pooled:
        n = p.numbers
        cells = [
            p.policy,
            str(p.runs),
            _cell(tuple(100 * v for v in n["attainment"]), ".1f") + "%",  # type: ignore[arg-type]
            _cell(n["goodput"], ".2f"),
            _cell(tuple(100 * v for v in n["shed"]), ".1f") + "%",  # type: ignore[arg-type]
            _cell(n["ttft_p50"], ".0f"),
            _cell(n["ttft_p90"], ".0f"),
            _cell(n["ttft_p90_all"], ".0f"),
            _cell(n["ttft_p99"], ".0f"),
            _cell(n["tpot_p90"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
