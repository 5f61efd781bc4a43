"""The simulated GPU against the measurements it is built from."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sim_support import SHARED_DATA

from latency_oracle.sim.engine.gpu_profiles import MeasuredLayerCosts, load_measured
from latency_oracle.sim.engine.hardware import AcceleratorProfile, accelerator_profile
from latency_oracle.sim.engine.perf_model import ModelDoesNotFit, PerfModel

MODELS = ("Llama-2-7b-hf", "Llama-2-70b-hf")


def _without(measured: MeasuredLayerCosts, keep: np.ndarray) -> MeasuredLayerCosts:
    return dataclasses.replace(
        measured,
        tokens=measured.tokens[keep],
        layer_ms={tp: ms[keep] for tp, ms in measured.layer_ms.items()},
        embedding_ms={tp: ms[keep] for tp, ms in measured.embedding_ms.items()},
    )


@pytest.mark.parametrize("gpu", ["H100", "A100"])
@pytest.mark.parametrize("model", MODELS)
def test_non_attention_step_time_matches_held_out_measurements(gpu: str, model: str) -> None:
    """Every other measured batch size is held out, predicted from the rest, compared.

    The rare misses (4 of 2,064 held-out points) are single measurements off the line
    through their own neighbours (264 tokens at TP 2 on the H100: 177 us between 145 and
    200): noise no interpolation can recover. They stay under 15%.
    """
    measured = load_measured(gpu, model, SHARED_DATA)
    index = np.arange(len(measured.tokens))
    held_out = index[1:-1:2]
    spec = accelerator_profile(gpu, model, SHARED_DATA).spec
    full = AcceleratorProfile(gpu, spec, measured)
    from_rest = AcceleratorProfile(gpu, spec, _without(measured, np.setdiff1d(index, held_out)))
    tokens = measured.tokens[held_out]
    for tp in measured.tp_degrees():
        errors = from_rest.layer_ms(tp, tokens) / full.layer_ms(tp, tokens) - 1
        within = np.abs(errors) <= 0.10
        assert within.mean() >= 0.99, (tp, tokens[~within], errors[~within])
        assert np.abs(errors).mean() < 0.02
        assert np.abs(errors).max() < 0.15


def test_h100_prefills_4k_tokens_two_to_four_times_faster_than_a100() -> None:
    h100 = PerfModel(accelerator_profile("H100", "Llama-2-7b-hf", SHARED_DATA))
    a100 = PerfModel(accelerator_profile("A100", "Llama-2-7b-hf", SHARED_DATA))
    ratio = a100.prefill_step_ms(4096) / h100.prefill_step_ms(4096)
    measured_ratio = a100.non_attention_ms(4096) / h100.non_attention_ms(4096)
    assert 2.0 <= ratio <= 4.0
    assert ratio == pytest.approx(measured_ratio, rel=0.1)


@pytest.mark.parametrize("target", ["A100", "A40"])
def test_derived_profile_predicts_a_measured_gpu_from_h100(target: str) -> None:
    """The spec-ratio rule, applied to GPUs we did measure, lands within 25% of them."""
    measured = accelerator_profile(target, "Llama-2-7b-hf", SHARED_DATA)
    h100 = load_measured("H100", "Llama-2-7b-hf", SHARED_DATA)
    derived = AcceleratorProfile(target, measured.spec, h100)
    assert derived.derived and not measured.derived
    tokens = np.array([1.0, 8, 64, 256, 1024, 2048, 4096])
    ratio = derived.layer_ms(1, tokens) / measured.layer_ms(1, tokens)
    assert np.all(np.abs(ratio - 1) < 0.25), ratio


def test_derived_accelerators_follow_their_spec_sheet() -> None:
    """Bandwidth sets decode speed, FLOP/s sets large prefills, memory sets KV capacity."""
    model = "Llama-2-7b-hf"
    h100, l4, mi300x = (
        PerfModel(accelerator_profile(name, model, SHARED_DATA))
        for name in ("H100", "L4", "MI300X")
    )
    assert l4.profile.source == "derived from H100" and h100.profile.source == "measured"
    decode = {m: m.non_attention_ms(1) for m in (h100, l4, mi300x)}
    assert decode[l4] / decode[h100] == pytest.approx(3350 / 300, rel=0.05)
    assert decode[mi300x] < decode[h100]
    prefill = l4.non_attention_ms(4096) / h100.non_attention_ms(4096)
    assert prefill == pytest.approx(989 / 121, rel=0.15)
    assert l4.kv_capacity_tokens < h100.kv_capacity_tokens < mi300x.kv_capacity_tokens


def test_attention_terms_follow_the_roofline() -> None:
    model = PerfModel(accelerator_profile("H100", "Llama-2-7b-hf", SHARED_DATA))
    short, long = model.step_cost(1, 0, 1_000), model.step_cost(1, 0, 2_000)
    assert long.decode_attention_ms == pytest.approx(2 * short.decode_attention_ms)
    # 4,096-token prompt, causal: 4 * L * d * n^2 / 2 FLOPs at 45% of 989 TFLOP/s.
    flops = 4 * 32 * 4096 * 4096 * 4096 / 2
    cost = model.step_cost(4096, 4096 * 4096 / 2, 0)
    assert cost.prefill_attention_ms == pytest.approx(flops / (989e12 * 0.45) * 1e3)
    assert model.step_ms(4096, 4096 * 4096 / 2, 0) == pytest.approx(cost.total_ms)


def test_kv_capacity_is_memory_left_by_the_weights() -> None:
    model = PerfModel(accelerator_profile("H100", "Llama-2-7b-hf", SHARED_DATA))
    kv_bytes_per_token = 2 * 32 * 32 * 128 * 2
    expected = (80e9 * 0.9 - model.weight_bytes) / kv_bytes_per_token
    assert model.kv_capacity_tokens == pytest.approx(expected, abs=1)
    assert 6.5e9 < model.weight_bytes / 2 < 7e9
    with pytest.raises(ModelDoesNotFit, match="does not fit"):
        PerfModel(accelerator_profile("H100", "Llama-2-70b-hf", SHARED_DATA), tp=1)
    assert PerfModel(accelerator_profile("H100", "Llama-2-70b-hf", SHARED_DATA), tp=4)


def test_unknown_names_are_rejected_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known types"):
        accelerator_profile("Voodoo5", "Llama-2-7b-hf", SHARED_DATA)
    with pytest.raises(ValueError, match="known models"):
        accelerator_profile("H100", "gpt-5", SHARED_DATA)
    with pytest.raises(ValueError, match="measured degrees"):
        PerfModel(accelerator_profile("H100", "Llama-2-7b-hf", SHARED_DATA), tp=3)
