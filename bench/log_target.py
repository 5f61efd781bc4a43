"""The log target against the ms target, for the batch method: same trees, same data.

Quantiles commute with the log, so both targets estimate the same p90; what differs is
which samples the trees spend their splits and gradients on (ms: the slowest requests;
log: every request alike). Runs the llm-d-style batch baseline (llm-d's features and
regularisation) both ways on zoo worlds and the real-engine recordings, learning outcomes
as requests finish, and prints p90 pinball loss and coverage per window.

    .venv/bin/python bench/log_target.py --samples 6000 --streams queue_big_model,real
"""

from __future__ import annotations

import argparse

from accuracy import buckets_of, coverage, features_of, pinball, sources, windows
from batch_baseline import LLMD_PARAMS, run_baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6_000)
    parser.add_argument("--streams", default="zoo,real")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("| source | target | window | ms target (cov) | log target (cov) | log / ms |")
    print("|---|---|---|---|---|---|")
    for stream, _ in sources(args.streams, args.samples, args.seed):
        buckets = buckets_of(stream)
        features = features_of(stream)
        served = {
            log: run_baseline(
                features,
                (stream.ttft_ms, stream.tpot_ms),
                buckets,
                stream.timestamp,
                stream.schedule(),
                params=LLMD_PARAMS,
                log_target=log,
            )
            for log in (False, True)
        }
        warmup = min(2_000, len(stream) // 4, stream.drift_at // 2)
        for index, target in enumerate(("ttft", "tpot")):
            y = getattr(stream, f"{target}_ms")
            for window, sl in windows(stream, warmup).items():
                if sl.start >= min(sl.stop, len(stream)):
                    continue
                ms, lg = served[False][index][sl], served[True][index][sl]
                a, b = pinball(y[sl], ms), pinball(y[sl], lg)
                print(
                    f"| {stream.name} | {target.upper()} | {window} | {a:.3g} "
                    f"({coverage(y[sl], ms):.2f}) | {b:.3g} ({coverage(y[sl], lg):.2f}) "
                    f"| {b / a:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
