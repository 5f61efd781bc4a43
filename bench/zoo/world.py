"""The engine every zoo stream runs on: pods with a latent load, requests, latencies, truth.

Written apart from ``sim/`` on purpose: a model tuned against the simulator must not be
judged on the simulator's own physics (only the clients' ``max_tokens`` caps come from
``sim.client_caps``: a documented mix, no physics). Each world is a ``World`` (parameters) plus a
``Drift`` (how it changes over the stream); ``generate`` turns it into a ``Stream`` whose
records carry exactly what the product's observation schema takes, and whose truth is the
p90 the world itself knows: latencies are a latent mean times a multiplicative noise whose
p90 is known, so the true p90 of each sample is its latent mean times that p90.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from latency_oracle.sim.client_caps import sessionless_caps
from zoo.laws import LAWS, PodState

RATE_PER_S = 200.0  # samples per second of stream time: the baseline refits every second
T0 = 1.7e9
CONTEXT_TOKENS = 65_536  # the engine's context: an uncapped answer stops there at the latest
WORDS_PER_TOKEN = 0.75  # llm-d counts words where the engine counts tokens
# Spec-sheet figures (dense BF16 TFLOP/s, HBM GB/s, KV tokens a pod holds for a 7B model).
HARDWARE = {
    "H100": (989.0, 3350.0, 400_000),
    "A100": (312.0, 2039.0, 400_000),
    "L4": (121.0, 300.0, 60_000),
}


@dataclass(frozen=True)
class Noise:
    """Multiplicative latency noise: a lognormal body, optionally a Pareto tail."""

    sigma: float = 0.15
    tail_share: float = 0.0  # fraction of samples hit by a tail event
    tail_alpha: float = 2.5  # Pareto index of the tail multiplier (>1)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        body = np.exp(self.sigma * rng.standard_normal(n))
        if self.tail_share <= 0:
            return body
        tail = rng.pareto(self.tail_alpha, n) + 1.0
        return np.where(rng.random(n) < self.tail_share, body * tail, body)

    @property
    def p90(self) -> float:
        return _noise_p90(self)


@lru_cache(maxsize=64)
def _noise_p90(noise: Noise) -> float:
    """The noise's p90: exact for a lognormal, else from two million draws (fixed seed)."""
    if noise.tail_share <= 0:
        return float(np.exp(noise.sigma * 1.2815515655446004))
    return float(np.quantile(noise.draw(np.random.default_rng(12345), 2_000_000), 0.9))


@dataclass(frozen=True)
class Regime:
    """What a drift changes at one point of the stream (all multipliers, 1 = unchanged)."""

    prompt: float = 1.0  # prompt lengths
    slowdown: float = 1.0  # hidden: every latency of the affected pods
    load: float = 1.0  # pods' mean utilisation
    prefix_share: float | None = None  # share of requests hitting a cached prefix
    slowed: tuple[str, ...] = ()  # accelerators the slowdown hits (empty: all)
    output: float = 1.0  # true answer lengths (hidden: only outcomes show them)
    chunk: float = 1.0  # hidden: the chunked-prefill token budget (``chunked`` law)


@dataclass(frozen=True)
class Drift:
    """``kind``: abrupt (switch at ``at``), gradual (ramp over ``span``), recurring (blocks)."""

    kind: str
    to: Regime
    at: float = 0.5  # fraction of the stream where drift starts
    span: float = 0.25  # gradual: fraction of the stream the ramp takes
    block: int = 2_000  # recurring: samples per regime block after ``at``

    def weight(self, i: np.ndarray, n: int) -> np.ndarray:
        """(n,) weight of the drifted regime at each sample index, in [0, 1]."""
        start = int(self.at * n)
        after = i - start
        if self.kind == "abrupt":
            return (after >= 0).astype(float)
        if self.kind == "gradual":
            return np.clip(after / max(self.span * n, 1.0), 0.0, 1.0) * (after >= 0)
        if self.kind == "recurring":
            return ((after >= 0) & ((np.maximum(after, 0) // self.block) % 2 == 0)).astype(float)
        raise ValueError(f"unknown drift kind {self.kind}")


@dataclass(frozen=True)
class World:
    """One world's parameters; see ``generate``."""

    name: str
    description: str
    drift: Drift
    accelerators: tuple[str, ...] = ("H100",)
    pods_per_accelerator: int = 4
    model_scale: float = 1.0  # cost relative to a 7B model (70B ~ 10)
    prompt_median: float = 1_000.0
    prompt_sigma: float = 0.5
    output_median: float = 200.0
    output_sigma: float = 0.7
    prefix_share: float = 0.0
    prefix_tokens: float = 0.0
    max_batch: int = 64
    load_mean: float = 0.6
    queue_gain: float = 2.0  # mean waiting requests ~ gain * u^3 / (1 - u)
    inflight: str = "queued"  # queued | beside | noise | absent | llmd (see ``generate``)
    ttft_law: str = "roofline"  # roofline, or one of ``laws.LAWS``
    chunk_tokens: float = 2_048.0  # ``chunked``: prefill tokens per step
    per_request_ms: float = 20.0  # ``counts``: admission cost of each waiting request
    ttft_noise: Noise = field(default_factory=Noise)
    tpot_noise: Noise = field(default_factory=lambda: Noise(0.08))
    # Which request fields (and ``accelerator``) carry TTFT / TPOT signal in this world,
    # and which are noise: ``python -m zoo.signal`` measures it, docs/accuracy.md lists it,
    # tests/test_zoo_worlds.py holds the scheduler worlds to it.
    ttft_signal: tuple[str, ...] = ()
    tpot_signal: tuple[str, ...] = ()
    noise: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stream:
    """A generated stream: observation fields per sample, latencies and their true p90."""

    name: str
    description: str
    accelerator: np.ndarray  # object
    pod: np.ndarray  # object
    fields: dict[str, np.ndarray]  # the observation's numeric fields, by schema name
    timestamp: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray
    true_ttft_p90: np.ndarray
    true_tpot_p90: np.ndarray
    drift_at: int

    def __len__(self) -> int:
        return len(self.ttft_ms)

    @property
    def finished(self) -> np.ndarray:
        """When each request finished (s): its arrival plus TTFT plus the decode."""
        decode_ms = self.tpot_ms * (self.fields["output_tokens"] - 1)
        return self.timestamp + (self.ttft_ms + decode_ms) / 1e3

    def schedule(
        self, batch: int = 100, instant: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows to predict, rows to learn first): batches of arrivals in order, each
        preceded by the outcomes that finished before its first request arrived. A model
        learns an outcome only once it is known, as a served one would. ``instant``: each
        batch's outcomes are learned right after it is predicted (issue 19's protocol)."""
        if instant:
            previous = np.arange(0)
            for start in range(0, len(self), batch):
                rows = np.arange(start, min(start + batch, len(self)))
                yield rows, previous
                previous = rows
            return
        finished = self.finished
        order = np.argsort(finished, kind="stable")
        done = 0
        for start in range(0, len(self), batch):
            known = int(np.searchsorted(finished[order], self.timestamp[start], side="right"))
            yield np.arange(start, min(start + batch, len(self))), order[done:known]
            done = known


def _generator(seed: int, part: str) -> np.random.Generator:
    """A generator of its own for each part of a world: a drift that changes how many draws
    one part takes after the drift point leaves every other part, and everything before
    the point, exactly as it was."""
    return np.random.default_rng([seed, zlib.crc32(part.encode())])


def _mix(base: float, drifted: float, w: np.ndarray) -> np.ndarray:
    return base + (drifted - base) * w


def _utilisation(
    rng: np.random.Generator, pods: np.ndarray, n_pods: int, mean: np.ndarray
) -> np.ndarray:
    """Each arrival's pod utilisation: a slow AR(1) walk per pod in logit space."""
    logit_mean = np.log(mean / (1 - mean))
    state = np.zeros(n_pods)
    out = np.empty(len(pods))
    shocks = 0.25 * rng.standard_normal(len(pods))
    for i, pod in enumerate(pods.tolist()):
        state[pod] = 0.97 * state[pod] + shocks[i]
        out[i] = state[pod]
    return 1.0 / (1.0 + np.exp(-(logit_mean + out)))


def _sums_of_lognormals(
    rng: np.random.Generator, counts: np.ndarray, median: np.ndarray, sigma: float
) -> np.ndarray:
    """Per row, the sum of ``counts`` lognormal draws of that row's median."""
    total = int(counts.sum())
    draws = np.exp(sigma * rng.standard_normal(total))
    owner = np.repeat(np.arange(len(counts)), counts)
    return np.bincount(owner, weights=draws * median[owner], minlength=len(counts))


def _words(rng: np.random.Generator, tokens: np.ndarray) -> np.ndarray:
    """llm-d counts prompts in words: about 0.75 a token, varying with the text."""
    return np.round(tokens * WORDS_PER_TOKEN * np.exp(0.08 * rng.standard_normal(len(tokens))))


def _occupancy(
    rng: np.random.Generator,
    queue: np.random.Generator,
    world: World,
    util: np.ndarray,
    answers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(running, waiting) requests. Under the ``batch_wait`` law the batch is a hard cap
    (``max_num_seqs``) and requests wait only when it is full; ``answers`` is the regime's
    answer-length multiplier. Otherwise running and waiting are two independent faces of
    the load."""
    if world.ttft_law == "batch_wait":
        # Little's law: at one arrival rate, longer answers keep more requests in the pod.
        demand = rng.poisson(world.max_batch * util * 1.2 * answers)
        running = np.minimum(demand, world.max_batch)
        return running, demand - running
    running = rng.binomial(world.max_batch, util)
    return running, queue.poisson(world.queue_gain * util**3 / (1 - util))


def generate(world: World, n: int, seed: int = 0, answers_seed: int | None = None) -> Stream:
    """``n`` samples of ``world`` at ``RATE_PER_S``, with each sample's true p90s.

    True answer lengths come from a generator of their own (``answers_seed``, by default
    ``seed``), and nothing a request or a pod reports at arrival is computed from them: a
    router never knows them (issue 28). Two streams that differ only in ``answers_seed``
    are the same requests given other answers. A request ends at its EOS or its client's
    cap, whichever comes first."""

    def rng(part: str) -> np.random.Generator:
        return _generator(seed, part)

    i = np.arange(n)
    w = world.drift.weight(i, n)
    to = world.drift.to
    accel_names = np.array(
        [a for a in world.accelerators for _ in range(world.pods_per_accelerator)], object
    )
    n_pods = len(accel_names)
    pod = rng("pod").integers(0, n_pods, n)
    accelerator = accel_names[pod]
    tflops, hbm, kv_tokens = (np.array([HARDWARE[a][k] for a in accelerator]) for k in range(3))
    hit = np.isin(accelerator, to.slowed) if to.slowed else np.ones(n, bool)
    slowdown = np.where(hit, _mix(1.0, to.slowdown, w), 1.0)
    prompt_median = world.prompt_median * _mix(1.0, to.prompt, w)
    output_median = world.output_median * _mix(1.0, to.output, w)
    util = _utilisation(
        rng("load"), pod, n_pods, np.clip(world.load_mean * _mix(1.0, to.load, w), 0.05, 0.95)
    )

    prompt = np.clip(
        np.round(prompt_median * np.exp(world.prompt_sigma * rng("prompt").standard_normal(n))),
        8,
        60_000,
    )
    share = (
        world.prefix_share
        if to.prefix_share is None
        else _mix(world.prefix_share, to.prefix_share, w)
    )
    shares = rng("prefix").random(n) < share
    cached = np.where(shares, np.minimum(np.floor(world.prefix_tokens / 16) * 16, prompt - 1), 0.0)
    cached = np.where(
        shares, np.floor(cached * rng("prefix hit").uniform(0.8, 1.0, n) / 16) * 16, 0.0
    )
    max_tokens = sessionless_caps(n, seed).astype(float)  # as clients send them
    eos = np.round(
        output_median
        * np.exp(
            world.output_sigma
            * _generator(
                seed if answers_seed is None else answers_seed, "answer lengths"
            ).standard_normal(n)
        )
    )
    limit = np.where(max_tokens > 0, max_tokens, CONTEXT_TOKENS - prompt)
    output = np.clip(np.minimum(eos, limit), 2, 8_192)

    running, waiting = _occupancy(
        rng("occupancy"), rng("queue"), world, util, output_median / world.output_median
    )
    uncached_share = 1.0 - share * world.prefix_tokens / np.maximum(prompt_median, 1.0) * 0.9
    queued_median = prompt_median * np.clip(uncached_share, 0.1, 1.0)
    queued = _sums_of_lognormals(rng("queued"), waiting, queued_median, world.prompt_sigma)
    context = _sums_of_lognormals(rng("context"), running, prompt_median + output_median, 0.6)
    kv = np.clip(context / kv_tokens + 0.02 * rng("kv").standard_normal(n), 0.0, 1.0)

    ms_per_token = world.model_scale * 2 * 7e9 / (tflops * 1e12 * 0.45) * 1e3
    step_ms = world.model_scale * 2 * 7e9 / (hbm * 1e9 * 0.65) * 1e3
    chunks = rng("beside")
    beside = np.where(chunks.random(n) < 0.3, np.exp(9.0 + chunks.standard_normal(n)), 0.0)
    if world.ttft_law == "roofline":
        chunk_slowdown = 1.0 + (world.inflight == "beside") * 0.15 * (beside > 0)
        ttft_mean = slowdown * (
            12.0
            + ms_per_token * (queued + prompt - cached) * chunk_slowdown
            + 0.4 * step_ms * np.sqrt(running)
        )
    else:
        state = PodState(
            own_tokens=prompt - cached,
            queued_tokens=queued,
            waiting=waiting.astype(float),
            running=running.astype(float),
            context_tokens=context,
            prompt_mean=queued_median * np.exp(world.prompt_sigma**2 / 2),
            output_mean=output_median * np.exp(world.output_sigma**2 / 2),
            chunk_tokens=world.chunk_tokens * _mix(1.0, to.chunk, w),
            max_batch=world.max_batch,
            per_request_ms=world.per_request_ms,
        )
        ttft_mean = slowdown * world.model_scale * LAWS[world.ttft_law](state)
    tpot_mean = slowdown * step_ms * (1.0 + 0.012 * running + context / 4e5)

    words = _words(rng("words"), prompt)
    prefill_field = {
        "queued": lambda: queued,
        "beside": lambda: beside,
        "noise": lambda: np.exp(9.5 + 1.2 * rng("noise field").standard_normal(n)),
        "absent": lambda: np.zeros(n),
        # llm-d's count: the words of every prompt on the pod, decoding ones included.
        "llmd": lambda: (
            _words(rng("queued words"), queued)
            + _words(
                rng("running words"),
                _sums_of_lognormals(rng("running"), running, prompt_median, world.prompt_sigma),
            )
        ),
    }[world.inflight]()
    no_decode_count = world.inflight in ("absent", "llmd")  # llm-d's EPP always sends 0
    fields = {
        "input_tokens": prompt,
        "input_words": words,
        "prefix_cache_hit_tokens": cached,
        "output_tokens": output,
        "max_tokens": max_tokens,
        "running_requests": running.astype(float),
        "waiting_requests": waiting.astype(float),
        "kv_cache_usage": np.round(kv, 4),
        "prefill_tokens_in_flight": np.round(prefill_field),
        "decode_tokens_in_flight": np.zeros(n) if no_decode_count else np.round(context),
    }
    ttft_noise, tpot_noise = (
        world.ttft_noise.draw(rng("ttft"), n),
        world.tpot_noise.draw(rng("tpot"), n),
    )
    return Stream(
        name=world.name,
        description=world.description,
        accelerator=accelerator,
        pod=np.array([f"{world.name}-{p}" for p in pod], object),
        fields=fields,
        timestamp=T0 + i / RATE_PER_S,
        ttft_ms=ttft_mean * ttft_noise,
        tpot_ms=tpot_mean * tpot_noise,
        true_ttft_p90=ttft_mean * world.ttft_noise.p90,
        true_tpot_p90=tpot_mean * world.tpot_noise.p90,
        drift_at=int(world.drift.at * n),
    )
