"""Accuracy on independent streams: LO's served p90s against the truth and two baselines.

Every zoo world (``bench/zoo``'s ``WORLDS``, worlds written apart from ``sim/``; new ones
are picked up as the zoo registers them) and every real-engine recording
(``bench/data/real_engine``, ``real_engine.recording``) is replayed: predict each batch of
arrivals, learning each outcome once its request has finished (``finish``) or right
after its batch is predicted (``instant``), side by side in one process: the world's
true p90 (the limit; recordings have none), the llm-d-style batch baseline
(``batch_baseline``, with llm-d's regularisation), a state-blind rolling p90 (the last
200 outcomes), and Latency Oracle through its native API and through llm-d's. Prints a
markdown table of p90 pinball loss (ms) per source, protocol, target and window (before
the drift, the first 2k samples after it, after that), with LO's ratios to the batch
baseline and coverage, and whether issue 29's bars hold (before: <= 1.0x the batch
baseline; after: <= 0.8x; coverage 0.87-0.93, in the first 2k after a drift under
finish-time learning >= 0.8).

    .venv/bin/python bench/accuracy.py            # every source x 20k samples, both protocols
    .venv/bin/python bench/accuracy.py --quick    # 8k samples per zoo world
    .venv/bin/python bench/accuracy.py --streams real --protocols finish

The baseline's predictions depend only on the stream, so they are cached on disk
(``--no-cache`` recomputes them).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
from batch_baseline import LLMD_PARAMS, bucket_of, run_baseline
from lo_feed import Served, feed_llmd, feed_native
from real_engine import recording
from zoo import WORLDS, generate
from zoo.scoring import windows

from latency_oracle.features.engineering import RequestColumns, build_features

CACHE = Path(tempfile.gettempdir()) / "latency-oracle-zoo-baseline"
TARGETS = ("ttft", "tpot")
PROTOCOLS = ("finish", "instant")
ROLLING = 200  # the state-blind baseline's window: the p90 of the last 200 outcomes


class Source(Protocol):
    """What a zoo ``Stream`` and a real-engine ``Recording`` both offer the replay."""

    name: str
    accelerator: np.ndarray
    pod: np.ndarray
    fields: dict[str, np.ndarray]
    timestamp: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray

    @property
    def drift_at(self) -> int: ...

    @property
    def finished(self) -> np.ndarray: ...

    def __len__(self) -> int: ...

    def schedule(self, instant: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


def features_of(stream: Source, llmd: bool = False) -> np.ndarray:
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
    stream: Source, features: np.ndarray, key: str, use_cache: bool, instant: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The llm-d-style batch baseline's p90s, with llm-d's regularisation."""
    path = CACHE / f"{key}.npz"
    if use_cache and path.exists():
        cached = np.load(path)
        return cached["ttft"], cached["tpot"]
    ttft, tpot = run_baseline(
        features,
        (stream.ttft_ms, stream.tpot_ms),
        buckets_of(stream),
        stream.timestamp,
        stream.schedule(instant=instant),
        params=LLMD_PARAMS,
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, ttft=ttft, tpot=tpot)
    return ttft, tpot


def buckets_of(stream: Source) -> list[tuple[int, int, int]]:
    """Each request's bucket in the batch baseline's reservoirs."""
    f = stream.fields
    return [
        bucket_of(w, kv, c / max(p, 1.0))
        for w, kv, c, p in zip(
            f["waiting_requests"],
            f["kv_cache_usage"],
            f["prefix_cache_hit_tokens"],
            f["input_tokens"],
            strict=True,
        )
    ]


def rolling_p90(stream: Source, instant: bool) -> dict[str, np.ndarray]:
    """The state-blind baseline: the p90 of the last ``ROLLING`` outcomes known."""
    out = {}
    for target in TARGETS:
        y = getattr(stream, f"{target}_ms")
        served = np.full(len(stream), np.nan)
        recent: deque[float] = deque(maxlen=ROLLING)
        for rows, known in stream.schedule(instant=instant):
            recent.extend(v for v in y[known].tolist() if np.isfinite(v))
            if recent:
                served[rows] = np.quantile(np.fromiter(recent, float), 0.9)
        out[target] = served
    return out


def windowed(stream: Source, warmup: int) -> Iterator[tuple[str, str, slice, np.ndarray]]:
    """(target, window, its rows, the outcomes there), for every target and window."""
    for target in TARGETS:
        y = getattr(stream, f"{target}_ms")
        for window, sl in windows(stream, warmup).items():
            if sl.start < min(sl.stop, len(stream)):
                yield target, window, sl, y[sl]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A markdown table under its title."""
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def pinball(y: np.ndarray, q: np.ndarray, alpha: float = 0.9) -> float:
    """Mean p90 pinball loss over the rows with both an outcome and a prediction."""
    ok = np.isfinite(y) & np.isfinite(q)
    diff = y[ok] - q[ok]
    return float(np.mean(np.maximum(alpha * diff, (alpha - 1.0) * diff))) if ok.any() else np.nan


def coverage(y: np.ndarray, q: np.ndarray) -> float:
    ok = np.isfinite(y) & np.isfinite(q)
    return float(np.mean(y[ok] <= q[ok])) if ok.any() else np.nan


def verdict(window: str, protocol: str, ratios: list[float], covers: list[float]) -> str:
    """Issue 29's bars for one window: loss vs the batch baseline, and coverage."""
    limit = 1.0 if window == "before" else 0.8
    misses = []
    if max(ratios) > limit:
        misses.append(f"loss>{limit}x")
    if window == "first 2k after":
        if protocol == "finish" and min(covers) < 0.8:
            misses.append("cov<0.8")
    elif min(covers) < 0.87 or max(covers) > 0.93:
        misses.append("cov")
    return "ok" if not misses else "MISS " + ",".join(misses)


def rows_of(
    stream: Source,
    protocol: str,
    truth: dict[str, np.ndarray] | None,
    base: dict[str, np.ndarray],
    rolling: dict[str, np.ndarray],
    native: Served,
    llmd: Served,
    warmup: int,
) -> list[list[str]]:
    rows = []
    for target in TARGETS:
        y = getattr(stream, f"{target}_ms")
        for window, sl in windows(stream, warmup).items():
            if sl.start >= min(sl.stop, len(stream)):
                continue
            yt = y[sl]
            base_loss = pinball(yt, base[target][sl])
            roll = pinball(yt, rolling[target][sl])
            lo = pinball(yt, getattr(native, target)[sl])
            lo_llmd = pinball(yt, getattr(llmd, target)[sl])
            covers = [coverage(yt, getattr(native, target)[sl])]
            covers.append(coverage(yt, getattr(llmd, target)[sl]))
            limit_truth = "-" if truth is None else f"{pinball(yt, truth[target][sl]):.3g}"
            rows.append(
                [
                    stream.name,
                    protocol,
                    target.upper(),
                    window,
                    limit_truth,
                    f"{base_loss:.3g} ({coverage(yt, base[target][sl]):.2f})",
                    f"{roll:.3g} ({coverage(yt, rolling[target][sl]):.2f})",
                    f"{lo:.3g} ({lo / base_loss:.2f}x, {lo / roll:.2f}x)",
                    f"{lo_llmd:.3g} ({lo_llmd / base_loss:.2f}x, {lo_llmd / roll:.2f}x)",
                    f"{pinball(yt, getattr(native, f'raw_{target}')[sl]):.3g}",
                    f"{covers[0]:.3f} / {covers[1]:.3f}",
                    verdict(window, protocol, [lo / base_loss, lo_llmd / base_loss], covers),
                ]
            )
    return rows


HEADER = [
    "source",
    "protocol",
    "target",
    "window",
    "truth",
    "batch baseline (cov)",
    "rolling p90 (cov)",
    "LO native (vs batch, vs rolling)",
    "LO llm-d API (vs batch, vs rolling)",
    "LO raw",
    "LO coverage (native / llm-d)",
    "issue 29 bars",
]


def sources(names: str, n: int, seed: int) -> Iterator[tuple[Source, str]]:
    """The zoo worlds and recordings named (``zoo``: every world, ``real``: every
    recording, else names), each with the key its cached baseline goes under."""
    recordings = {path.name.removesuffix(".csv.gz"): path for path in recording.recordings()}
    for name in names.split(","):
        if name == "zoo":
            yield from sources(",".join(WORLDS), n, seed)
        elif name == "real":
            yield from sources(",".join(recordings), n, seed)
        elif name in recordings:
            data = recordings[name].read_bytes()
            yield recording.load(recordings[name]), hashlib.sha256(data).hexdigest()[:16]
        else:
            world = WORLDS[name]
            yield generate(world, n, seed), f"{world!r}|{n}|{seed}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8k samples per zoo world")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument(
        "--streams",
        default="zoo,real",
        help="comma-separated: zoo world names, recording names, 'zoo' (all worlds), "
        "'real' (all recordings)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--protocols",
        default=",".join(PROTOCOLS),
        help="finish: learn each outcome once its request finished; instant: right after "
        "its batch is predicted (issue 19's protocol)",
    )
    args = parser.parse_args()
    n = args.samples or (8_000 if args.quick else 20_000)
    table = []
    for stream, source_key in sources(args.streams, n, args.seed):
        warmup = min(2_000, len(stream) // 4, stream.drift_at // 2)
        features = features_of(stream)
        llmd_features = features_of(stream, llmd=True)
        is_world = hasattr(stream, "true_ttft_p90")
        truth = None
        if is_world:
            truth = {"ttft": stream.true_ttft_p90, "tpot": stream.true_tpot_p90}
        for protocol in args.protocols.split(","):
            instant = protocol == "instant"
            started = time.perf_counter()
            key = hashlib.sha256(f"{source_key}|{protocol}|llmd-params|v4".encode()).hexdigest()
            base_ttft, base_tpot = baseline(stream, features, key[:16], not args.no_cache, instant)
            native = feed_native(stream, features, instant)
            llmd = feed_llmd(stream, llmd_features, instant)
            table += rows_of(
                stream,
                protocol,
                truth,
                {"ttft": base_ttft, "tpot": base_tpot},
                rolling_p90(stream, instant),
                native,
                llmd,
                warmup,
            )
            elapsed = time.perf_counter() - started
            print(f"<!-- {stream.name} {protocol}: {elapsed:.0f} s -->", flush=True)
    print(f"\np90 pinball loss (ms), {n} samples per zoo world, seed {args.seed}\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
