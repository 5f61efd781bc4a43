"""How long the tiny model's answers are: the distribution its shaped EOS row produces.

    .venv/bin/python bench/real_engine/lengths.py [--engine-url URL] [--prompts 40 --repeats 4]

Sends each of ``--prompts`` prompts (20-2,000 tokens of the load generator's corpus)
``--repeats`` times, uncapped (``max_tokens`` 4096, temperature 1), and prints the
quantiles of output length, the share ending on EOS, and how much of the spread in log
length lies between prompts rather than between repeats of one prompt (the part a
prompt determines; 0 would mean lengths ignore the prompt).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
from pathlib import Path

import httpx
import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from real_engine.engine import EngineSpec
from real_engine.fleet import Fleet
from real_engine.install import ensure_model, ensure_venv, home
from real_engine.prompts import Corpus


def measure(url: str, model: str, prompts: list[list[int]], repeats: int) -> np.ndarray:
    """(prompts, repeats) output lengths; negative where the answer hit the cap."""

    def one(ids: list[int]) -> int:
        body = {"model": model, "prompt": ids, "max_tokens": 4096, "temperature": 1.0}
        answer = httpx.post(f"{url}/v1/completions", json=body, timeout=600).json()
        tokens = int(answer["usage"]["completion_tokens"])
        return tokens if answer["choices"][0]["finish_reason"] == "stop" else -tokens

    jobs = [ids for ids in prompts for _ in range(repeats)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        lengths = list(pool.map(one, jobs))
    return np.array(lengths).reshape(len(prompts), repeats)


def report(lengths: np.ndarray) -> list[str]:
    n = np.abs(lengths).astype(float)
    logs = np.log(n)
    within = float(np.mean(np.var(logs, axis=1, ddof=1)))
    total = float(np.var(logs, ddof=1))
    q = np.quantile(n, [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
    return [
        f"answers: {n.size} ({lengths.shape[0]} prompts x {lengths.shape[1]})",
        "output tokens p10/p25/p50/p75/p90/p99: " + " / ".join(f"{v:.0f}" for v in q),
        f"mean {n.mean():.0f}, ended on EOS {np.mean(lengths > 0):.3f} (cap 4096)",
        f"share of log-length variance between prompts: {max(1 - within / total, 0):.2f}",
        "share under caps 256/512/1024: "
        + " / ".join(f"{np.mean(n < cap):.2f}" for cap in (256, 512, 1024)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-url")
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    corpus = Corpus.load(ensure_venv(), ensure_model(args.preset), home() / "corpus")
    rng = np.random.default_rng(args.seed)
    prompts = []
    for _ in range(args.prompts):
        length = int(np.exp(rng.uniform(np.log(20), np.log(2000))))
        start = int(rng.integers(0, len(corpus.ids) - length))
        prompts.append(corpus.ids[start : start + length].tolist())
    if args.engine_url:
        lengths = measure(args.engine_url, args.model, prompts, args.repeats)
    else:
        spec = EngineSpec(name="lengths", preset=args.preset, served_name=args.model)
        with Fleet([spec]) as fleet:
            lengths = measure(fleet.pods["lengths"].engine.url, args.model, prompts, args.repeats)
    print("\n".join(report(lengths)))


if __name__ == "__main__":
    main()
