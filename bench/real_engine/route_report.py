"""The tables of a routing comparison: per rate, every policy pooled over its rounds,
and each service policy's verdict against the best heuristic or peer router.

``rescore`` rebuilds the summaries of a saved run from its rows, under its own SLOs or
others (``routing.py --score``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from real_engine import route_score
from real_engine.route_policies import HEURISTICS, PEERS, SERVICE

__all__ = ["report", "rescore"]


def report(summaries: dict[float, list[route_score.Summary]]) -> list[str]:
    """The table of each rate, with the verdicts under it."""
    lines = []
    for rate, runs in summaries.items():
        lines += ["", f"{rate:g} requests/s:", "", *_report(runs)]
    return lines


def _report(summaries: list[route_score.Summary]) -> list[str]:
    pooled = route_score.pool(summaries)
    lines = route_score.table(pooled)
    for service in SERVICE:
        v = route_score.verdict(pooled, service, [*HEURISTICS, *PEERS])
        if v is None:
            continue
        lines.append(
            f"{service}: p90 TTFT {v.ttft_p90_ratio:.2f}x {v.best}'s (bar: <= 0.85x), "
            f"attainment {v.attainment_service:.1%} vs {v.attainment_best:.1%}; "
            f"{v.best} meets {v.attainment_best:.1%} of SLOs "
            f"({'in' if v.best_attainment_in_band else 'outside'} the 80-95% band): "
            f"bar {'met' if v.met else 'NOT met'}"
        )
    return lines


def rescore(path: Path, slo: route_score.Slo | None) -> dict[float, list[route_score.Summary]]:
    """A saved run's summaries, from its rows (under another SLO when given)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        saved = json.load(handle)
    slo = slo or route_score.Slo(**saved["config"]["slo"])
    by_run: dict[tuple[float, str, int], list[dict[str, object]]] = {}
    for row in saved["rows"]:
        if row["policy"] != "warm-up":
            key = (float(row["rate"]), str(row["policy"]), int(row["round"]))
            by_run.setdefault(key, []).append(row)
    summaries: dict[float, list[route_score.Summary]] = {}
    for (rate, policy, _), rows in by_run.items():
        outcomes = [
            route_score.Outcome(r["ttft_ms"], r["tpot_ms"], bool(r["shed"]))  # type: ignore[arg-type]
            for r in rows
        ]
        duration = max(float(r["arrival_s"]) for r in rows)  # type: ignore[arg-type]
        summary = route_score.summarize(policy, outcomes, duration, slo)
        summaries.setdefault(rate, []).append(summary)
    return summaries
