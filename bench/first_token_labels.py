"""What first-token labels buy: coverage and loss under finish-time learning, with and
without the sidecar's first-token records, in the windows around each zoo stream's drift.

Under finish-time learning a request teaches its TTFT only when it ends, seconds after
its first token; right after a drift, the served p90 lags by that much. Each stream is fed
three times through the native API (``lo_feed.feed_native``): finish records only, then with a
first-token record for every request still running ``--first-token`` s after its first
token (the sidecar's ``sidecar_first_token_record_s``), carrying the share of prompt
tokens found cached so far instead of the request's own hits (the engine reports them
only at the end); a third time sending them only while that share is at most
``--max-hit-share`` (the sidecar's ``sidecar_first_token_max_hit_share``). ``--llmd``
also feeds llm-d's API both ways (TTFT entries at the first token, as its EPP sends them).

    .venv/bin/python bench/first_token_labels.py --samples 20000 --streams shared_prefix
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from accuracy import features_of, pinball, print_table, windowed
from lo_feed import Served, feed_llmd, feed_native
from zoo import WORLDS, Stream, generate

from latency_oracle.settings.sidecar import SidecarSettings


def rows_of(stream: Stream, runs: dict[str, Served], warmup: int) -> list[list[str]]:
    rows = []
    for target, window, sl, y in windowed(stream, warmup):
        cells = []
        for served in runs.values():
            q = getattr(served, target)[sl]
            cells.append(f"{np.mean(y <= q):.3f} / {pinball(y, q):.3g}")
        rows.append([stream.name, target.upper(), window, *cells])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8_000)
    parser.add_argument("--streams", default=",".join(WORLDS), help="comma-separated names")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--first-token", type=float, default=0.1, help="seconds (0: at it)")
    parser.add_argument(
        "--max-hit-share",
        type=float,
        default=SidecarSettings.model_fields["sidecar_first_token_max_hit_share"].default,
        help="first-token records only while the cached share of prompts is at most this",
    )
    parser.add_argument("--llmd", action="store_true", help="llm-d's API too")
    args = parser.parse_args()
    warmup = min(2_000, args.samples // 4)
    table, header = [], []
    for name in args.streams.split(","):
        started = time.perf_counter()
        stream = generate(WORLDS[name], args.samples, args.seed)
        features = features_of(stream)
        runs = {
            "native, finish only": feed_native(stream, features),
            f"native, first token +{args.first_token:g} s, any hit share": feed_native(
                stream, features, first_token_s=args.first_token
            ),
            f"native, first token +{args.first_token:g} s, hit share <= {args.max_hit_share:g}": (
                feed_native(
                    stream,
                    features,
                    first_token_s=args.first_token,
                    max_hit_share=args.max_hit_share,
                )
            ),
        }
        if args.llmd:
            llmd_features = features_of(stream, llmd=True)
            runs["llm-d API, finish only"] = feed_llmd(stream, llmd_features)
            runs["llm-d API, TTFT at first token"] = feed_llmd(
                stream, llmd_features, first_token_s=0.0
            )
        header = ["stream", "target", "window", *runs]
        table += rows_of(stream, runs, warmup)
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s -->", flush=True)
    print_table(
        f"p90 coverage / pinball loss (ms), finish-time learning, {args.samples} samples "
        f"per stream, seed {args.seed}, windows from sample {warmup}",
        header,
        table,
    )


if __name__ == "__main__":
    main()
