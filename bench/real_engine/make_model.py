"""Make a small Llama with random weights and a tokenizer trained here, for vLLM to serve.

Runs under the engine's own venv (torch, transformers, tokenizers), never the project's:
``<engine venv>/bin/python make_model.py OUT --preset tiny``. It needs no network: the
tokenizer is a byte-level BPE trained with ``tokenizers`` on the Python standard library's
own source, the weights are drawn from a seeded generator.

Random weights almost never sample the end-of-sequence token (1 in 8,192 per step), so
every request would run to its ``max_tokens`` cap: nothing like a served model, whose
answers end on their own, at lengths that depend on the prompt. The EOS row of the output
head is therefore shaped from hidden states measured here: the model continues a few dozen
prompts of varied kinds and lengths, and the EOS logit is set to a linear function of
the final hidden state, ``a * (h . m) + b * (h . d)``, where ``m`` is the mean state and
``d`` the direction along which prompts differ most (first principal component of each
prompt's mean state). ``a`` sets the median per-token EOS probability, ``b`` how much it
varies between prompts; both are solved for on the measured states, so a prompt's
expected answer length follows from its content, roughly log-normally across prompts,
and single answers stay geometric (memoryless) around it. The lengths vLLM then produces
are measured by ``bench/real_engine/lengths.py`` and documented in docs/real-engine.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

VOCAB = 8192
SPECIAL = ("<s>", "</s>", "<pad>")  # ids 0, 1, 2
BOS_ID, EOS_ID, PAD_ID = 0, 1, 2
CORPUS_BYTES = 2_000_000
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class Preset:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    # Target answer lengths (tokens): the median over prompts, and the spread of prompts'
    # expected lengths in natural-log units (std of log expected length).
    median_tokens: float = 120.0
    log_spread: float = 1.0


PRESETS = {
    "tiny": Preset(hidden=256, layers=4, heads=4, kv_heads=4, intermediate=688),
    "large": Preset(hidden=512, layers=8, heads=8, kv_heads=4, intermediate=1376),
}


def corpus_files(limit_bytes: int = CORPUS_BYTES) -> list[str]:
    """The standard library's sources, in a fixed order, up to ``limit_bytes``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chosen, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        chosen.append(str(path))
        total += path.stat().st_size
        if total >= limit_bytes:
            break
    return chosen


def train_tokenizer(files: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train(files, trainer)
    return tokenizer


def probe_prompts(files: list[str], tokenizer: Tokenizer, n: int, seed: int) -> list[list[int]]:
    """``n`` prompts of 20-600 tokens: slices of code, of docstrings, and random ids."""
    generator = torch.Generator().manual_seed(seed)
    prompts = []
    texts = [Path(f).read_text(errors="replace") for f in files[:200]]
    for i in range(n):
        length = int(20 * math.exp(float(torch.rand(1, generator=generator)) * math.log(30)))
        if i % 5 == 4:
            ids = torch.randint(3, VOCAB, (length,), generator=generator).tolist()
        else:
            text = texts[int(torch.randint(len(texts), (1,), generator=generator))]
            ids = tokenizer.encode(text).ids
            start = int(torch.randint(max(len(ids) - length, 1), (1,), generator=generator))
            ids = ids[start : start + length]
        prompts.append([BOS_ID, *ids])
    return prompts


@torch.no_grad()
def measured_states(
    model: LlamaForCausalLM, prompts: list[list[int]], steps: int, seed: int
) -> list[torch.Tensor]:
    """Per prompt, the final (normed) hidden states that pick ``steps`` generated tokens.

    With random weights the next-token distribution is all but uniform (logits of std
    ~0.3 over 8,192 tokens), so a continuation of uniformly drawn tokens is what sampling
    would produce, and one forward pass over prompt and continuation gives the states at
    every step (sampling token by token took minutes on a busy machine; this takes seconds).
    """
    generator = torch.Generator().manual_seed(seed)
    states = []
    for prompt in prompts:
        continuation = torch.randint(3, VOCAB, (steps,), generator=generator).tolist()
        full = torch.tensor([prompt + continuation])
        hidden = model.model(input_ids=full).last_hidden_state[0].float()
        states.append(hidden[len(prompt) - 1 : len(prompt) - 1 + steps])
    return states


def shape_eos_row(model: LlamaForCausalLM, states: list[torch.Tensor], preset: Preset) -> dict:
    """Set the EOS row of the output head; returns what was solved for, for the record."""
    head = model.lm_head.weight.float()
    others = torch.cat([head[:EOS_ID], head[EOS_ID + 1 :]])
    flat = torch.cat(states)
    log_z = torch.logsumexp(flat @ others.T, dim=-1)  # the other tokens' normaliser
    mean = flat.mean(0)
    m = mean / mean.norm()
    per_prompt = torch.stack([s.mean(0) for s in states])
    centred = per_prompt - per_prompt.mean(0)
    centred = centred - (centred @ m)[:, None] * m  # the part m does not already explain
    d = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    s_m, s_d = flat @ m, flat @ d
    prompt_d = per_prompt @ d
    b = preset.log_spread / float(prompt_d.std().clamp_min(1e-6))
    owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(states)])

    def median_length(a: float) -> float:
        hazard = torch.sigmoid(a * s_m + b * s_d - log_z)
        per = torch.zeros(len(states)).index_add_(0, owner, hazard) / torch.bincount(owner)
        return float(torch.median(1.0 / per))

    # Median expected length falls as a grows (s_m > 0 on average): bisect for the target.
    low, high = -200.0, 200.0
    if float(s_m.mean()) < 0:
        m, s_m = -m, -s_m
    for _ in range(80):
        a = (low + high) / 2
        if median_length(a) > preset.median_tokens:
            low = a
        else:
            high = a
    a = (low + high) / 2
    row = (a * m + b * d).to(model.lm_head.weight.dtype)
    model.lm_head.weight[EOS_ID] = row
    return {"a": a, "b": b, "median_expected_tokens": median_length(a)}


def make(out: Path, preset_name: str, seed: int) -> None:
    preset = PRESETS[preset_name]
    out.mkdir(parents=True, exist_ok=True)
    files = corpus_files()
    tokenizer = train_tokenizer(files)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=SPECIAL[BOS_ID],
        eos_token=SPECIAL[EOS_ID],
        pad_token=SPECIAL[PAD_ID],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=preset.hidden,
        intermediate_size=preset.intermediate,
        num_hidden_layers=preset.layers,
        num_attention_heads=preset.heads,
        num_key_value_heads=preset.kv_heads,
        max_position_embeddings=8192,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    prompts = probe_prompts(files, tokenizer, 32, seed)
    with torch.no_grad():
        states = measured_states(model.float(), prompts, 64, seed)
        model = model.to(torch.bfloat16)
        shaping = shape_eos_row(model, states, preset)
    model.save_pretrained(out, safe_serialization=True)
    made = {"preset": preset_name, "seed": seed, "eos_shaping": shaping}
    (out / "latency_oracle_model.json").write_text(json.dumps(made, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make(args.out, args.preset, args.seed)


if __name__ == "__main__":
    main()
