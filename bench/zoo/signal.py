"""Which request fields carry latency signal in each world, measured rather than claimed.

For a world, target and window (before the drift, after it), a p90 XGBoost forest on the
raw request fields is fitted on the window's first 70% and scored (pinball loss) on the
rest, two ways per field:

- ``alone``: a forest on that field only, over the window's plain p90 (a constant). Under
  1 the field says something on its own.
- ``shuffled``: the full forest with that field shuffled in the scored rows, over the same
  forest unshuffled. Over 1 the forest relies on it, beyond what the other fields carry.

A field with ``alone`` near 1 and ``shuffled`` near 1 is noise for that target.

    cd bench && ../.venv/bin/python -m zoo.signal              # every world, 8k samples
    cd bench && ../.venv/bin/python -m zoo.signal --worlds batch_wait --samples 4000
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from zoo import WORLDS
from zoo.scoring import pinball
from zoo.world import Stream, World, generate

# The fields a request and its pod report at arrival (the llm-d door sends input_words
# for input_tokens: the same signal, so only one is scored).
FIELDS = (
    "input_tokens",
    "prefix_cache_hit_tokens",
    "max_tokens",
    "running_requests",
    "waiting_requests",
    "kv_cache_usage",
    "prefill_tokens_in_flight",
    "decode_tokens_in_flight",
)
SHORT = {
    "input_tokens": "input",
    "prefix_cache_hit_tokens": "prefix",
    "max_tokens": "max_tok",
    "running_requests": "running",
    "waiting_requests": "waiting",
    "kv_cache_usage": "kv",
    "prefill_tokens_in_flight": "prefill_if",
    "decode_tokens_in_flight": "decode_if",
    "accelerator": "accel",
}
PARAMS = {
    "objective": "reg:quantileerror",
    "quantile_alpha": 0.9,
    "max_depth": 5,
    "eta": 0.1,
    "tree_method": "hist",
    "nthread": 1,
    "verbosity": 0,
}
ROUNDS = 80
TRAIN_SHARE = 0.7


@dataclass(frozen=True)
class Importance:
    """Per field: its ``alone`` and ``shuffled`` loss ratios (see the module docstring)."""

    world: str
    target: str
    window: str
    alone: dict[str, float]
    shuffled: dict[str, float]


def columns(stream: Stream) -> tuple[tuple[str, ...], np.ndarray]:
    """The scored fields' names and (n, fields) matrix; the accelerator as a code when the
    world has several."""
    names = list(FIELDS)
    matrix = [stream.fields[f] for f in FIELDS]
    kinds = np.unique(stream.accelerator)
    if len(kinds) > 1:
        names.append("accelerator")
        matrix.append(np.searchsorted(kinds, stream.accelerator).astype(float))
    return tuple(names), np.column_stack(matrix)


def _fit(x: np.ndarray, y: np.ndarray) -> xgb.Booster:
    return xgb.train(PARAMS, xgb.DMatrix(x, y, nthread=1), num_boost_round=ROUNDS)


def _predict(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(x, nthread=1))


def importance(
    stream: Stream, target: str, window: slice, rng: np.random.Generator, label: str
) -> Importance:
    names, x = columns(stream)
    x, y = x[window], getattr(stream, f"{target}_ms")[window]
    cut = int(TRAIN_SHARE * len(y))
    y_fit, y_score = y[:cut], y[cut:]
    constant = pinball(y_score, np.full(len(y_score), np.quantile(y_fit, 0.9)))
    booster = _fit(x[:cut], y_fit)
    full = pinball(y_score, _predict(booster, x[cut:]))
    alone, shuffled = {}, {}
    for j, name in enumerate(names):
        single = _fit(x[:cut, j : j + 1], y_fit)
        alone[name] = pinball(y_score, _predict(single, x[cut:, j : j + 1])) / constant
        permuted = x[cut:].copy()
        permuted[:, j] = rng.permutation(permuted[:, j])
        shuffled[name] = pinball(y_score, _predict(booster, permuted)) / full
    return Importance(stream.name, target, label, alone, shuffled)


def measure(world: World, n: int = 8_000, seed: int = 1) -> list[Importance]:
    """Both targets, before the drift and after it."""
    stream = generate(world, n, seed)
    rng = np.random.default_rng(seed)
    halves = {"before": slice(0, stream.drift_at), "after": slice(stream.drift_at, n)}
    return [
        importance(stream, target, window, rng, label)
        for target in ("ttft", "tpot")
        for label, window in halves.items()
    ]


def table(results: list[Importance]) -> str:
    """Markdown: one row per world, target and window; each cell ``alone / shuffled``."""
    names = [*FIELDS, "accelerator"]
    lines = [
        "| world | target | window | " + " | ".join(SHORT[n] for n in names) + " |",
        "|" + "---|" * (3 + len(names)),
    ]
    for r in results:
        cells = [f"{r.alone[n]:.2f} / {r.shuffled[n]:.2f}" if n in r.alone else "-" for n in names]
        lines.append(f"| {r.world} | {r.target.upper()} | {r.window} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims() -> str:
    """Markdown: what each world says carries signal and what is noise (its ``World``
    fields), as docs/accuracy.md lists it."""
    lines = [
        "| world | TTFT law | in-flight fields | TTFT signal | TPOT signal | noise |",
        "|---|---|---|---|---|---|",
    ]
    for world in WORLDS.values():
        names = (
            ", ".join(SHORT[f] for f in fields) or "-"
            for fields in (world.ttft_signal, world.tpot_signal, world.noise)
        )
        lines.append(
            f"| {world.name} | {world.ttft_law} | {world.inflight} | " + " | ".join(names) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default=",".join(WORLDS), help="comma-separated names")
    parser.add_argument("--samples", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--claims", action="store_true", help="print the claimed table only")
    args = parser.parse_args()
    if args.claims:
        print(claims())
        return
    results = []
    for name in args.worlds.split(","):
        results += measure(WORLDS[name], args.samples, args.seed)
    print(table(results))


if __name__ == "__main__":
    main()
