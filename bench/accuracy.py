"""Accuracy on independent streams: LO's served p90s against the truth and a batch baseline.

For every zoo stream (``bench/zoo``, worlds written apart from ``sim/``), predict each
batch of 100 arrivals, learning each outcome once its request has finished (stream time,
200 requests/s), side by side in one process: the world's true p90 (the limit),
the llm-d-style batch baseline (``batch_baseline``), and Latency Oracle through its native
API and through llm-d's. Prints a markdown table of p90 pinball loss (ms) per stream,
target and window (before the drift, the first 2k samples after it, after that), with
LO's coverage and its champions' raw (pre-conformal) loss beside the served one.

    .venv/bin/python bench/accuracy.py            # 9 streams x 20k samples (~1 h on 1 core)
    .venv/bin/python bench/accuracy.py --quick    # 9 streams x 8k samples

The baseline's predictions depend only on the stream, so they are cached on disk
(``--no-cache`` recomputes them).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from batch_baseline import bucket_of, run_baseline
from lo_feed import Served, feed_llmd, feed_native
from zoo import WORLDS, Stream, generate

from latency_oracle.features.engineering import RequestColumns, build_features

CACHE = Path(tempfile.gettempdir()) / "latency-oracle-zoo-baseline"
TARGETS = ("ttft", "tpot")


def features_of(stream: Stream, llmd: bool = False) -> np.ndarray:
    """LO's feature rows of the stream (through llm-d's API, max_tokens is not sent)."""
    f = stream.fields
    columns = RequestColumns.of(
        stream.accelerator,
        stream.pod,
        input_tokens=f["input_tokens"],
        cached_tokens=f["prefix_cache_hit_tokens"],
        max_tokens=np.zeros(len(stream)) if llmd else f["max_tokens"],
        running_requests=f["running_requests"],
        waiting_requests=f["waiting_requests"],
        kv_cache_usage=f["kv_cache_usage"],
        prefill_tokens_in_flight=f["prefill_tokens_in_flight"],
        decode_tokens_in_flight=f["decode_tokens_in_flight"],
        role=np.zeros(len(stream)),
    )
    return build_features(columns)


def baseline(
    stream: Stream, features: np.ndarray, key: str, use_cache: bool, instant: bool
) -> tuple[np.ndarray, np.ndarray]:
    path = CACHE / f"{key}.npz"
    if use_cache and path.exists():
        cached = np.load(path)
        return cached["ttft"], cached["tpot"]
    f = stream.fields
    buckets = [
        bucket_of(w, kv, c / max(p, 1.0))
        for w, kv, c, p in zip(
            f["waiting_requests"],
            f["kv_cache_usage"],
            f["prefix_cache_hit_tokens"],
            f["input_tokens"],
            strict=True,
        )
    ]
    ttft, tpot = run_baseline(
        features,
        (stream.ttft_ms, stream.tpot_ms),
        buckets,
        stream.timestamp,
        stream.schedule(instant=instant),
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, ttft=ttft, tpot=tpot)
    return ttft, tpot


def pinball(y: np.ndarray, q: np.ndarray, alpha: float = 0.9) -> float:
    diff = y - q
    return float(np.mean(np.maximum(alpha * diff, (alpha - 1.0) * diff)))


def windows(stream: Stream, warmup: int) -> dict[str, slice]:
    at = stream.drift_at
    return {
        "before": slice(warmup, at),
        "first 2k after": slice(at, at + 2_000),
        "after": slice(at + 2_000, len(stream)),
    }


def windowed(stream: Stream, warmup: int) -> Iterator[tuple[str, str, slice, np.ndarray]]:
    """(target, window, its rows, the outcomes there), for every target and window."""
    for target in TARGETS:
        y = getattr(stream, f"{target}_ms")
        for window, sl in windows(stream, warmup).items():
            if sl.start < sl.stop:
                yield target, window, sl, y[sl]


def rows_of(
    stream: Stream,
    truth: dict[str, np.ndarray],
    base: dict[str, np.ndarray],
    native: Served,
    llmd: Served,
    warmup: int,
) -> list[list[str]]:
    rows = []
    for target, window, sl, yt in windowed(stream, warmup):
        base_loss = pinball(yt, base[target][sl])
        lo = pinball(yt, getattr(native, target)[sl])
        lo_llmd = pinball(yt, getattr(llmd, target)[sl])
        raw = pinball(yt, getattr(native, f"raw_{target}")[sl])
        limit = 1.1 if window == "before" else 0.8
        verdict = "ok" if max(lo, lo_llmd) <= limit * base_loss else "MISS"
        cov = float(np.mean(yt <= getattr(native, target)[sl]))
        cov_llmd = float(np.mean(yt <= getattr(llmd, target)[sl]))
        rows.append(
            [
                stream.name,
                target.upper(),
                window,
                f"{pinball(yt, truth[target][sl]):.3g}",
                f"{base_loss:.3g}",
                f"{lo:.3g} ({lo / base_loss:.2f}x)",
                f"{lo_llmd:.3g} ({lo_llmd / base_loss:.2f}x)",
                f"{raw:.3g}",
                f"{cov:.3f} / {cov_llmd:.3f}",
                verdict,
            ]
        )
    return rows


HEADER = [
    "stream",
    "target",
    "window",
    "truth",
    "batch baseline",
    "LO native",
    "LO llm-d API",
    "LO raw",
    "LO coverage (native / llm-d)",
    "<=1.1x / <=0.8x",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8k samples per stream")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--streams", default=",".join(WORLDS), help="comma-separated names")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--instant",
        action="store_true",
        help="learn each batch right after predicting it, not when its requests finish",
    )
    parser.add_argument(
        "--first-token",
        type=float,
        default=None,
        metavar="S",
        help="also learn TTFT at the first token of requests still running S s after it "
        "(the sidecar's first-token records; llm-d's TTFT entries at the first token)",
    )
    args = parser.parse_args()
    n = args.samples or (8_000 if args.quick else 20_000)
    warmup = min(2_000, n // 4)
    table = []
    for name in args.streams.split(","):
        world = WORLDS[name]
        started = time.perf_counter()
        stream = generate(world, n, args.seed)
        features = features_of(stream)
        key = hashlib.sha256(
            f"{world!r}|{n}|{args.seed}|{'instant|' * args.instant}v3".encode()
        ).hexdigest()[:16]
        base_ttft, base_tpot = baseline(stream, features, key, not args.no_cache, args.instant)
        native = feed_native(stream, features, args.instant, args.first_token)
        llmd_first = None if args.first_token is None else 0.0
        llmd = feed_llmd(stream, features_of(stream, llmd=True), args.instant, llmd_first)
        truth = {"ttft": stream.true_ttft_p90, "tpot": stream.true_tpot_p90}
        table += rows_of(
            stream, truth, {"ttft": base_ttft, "tpot": base_tpot}, native, llmd, warmup
        )
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s -->", flush=True)
    print_table(
        f"p90 pinball loss (ms), {n} samples per stream, seed {args.seed}, "
        f"windows from sample {warmup}",
        HEADER,
        table,
    )


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A markdown table under its title."""
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
