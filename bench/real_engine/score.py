"""Judging a real-engine run: coverage and p90 pinball per window, against two baselines.

- **rolling p90**: state-blind, the 90th percentile of the last 200 outcomes known (finished)
  when the request arrived, per target.
- **batch baseline**: llm-d's way (``bench/batch_baseline.py``: bucketed samples, XGBoost
  quantile forest refitted every second of run time, llm-d's regularisation), on llm-d's
  own features as its endpoint picker saw them (``epp_*``, the client's token count), built
  as llm-d's training server builds them. It learns an outcome once it has finished.

Both are replayed after the run from the recording: their predictions depend only on what
was known at each arrival, and training them live would have taken CPU from the engines.
"""

from __future__ import annotations

import numpy as np
from batch_baseline import LLMD_PARAMS, run_baseline

from latency_oracle.models.batch_forest import QUEUE_EDGES
from real_engine.recording import Recording

ROLLING = 200


def llmd_bucket(waiting: float, kv: float, prefix: float) -> tuple[int, int, int]:
    """llm-d's training-data bucket: queue (5), KV cache in 5% steps (20), prefix (4)."""
    return (
        int(np.searchsorted(QUEUE_EDGES, waiting, side="right")),
        min(int(max(kv, 0.0) * 20), 19),
        min(int(max(prefix, 0.0) * 4), 3),
    )


def llmd_features(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT rows, TPOT rows) as llm-d's training server builds them from the EPP's fields."""
    kv = c["epp_kv_cache_percentage"]
    tokens = c["client_input_tokens"]
    waiting = c["epp_num_request_waiting"]
    running = c["epp_num_request_running"]
    prefix = c["epp_prefix_cache_score"]
    queued = (waiting > 0).astype(float)
    in_flight = (c["epp_prefill_tokens_in_flight"], c["epp_decode_tokens_in_flight"])
    prefix_bucket = np.minimum((prefix * 4).astype(int), 3)
    ttft = np.column_stack(
        [
            kv,
            tokens,
            waiting,
            running,
            prefix,
            (1 - prefix) * tokens,
            prefix_bucket,
            queued,
            *in_flight,
        ]
    )
    # At scheduling the EPP asks with one generated token; it trains TPOT with the count
    # it sends at the end (0: not sent), so the column is constant here.
    generated = np.zeros(len(kv))
    tpot = np.column_stack([kv, tokens, waiting, running, generated, queued, *in_flight])
    return ttft, tpot


def rolling_p90(rec: Recording, y: np.ndarray) -> np.ndarray:
    """Per request, the p90 of the last ``ROLLING`` finite outcomes finished by its arrival."""
    order = np.argsort(rec.finished, kind="stable")
    done_at = rec.finished[order]
    outcomes = y[order]
    out = np.full(len(rec), np.nan)
    for i, t in enumerate(rec.timestamp):
        known = int(np.searchsorted(done_at, t, side="right"))
        recent = outcomes[:known]
        recent = recent[np.isfinite(recent)][-ROLLING:]
        if len(recent):
            out[i] = np.quantile(recent, 0.9)
    return out


def batch_baseline(rec: Recording) -> tuple[np.ndarray, np.ndarray]:
    c = rec.columns
    buckets = [
        llmd_bucket(w, kv, p)
        for w, kv, p in zip(
            c["epp_num_request_waiting"],
            c["epp_kv_cache_percentage"],
            c["epp_prefix_cache_score"],
            strict=True,
        )
    ]
    return run_baseline(
        llmd_features(c),
        (rec.ttft_ms, rec.tpot_ms),
        buckets,
        rec.timestamp,
        rec.schedule(batch=1),
        params=LLMD_PARAMS,
    )


def pinball(y: np.ndarray, q: np.ndarray, alpha: float = 0.9) -> float:
    diff = y - q
    return float(np.mean(np.maximum(alpha * diff, (alpha - 1.0) * diff)))


def windows(rec: Recording, warmup: int, first_after: int) -> dict[str, np.ndarray]:
    """Row masks: before the drift (after a warm-up), the first requests after it, the rest."""
    index = np.arange(len(rec))
    at = rec.drift_at
    return {
        "before": (index >= warmup) & (index < at),
        f"first {first_after} after": (index >= at) & (index < at + first_after),
        "after": index >= at + first_after,
    }


def table(rec: Recording, warmup: int = 50, first_after: int = 150) -> list[str]:
    """Markdown rows: per target and window, coverage and pinball of each predictor."""
    base_ttft, base_tpot = batch_baseline(rec)
    c = rec.columns
    served = {
        "ttft": {
            "route": c["route_ttft_p90"],
            "llm-d API": c["llmd_ttft_p90"],
            "rolling p90": rolling_p90(rec, rec.ttft_ms),
            "batch baseline": base_ttft,
        },
        "tpot": {
            "route": c["route_tpot_p90"],
            "llm-d API": c["llmd_tpot_p90"],
            "rolling p90": rolling_p90(rec, rec.tpot_ms),
            "batch baseline": base_tpot,
        },
    }
    lines = [
        "| target | window | n | "
        + " | ".join(f"{name} cov / loss" for name in served["ttft"])
        + " | route / rolling | route / batch | llm-d API / rolling | llm-d API / batch |",
        "|---|---|---|" + "---|" * (len(served["ttft"]) + 4),
    ]
    for target, y in (("ttft", rec.ttft_ms), ("tpot", rec.tpot_ms)):
        for window, mask in windows(rec, warmup, first_after).items():
            cells, losses = [], {}
            for name, p in served[target].items():
                ok = mask & np.isfinite(y) & np.isfinite(p)
                if not ok.any():
                    cells.append("-")
                    continue
                losses[name] = pinball(y[ok], p[ok])
                cells.append(f"{np.mean(y[ok] <= p[ok]):.3f} / {losses[name]:.3g}")
            n = int((mask & np.isfinite(y)).sum())
            ratios = [
                f"{losses[a] / losses[b]:.3g}x" if a in losses and losses.get(b) else "-"
                for a in ("route", "llm-d API")
                for b in ("rolling p90", "batch baseline")
            ]
            lines.append(
                f"| {target.upper()} | {window} | {n} | " + " | ".join(cells + ratios) + " |"
            )
    return lines
