"""Does what the models learned transfer across served models and accelerators?

Two served models, an 8B and a 70B (8x slower), on H100 and A100 (2.5x slower). The
models learn 8B on both accelerators and 70B on the H100 only, then predict for new pods
(no per-pod history): of each model on the H100, and of the 70B on the A100, a pair never
seen. Each figure is the median of predicted p50 over the true median (1.0 is right) and
the p90's coverage of fresh outcomes (0.90 is right), for each way to answer:

- ``accelerator-only``: models keyed by accelerator alone (before served models were keyed);
- ``keyed, chain``: what the registry answers: the pair's own key, else (the held-out
  pair) the global model, which learns latency normalised per served model, plus the
  served model's scale (``models/served_model_scale.py``);
- ``global, as before``: the global model learning raw latency, blind to the served model;
- ``per-model global key``: a global-kind model set learning one served model only, on
  every accelerator (the alternative: a (served model, any accelerator) level).

Run: ``.venv/bin/python bench/served_model_transfer.py [observations per learned pair]``
"""

from __future__ import annotations

import sys

import numpy as np

from latency_oracle.features.engineering import RequestColumns, build_features
from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.models.model_set import ModelSet, ServingModel, served_quantiles
from latency_oracle.models.prediction_batch import TARGETS
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.sim.synthetic_stream import SyntheticStream, served_model_stream

SMALL, LARGE = "llama-8b", "llama-70b"
LEARNED = ((SMALL, "H100", 1.0), (LARGE, "H100", 8.0), (SMALL, "A100", 2.5))
HELD_OUT = (LARGE, "A100", 20.0)
N_LEARN, N_PROBE, BATCH = int(sys.argv[1]) if len(sys.argv) > 1 else 1_500, 600, 256


def interleaved(streams: list[SyntheticStream]) -> list[Observation]:
    """The streams' observations alternating, as a fleet reports them."""
    return [o for group in zip(*(s.observations for s in streams), strict=True) for o in group]


def probe(model: str, accelerator: str, slowdown: float) -> SyntheticStream:
    """Fresh requests of one pair on new pods (a seed and pod names never learned)."""
    stream = served_model_stream(
        N_PROBE, seed=99, accelerator=accelerator, model=model, slowdown=slowdown
    )
    fresh = [o.model_copy(update={"pod": f"new-{o.pod}"}) for o in stream.observations]
    return SyntheticStream(fresh, stream.ttft_median_ms, stream.tpot_median_ms)


def figures(ttft: np.ndarray, tpot: np.ndarray, stream: SyntheticStream) -> str:
    """TTFT and TPOT: median of predicted p50 over the true median, and p90 coverage."""
    out = []
    for name, ms, median in (
        ("ttft", ttft, stream.ttft_median_ms),
        ("tpot", tpot, stream.tpot_median_ms),
    ):
        actual = np.array([getattr(o, f"{name}_ms") for o in stream.observations])
        ratio = float(np.median(ms[:, 0] / median))
        out.append(
            f"{name} p50/true {ratio:5.2f} p90 cover {float(np.mean(actual <= ms[:, 1])):.2f}"
        )
    return "  ".join(out)


def registry_answer(registry: ModelRegistry, stream: SyntheticStream, named: bool) -> str:
    served = np.array([o.model if named else "" for o in stream.observations], dtype=object)
    batch = registry.predict(RequestColumns.from_requests(stream.observations), False, served)
    keys = sorted({*batch.ttft_key, *batch.tpot_key})
    return f"{figures(batch.ttft_ms, batch.tpot_ms, stream)}  ({', '.join(keys)})"


def per_model_global(
    observations: list[Observation], model: str, target: Target, config: ModelConfig
) -> ServingModel:
    """The serving model of a global-kind model set learning one served model on every
    accelerator."""
    model_set = ModelSet(ModelKey(GLOBAL_ACCELERATOR, target, model), config)
    own = [o for o in observations if o.model == model]
    for start in range(0, len(own), BATCH):
        batch = own[start : start + BATCH]
        features = build_features(RequestColumns.from_requests(batch))
        model_set.learn(features, np.log([getattr(o, f"{target.value}_ms") for o in batch]))
    serving = model_set.serving_model()
    assert serving is not None
    return serving


def main() -> None:
    config = ModelConfig()
    observations = interleaved(
        [
            served_model_stream(N_LEARN, seed=i, accelerator=a, model=m, slowdown=f)
            for i, (m, a, f) in enumerate(LEARNED)
        ]
    )
    keyed, unkeyed = ModelRegistry(config), ModelRegistry(config)
    for start in range(0, len(observations), BATCH):
        batch = observations[start : start + BATCH]
        keyed.learn(batch)
        unkeyed.learn([o.model_copy(update={"model": ""}) for o in batch])
    print(f"learned {len(observations)} observations: {LEARNED}; held out {HELD_OUT}")
    for model, accelerator, slowdown in (*LEARNED[:2], HELD_OUT):
        stream = probe(model, accelerator, slowdown)
        print(f"\n{model} on a new {accelerator} pod (true {slowdown:g}x the 8B on H100):")
        print(f"  accelerator-only          {registry_answer(unkeyed, stream, named=False)}")
        print(f"  keyed, chain              {registry_answer(keyed, stream, named=True)}")
        features = build_features(RequestColumns.from_requests(stream.observations))
        plain = [unkeyed.serving(ModelKey(GLOBAL_ACCELERATOR, t)) for t in TARGETS]
        ttft, tpot = (served_quantiles(s.predict_log(features)) for s in plain if s is not None)
        print(f"  global, as before         {figures(ttft, tpot, stream)}")
        alternative = [per_model_global(observations, model, t, config) for t in TARGETS]
        ttft, tpot = (served_quantiles(s.predict_log(features)) for s in alternative)
        print(f"  per-model global key      {figures(ttft, tpot, stream)}")


if __name__ == "__main__":
    main()
