"""The state-blind contender: the p90 of the last outcomes known, per accelerator.

It sees no request field at all, only outcomes, learned on the same schedule as every
other contender (``Stream.schedule``). Whatever beats it uses the fields; whatever loses to
it should not be serving.

    cd bench && ../.venv/bin/python -m zoo.rolling --worlds queue_counts,batch_wait
"""

from __future__ import annotations

import argparse
from collections import deque

import numpy as np

from zoo import WORLDS
from zoo.scoring import pinball, windows
from zoo.world import Stream, generate

WINDOW = 1_000  # outcomes kept per accelerator
TARGETS = ("ttft", "tpot")


def rolling_p90(
    stream: Stream, window: int = WINDOW, instant: bool = False
) -> dict[str, np.ndarray]:
    """Per target, each sample's predicted p90: the last ``window`` known outcomes' p90 on
    its accelerator (NaN before any is known)."""
    out = {target: np.full(len(stream), np.nan) for target in TARGETS}
    kept = {
        (target, a): deque(maxlen=window) for target in TARGETS for a in set(stream.accelerator)
    }
    for rows, known in stream.schedule(instant=instant):
        for target in TARGETS:
            y = getattr(stream, f"{target}_ms")
            for i in known.tolist():
                kept[target, stream.accelerator[i]].append(y[i])
            for accelerator in np.unique(stream.accelerator[rows]):
                recent = kept[target, accelerator]
                if recent:
                    mine = rows[stream.accelerator[rows] == accelerator]
                    out[target][mine] = np.quantile(np.fromiter(recent, float), 0.9)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default=",".join(WORLDS), help="comma-separated names")
    parser.add_argument("--samples", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--instant", action="store_true")
    args = parser.parse_args()
    warmup = min(2_000, args.samples // 4)
    print("| stream | target | window | truth | rolling p90 | coverage |")
    print("|---|---|---|---|---|---|")
    for name in args.worlds.split(","):
        stream = generate(WORLDS[name], args.samples, args.seed)
        served = rolling_p90(stream, instant=args.instant)
        for target in TARGETS:
            y, truth = getattr(stream, f"{target}_ms"), getattr(stream, f"true_{target}_p90")
            for label, sl in windows(stream, warmup).items():
                loss = pinball(y[sl], served[target][sl])
                coverage = float(np.mean(y[sl] <= served[target][sl]))
                print(
                    f"| {name} | {target.upper()} | {label} | {pinball(y[sl], truth[sl]):.3g} "
                    f"| {loss:.3g} | {coverage:.3f} |"
                )


if __name__ == "__main__":
    main()
