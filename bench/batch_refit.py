"""What one background refit of the batch-refit trees costs, and what they hold per key.

Fills a ``BatchQuantileForest`` with the product's default settings from a zoo stream
(every queue and KV-cache band its load reaches), refitting in line so each refit is
timed alone, then prints the refit's time and the samples it fitted on, the rows held
and their bytes, the snapshot's size, and the worst case the bucket cap allows.

    .venv/bin/python bench/batch_refit.py [--samples 30000] [--stream queue_big_model]
"""

from __future__ import annotations

import argparse

import numpy as np
from accuracy import features_of
from zoo import WORLDS, generate

from latency_oracle.features.engineering import N_FEATURES, monotone_signs
from latency_oracle.models.batch_forest import KV_BANDS, QUEUE_BANDS, BatchQuantileForest
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.persistence.allowed_types import SNAPSHOT_TYPES
from latency_oracle.models.prior import prefill_backlog_log_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30_000)
    parser.add_argument("--stream", default=next(iter(WORLDS)))
    args = parser.parse_args()
    config = ModelConfig()
    stream = generate(WORLDS[args.stream], args.samples, seed=1)
    features, y = features_of(stream), np.log(stream.ttft_ms)
    learner = BatchQuantileForest(
        config.quantiles,
        N_FEATURES,
        per_bucket=config.batch_per_bucket,
        refit_every=config.batch_refit_every,
        monotone=monotone_signs("ttft"),
        offset=prefill_backlog_log_ms,
        background=False,
    )
    refits = []
    for start in range(0, len(y), 256):
        before = learner.last_refit_s
        learner.learn_many(features[start : start + 256], y[start : start + 256])
        if learner.last_refit_s != before:
            refits.append((learner.last_refit_samples, learner.last_refit_s))
    rows = learner.stored
    worst_rows = QUEUE_BANDS * KV_BANDS * config.batch_per_bucket
    row_bytes = (N_FEATURES + 2) * 8
    last_n, last_s = refits[-1]
    print(f"stream {args.stream}, {len(y):,} samples, {len(refits)} refits")
    print(f"last refit: {last_s * 1e3:.0f} ms on {last_n:,} samples")
    print(f"slowest refit: {max(s for _, s in refits) * 1e3:.0f} ms")
    print(f"held: {rows:,} rows, {rows * row_bytes / 1e6:.2f} MB")
    print(f"snapshot: {len(learner.snapshot(SNAPSHOT_TYPES)) / 1e6:.2f} MB")
    print(f"bound: {worst_rows:,} rows, {worst_rows * row_bytes / 1e6:.2f} MB per key and target")


if __name__ == "__main__":
    main()
