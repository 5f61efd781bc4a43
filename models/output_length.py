"""Output length, learned online: how many tokens a request will generate, before it runs.

A router knows a request's prompt and the ``max_tokens`` cap its client sent (or none),
never where the model will end its answer. Sidecars see both the cap and the tokens each
finished request produced, so the distribution is learned from them, per served model,
by prompt-size band and cap band: the cap bounds the answer, and clients that send small
caps ask for short answers.

Each cell keeps a histogram of output lengths (exact below ``EXACT_LENGTHS`` tokens, then
``BINS_PER_OCTAVE`` log-spaced bins per doubling) plus an atom for the requests cut at
their cap: a request of that cell is predicted to stop at its own cap with that share.
Counts decay by ``1 / WINDOW`` per observation of the cell, so a cell follows drift
within about ``WINDOW`` requests. A cell borrows ``PARENT_WEIGHT`` pseudo-requests from
its parent, so a sparse cell answers like the coarser one until it has its own data:
model (prompt band, cap band) <- model (cap band) <- fleet (cap band) <- fleet <- a broad
log-normal prior. The fleet's pooled level counts a cut request as a length at its cap
(caps differ there), the levels of one cap band as the atom.

Each served model's counts also carry its prompt units (``models.prompt_units``: tokens
per character and per word, learned from the same finished records), so they travel
with them.

The state is plain numpy arrays in a dataclass, so it travels through the restricted
snapshot codec (``models/persistence/allowed_types.py``); counts of one layout add up, so states
learned apart combine by summing. Predictions read a published table of per-cell
quantiles, rebuilt after each batch learned: a lookup and a ``minimum`` with the caps.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from latency_oracle.features.schema import Observation
from latency_oracle.models.prompt_units import PromptUnit, empty_sums, learn_sums, tokens_per

log = logging.getLogger(__name__)

EXACT_LENGTHS = 32  # lengths 1..32 each have their own bin
BINS_PER_OCTAVE = 16
OCTAVES = 15  # up to 32 * 2**15 = 1,048,576 tokens
# Prompt bands: <=128, <=512, <=2048, <=8192, more. Cap bands: none sent, then <=32 ...
# <=4096, more; common caps (256, 512, 1024, 4096) sit at the top of their band.
PROMPT_EDGES = np.array([64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384])
CAP_EDGES = np.array([0, 32, 128, 256, 512, 1024, 2048, 4096])
WINDOW = 2_000.0  # observations of a cell over which its counts decay by 1/e
PARENT_WEIGHT = 20.0  # pseudo-observations a cell borrows from its parent
PRIOR_WEIGHT = 2.0  # the prior's, in the fleet's pooled level: gone after a few requests
PRIOR_MEDIAN, PRIOR_SIGMA = 200.0, 1.2  # the prior before anything is learned
# Keys of the counts in a snapshot: the fleet's (every served model's requests), and
# each served model's, its name prefixed (so no model name can clash with the fleet's).
FLEET, MODEL = "fleet", "model:"
# Served quantile levels: the quintiles' midpoints, equally likely nodes of the
# distribution for routing's expectations, which include the p50 and p90 it reports.
LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
P50, P90 = LEVELS.index(0.5), LEVELS.index(0.9)


def _bin_edges() -> np.ndarray:
    exact = np.arange(1, EXACT_LENGTHS + 1, dtype=float)
    steps = np.arange(1, BINS_PER_OCTAVE * OCTAVES + 1)
    return np.concatenate([exact, EXACT_LENGTHS * 2.0 ** (steps / BINS_PER_OCTAVE)])


EDGES = _bin_edges()  # bin b holds lengths in [EDGES[b], EDGES[b + 1])
BINS = len(EDGES) - 1
_LOW, _HIGH = EDGES[:-1], EDGES[1:]
_EXACT = _HIGH - _LOW <= 1.0  # one length per bin: no interpolation inside it
NP, NC = len(PROMPT_EDGES) + 1, len(CAP_EDGES) + 1
_PROMPT_EDGES, _CAP_EDGES = PROMPT_EDGES.tolist(), CAP_EDGES.tolist()  # for bisect


def prompt_band(input_tokens: np.ndarray) -> np.ndarray:
    return np.searchsorted(PROMPT_EDGES, input_tokens, side="left")


def cap_band(max_tokens: np.ndarray) -> np.ndarray:
    """0 for no cap sent, then the band whose top the cap is at or under."""
    return np.searchsorted(CAP_EDGES, max_tokens, side="left")


def length_bin(tokens: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(EDGES, tokens, side="right") - 1, 0, BINS - 1)


def _prior() -> np.ndarray:
    """A broad log-normal over the bins (no atom): what a cell says before any data."""
    mid = np.log(np.sqrt(_LOW * _HIGH))
    weight = np.exp(-0.5 * ((mid - np.log(PRIOR_MEDIAN)) / PRIOR_SIGMA) ** 2) * (_HIGH - _LOW)
    return np.append(weight / weight.sum(), 0.0)


PRIOR = _prior()


@dataclass(slots=True)
class LengthCounts:
    """Decayed counts of one served model (or the fleet): the last column of every level
    is the atom of requests cut at their cap."""

    cells: np.ndarray = field(default_factory=lambda: np.zeros((NP, NC, BINS + 1)))
    by_cap: np.ndarray = field(default_factory=lambda: np.zeros((NC, BINS + 1)))
    by_prompt: np.ndarray = field(default_factory=lambda: np.zeros((NP, BINS + 1)))
    pooled: np.ndarray = field(default_factory=lambda: np.zeros(BINS + 1))
    samples: int = 0  # observations learned (not decayed)
    prompt_units: np.ndarray = field(default_factory=empty_sums)  # ``models.prompt_units``

    def learn(self, prompt: np.ndarray, cap: np.ndarray, slot: np.ndarray, raw: np.ndarray) -> None:
        """Add observations: bands, their slot (length bin, or the atom ``BINS`` when cut
        at the cap) and their length's bin (for the levels that pool caps)."""
        for counts, index, where in (
            (self.cells, (prompt, cap), slot),
            (self.by_cap, (cap,), slot),
            (self.by_prompt, (prompt,), raw),
        ):
            _decay(counts, index)
            np.add.at(counts, (*index, where), 1.0)
        self.pooled *= (1.0 - 1.0 / WINDOW) ** len(raw)
        np.add.at(self.pooled, raw, 1.0)
        self.samples += len(raw)


def _decay(counts: np.ndarray, index: tuple[np.ndarray, ...]) -> None:
    """Decay each indexed cell once per observation of it in the batch."""
    seen = np.zeros(counts.shape[:-1])
    np.add.at(seen, index, 1.0)
    counts *= ((1.0 - 1.0 / WINDOW) ** seen)[..., None]


def _shrunk(counts: np.ndarray, parent: np.ndarray, weight: float) -> np.ndarray:
    """The cell's distribution with ``weight`` pseudo-counts of its parent's."""
    total = counts.sum(axis=-1, keepdims=True)
    return (counts + weight * parent) / (total + weight)


def quantile_table(model: LengthCounts, fleet: LengthCounts) -> np.ndarray:
    """(NP, NC, len(LEVELS)) uncut quantiles of each cell: the length below which a share
    ``level`` of its requests ended at EOS, inf where that share is not reached before
    the atom (those requests stop at their cap)."""
    pooled = _shrunk(fleet.pooled, PRIOR, PRIOR_WEIGHT)
    fleet_cap = _shrunk(fleet.by_cap, pooled, PARENT_WEIGHT)
    model_cap = _shrunk(model.by_cap, fleet_cap, PARENT_WEIGHT)
    model_pooled = _shrunk(model.pooled, pooled, PARENT_WEIGHT)
    model_prompt = _shrunk(model.by_prompt, model_pooled, PARENT_WEIGHT)
    parent = 0.5 * (model_cap[None] + model_prompt[:, None])
    cells = _shrunk(model.cells, parent, PARENT_WEIGHT)
    cdf = np.cumsum(cells[..., :BINS], axis=-1)
    levels = np.array(LEVELS) - 1e-12
    first = _first_reaching(cdf, levels)
    reached = first < BINS
    b = np.minimum(first, BINS - 1)
    below = np.take_along_axis(np.concatenate([np.zeros((*cdf.shape[:-1], 1)), cdf], -1), b, -1)
    mass = np.take_along_axis(cells, b, -1)
    share = np.clip((levels - below) / np.maximum(mass, 1e-300), 0.0, 1.0)
    low, high = _LOW[b], _HIGH[b]
    value = np.where(_EXACT[b], low, np.ceil(low * (high / low) ** share))
    return np.where(reached, value, np.inf)


def _first_reaching(cdf: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(..., level) index of the first bin whose cdf reaches each level (``BINS`` where
    none does), in one ``searchsorted``: row r is shifted by r, so the flattened rows are
    one ascending array (each row's cdf lies in [0, 1])."""
    rows = cdf.reshape(-1, BINS)
    shift = np.arange(len(rows), dtype=float)[:, None]
    flat = (rows + shift).ravel()
    found = np.searchsorted(flat, (levels + shift).ravel()).reshape(len(rows), len(levels))
    found = np.minimum(found - shift.astype(np.int64) * BINS, BINS)
    return found.reshape(*cdf.shape[:-1], len(levels))


@dataclass(frozen=True, slots=True)
class LengthForecast:
    """Output tokens at ``LEVELS`` for n requests."""

    tokens: np.ndarray  # (n, len(LEVELS))

    @property
    def p50(self) -> np.ndarray:
        return self.tokens[:, P50]

    @property
    def p90(self) -> np.ndarray:
        return self.tokens[:, P90]


class OutputLengths:
    """The learned output-length distributions of a deployment: the fleet's and each
    served model's (learning: one thread; predictions: any thread, reading the published
    tables)."""

    def __init__(self) -> None:
        self.fleet = LengthCounts()
        self.models: dict[str, LengthCounts] = {}
        self._tables: dict[str, np.ndarray] = {}
        self._fleet_table = quantile_table(self.fleet, self.fleet)

    def learn(self, observations: Sequence[Observation]) -> None:
        """Learn the finished requests' output tokens against the caps they were sent (a
        record sent at the first token counts tokens so far, not the request's)."""
        observations = [o for o in observations if o.finished and o.output_tokens > 0]
        if not observations:
            return
        texts = [o for o in observations if o.prompt_chars or o.prompt_words]
        learn_sums(self.fleet.prompt_units, texts)
        for model in dict.fromkeys(o.model for o in texts):
            counts = self.models.setdefault(model, LengthCounts())
            learn_sums(counts.prompt_units, [o for o in texts if o.model == model])
        served = np.array([o.model for o in observations], dtype=object)
        output = np.array([o.output_tokens for o in observations])
        cap = np.array([o.max_tokens for o in observations])
        prompt = prompt_band(np.array([o.input_tokens for o in observations]))
        bands = cap_band(cap)
        raw = length_bin(output)
        slot = np.where((cap > 0) & (output >= cap), BINS, raw)
        self.fleet.learn(prompt, bands, slot, raw)
        for model in dict.fromkeys(served.tolist()):
            rows = served == model
            counts = self.models.setdefault(model, LengthCounts())
            counts.learn(prompt[rows], bands[rows], slot[rows], raw[rows])
        self._publish()

    def _publish(self) -> None:
        """Rebuild every table (each borrows from the fleet's) and swap them in whole:
        readers never see a half-built one."""
        self._tables = {m: quantile_table(c, self.fleet) for m, c in self.models.items()}
        self._fleet_table = quantile_table(self.fleet, self.fleet)

    def _table(self, served: str) -> np.ndarray:
        """A served model's table; a model never seen is answered like the fleet."""
        table = self._tables.get(served)
        return self._fleet_table if table is None else table

    def predict(
        self, served: np.ndarray, input_tokens: np.ndarray, max_tokens: np.ndarray
    ) -> LengthForecast:
        """Output tokens at ``LEVELS`` for each request (``max_tokens`` 0: no cap sent)."""
        prompt, bands = prompt_band(input_tokens), cap_band(max_tokens)
        cap = np.where(max_tokens > 0, max_tokens, np.inf)[:, None]
        names = served.tolist()
        if not names or names.count(names[0]) == len(names):
            table = self._table(names[0] if names else "")
            return LengthForecast(np.minimum(table[prompt, bands], cap))
        tokens = np.empty((len(names), len(LEVELS)))
        for model in dict.fromkeys(names):
            rows = served == model
            tokens[rows] = np.minimum(self._table(model)[prompt[rows], bands[rows]], cap[rows])
        return LengthForecast(tokens)

    def predict_one(self, served: str, input_tokens: int, max_tokens: int) -> np.ndarray:
        """(len(LEVELS),) one request's output tokens: routing's path, one table row."""
        table = self._table(served)
        row = table[bisect_left(_PROMPT_EDGES, input_tokens), bisect_left(_CAP_EDGES, max_tokens)]
        return np.minimum(row, max_tokens) if max_tokens > 0 else row

    def tokens_per(self, served: str, unit: PromptUnit) -> float:
        """Tokens per character or word of ``served``'s prompts (the fleet's for a model
        never seen; a typical tokenizer's before any)."""
        fleet = tokens_per(self.fleet.prompt_units, unit)
        counts = self.models.get(served)
        return fleet if counts is None else tokens_per(counts.prompt_units, unit, fleet)

    # -- persistence: the counts travel, the tables are rebuilt -------------------------

    def export(self) -> dict[str, LengthCounts] | None:
        """The counts by key (``FLEET``, and ``MODEL`` + each served model's name), for a
        snapshot; None before anything is learned."""
        if not self.fleet.samples:
            return None
        return {FLEET: self.fleet} | {MODEL + name: c for name, c in self.models.items()}

    def restore(self, counts: dict[str, LengthCounts]) -> None:
        """Replace everything learned with ``counts`` (a snapshot's, or a trainer's); counts
        of another layout (a build with other bands) or not finite are left out: their
        served models learn afresh."""
        usable = {key: c for key, c in counts.items() if _usable(c)}
        if len(usable) < len(counts):
            log.warning(
                "ignoring the output lengths of %s: not this build's layout",
                ", ".join(sorted(repr(key) for key in set(counts) - set(usable))),
            )
        self.fleet = usable.get(FLEET, LengthCounts())
        self.models = {k[len(MODEL) :]: c for k, c in usable.items() if k.startswith(MODEL)}
        self._publish()


def _usable(counts: LengthCounts) -> bool:
    expected = LengthCounts()
    return all(
        type(have) is np.ndarray
        and have.shape == want.shape
        and bool(np.isfinite(have).all() and (have >= 0).all())
        for have, want in (
            (counts.cells, expected.cells),
            (counts.by_cap, expected.by_cap),
            (counts.by_prompt, expected.by_prompt),
            (counts.pooled, expected.pooled),
            (counts.prompt_units, expected.prompt_units),
        )
    )
