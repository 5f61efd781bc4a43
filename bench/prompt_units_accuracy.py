"""How well a caller's characters or words stand in for tokens: the conversion's error on
a real tokenizer, and what it costs the served p90s.

1. **Conversion.** Prompts drawn as the real-engine load generator draws them
   (``real_engine.prompts``: slices of the engine's corpus, tokenized by the served model's
   own tokenizer), in order: each prompt's tokens are estimated from its characters and
   from its words with the ratios learned so far (``OutputLengths.tokens_per``), then the
   prompt is learned, as the sidecar reports it at the finish. Printed: the relative error
   of the estimate (median and p90 of |estimate / tokens - 1|), for the first 100 prompts
   and the rest, beside the untrained default ratio's.
2. **Predictions.** A zoo stream is fed through the native API twice (``lo_feed``): with
   prompt sizes in tokens, and in characters (finished requests report both, as the
   sidecar does; prediction requests carry characters only). Each request's characters
   are its tokens divided by the tokens per character of a corpus prompt of about its
   length, so the per-prompt spread is the real tokenizer's. Printed: p90 coverage and
   pinball loss per window.

Needs the real-engine harness's venv and model (made on first use; point
``LATENCY_ORACLE_REAL_ENGINE_HOME`` at an existing harness home to reuse one).

    .venv/bin/python bench/prompt_units_accuracy.py --prompts 3000 --samples 8000
"""

from __future__ import annotations

import argparse

import numpy as np
from accuracy import features_of, pinball, windowed
from lo_feed import feed_native
from real_engine.install import ensure_model, ensure_venv, home
from real_engine.prompts import Corpus, Workload
from zoo import WORLDS, generate

from latency_oracle.features.schema import Observation
from latency_oracle.models.output_length import OutputLengths
from latency_oracle.models.prompt_units import DEFAULT_TOKENS_PER, PromptUnit

LEARN_EVERY = 20  # prompts per learned batch: the sidecar's reports arrive in batches


def corpus_prompts(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, characters, words) of ``n`` prompts as the load generator draws them."""
    corpus = Corpus.load(ensure_venv(), ensure_model("tiny"), home() / "corpus")
    workload = Workload(corpus, seed)
    prompts = [workload.next() for _ in range(n)]
    return (
        np.array([len(p.ids) for p in prompts]),
        np.array([len(p.text) for p in prompts]),
        np.array([len(p.text.split()) for p in prompts]),
    )


def conversion(tokens: np.ndarray, chars: np.ndarray, words: np.ndarray) -> list[list[str]]:
    lengths = OutputLengths()
    estimates = {PromptUnit.CHARS: np.empty(len(tokens)), PromptUnit.WORDS: np.empty(len(tokens))}
    for start in range(0, len(tokens), LEARN_EVERY):
        rows = range(start, min(start + LEARN_EVERY, len(tokens)))
        for unit, counts in ((PromptUnit.CHARS, chars), (PromptUnit.WORDS, words)):
            ratio = lengths.tokens_per("tiny", unit)
            estimates[unit][rows.start : rows.stop] = counts[rows.start : rows.stop] * ratio
        lengths.learn(
            [
                Observation(
                    accelerator="CPU",
                    model="tiny",
                    input_tokens=int(tokens[i]),
                    output_tokens=10,
                    ttft_ms=1.0,
                    prompt_chars=int(chars[i]),
                    prompt_words=int(words[i]),
                )
                for i in rows
            ]
        )
    table = []
    for unit, counts in ((PromptUnit.CHARS, chars), (PromptUnit.WORDS, words)):
        default = np.abs(counts * DEFAULT_TOKENS_PER[unit] / tokens - 1)
        learned = np.abs(estimates[unit] / tokens - 1)
        for window, sl in (("first 100", slice(0, 100)), ("after", slice(100, len(tokens)))):
            table.append(
                [
                    unit.value,
                    window,
                    f"{np.median(default[sl]):.3f} / {np.quantile(default[sl], 0.9):.3f}",
                    f"{np.median(learned[sl]):.3f} / {np.quantile(learned[sl], 0.9):.3f}",
                ]
            )
    return table


def chars_for(stream_tokens: np.ndarray, tokens: np.ndarray, chars: np.ndarray) -> np.ndarray:
    """Characters of each stream prompt: its tokens over the tokens per character of the
    corpus prompt nearest in length (the real tokenizer's spread at that length)."""
    order = np.argsort(tokens)
    at = np.clip(np.searchsorted(tokens[order], stream_tokens), 0, len(order) - 1)
    per_char = (tokens / chars)[order][at]
    return np.maximum(np.round(stream_tokens / per_char), 1).astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3_000)
    parser.add_argument("--samples", type=int, default=8_000)
    parser.add_argument("--streams", default="queue_big_model,shared_prefix")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tokens, chars, words = corpus_prompts(args.prompts, args.seed)
    print(f"\nTokens estimated from a caller's count, {args.prompts} corpus prompts")
    print(f"({tokens.sum() / chars.sum():.3f} tokens/char, {tokens.sum() / words.sum():.3f}")
    print("tokens/word); median / p90 of |estimate / tokens - 1|:\n")
    print("| unit | prompts | default ratio | learned ratio |\n|---|---|---|---|")
    for row in conversion(tokens, chars, words):
        print("| " + " | ".join(row) + " |")
    warmup = min(2_000, args.samples // 4)
    print(f"\np90 coverage / pinball loss (ms), {args.samples} samples per stream\n")
    print("| stream | target | window | sizes in tokens | sizes in characters |")
    print("|---|---|---|---|---|")
    for name in args.streams.split(","):
        stream = generate(WORLDS[name], args.samples, args.seed)
        features = features_of(stream)
        in_chars = chars_for(stream.fields["input_tokens"], tokens, chars)
        runs = [feed_native(stream, features), feed_native(stream, features, prompt_chars=in_chars)]
        for target, window, sl, y in windowed(stream, warmup):
            cells = [
                f"{np.mean(y <= getattr(r, target)[sl]):.3f} / "
                f"{pinball(y, getattr(r, target)[sl]):.3g}"
                for r in runs
            ]
            print(f"| {name} | {target.upper()} | {window} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
