"""The one steering formula (hooks.apply_steering): addition, clamp, ablation, bands, eager vs fast path."""

from __future__ import annotations

import pytest
import torch
from fixtures import DRAGON, PLANET, fast_path_and_eager_tokens, random_vector

from steering.core.hooks import (
    LayerSteering,
    SteeringPlan,
    apply_steering,
    steer,
    steering,
    steering_active,
    unit_vector,
)
from steering.decode.generation import SamplingSettings, SteeringSpec, generate

GREEDY = SamplingSettings(max_new_tokens=10, temperature=0.0)
Q1, Q2 = PLANET, DRAGON


@pytest.fixture(scope="module")
def vector():
    return random_vector(1, 4.0)


def _old_hook(vector, multipliers, steer_from):
    """The steering hook as it was before the other operators (verbatim arithmetic): the parity reference."""
    vector, multipliers = vector.float(), torch.as_tensor(multipliers, dtype=torch.float32)
    steer_from = torch.as_tensor(steer_from)

    def hook(module, args, kwargs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = torch.arange(hidden.shape[1]).unsqueeze(0)
        active = (positions >= steer_from[:, None]).to(hidden.dtype)
        scale = (multipliers.to(hidden.dtype)[:, None] * active).unsqueeze(-1)
        steered = hidden + scale * vector.to(hidden.dtype)
        return (steered,) + tuple(output[1:]) if isinstance(output, tuple) else steered

    return hook


def _hidden(seed=0, batch=3, seq=5, size=64):
    torch.manual_seed(seed)
    return torch.randn(batch, seq, size) * 3.0


# ---------------------------------------------------------------------------- the formula
def test_addition_is_bit_identical_to_the_old_hook(tiny_model, tiny_tokenizer, vector):
    from steering.core.prompts import chat_prompt

    ids = [chat_prompt(tiny_tokenizer, q).input_ids for q in (Q1, Q2)]
    width = max(map(len, ids))
    batch = torch.tensor([[0] * (width - len(i)) + i for i in ids] * 2)  # 4 rows
    steer_from = [3, 7, 0, 12]
    alphas = [2.5, -1.75, 0.0, 7.0]
    handle = tiny_model.model.layers[1].register_forward_hook(_old_hook(vector, alphas, steer_from), with_kwargs=True)
    try:
        with torch.inference_mode():
            old = tiny_model(input_ids=batch).logits
    finally:
        handle.remove()
    with torch.inference_mode(), steering(tiny_model, 1, vector, alphas, steer_from):
        new = tiny_model(input_ids=batch).logits
    assert torch.equal(old, new)
    # and generation through the CAA path keeps the same tokens as the old hook
    h = _hidden()
    v = vector
    old_h = h + ((torch.tensor([1.0, 0.0, -2.0])[:, None] * torch.ones(3, 5)).unsqueeze(-1)) * v
    zeros = torch.zeros(3)
    assert torch.equal(
        apply_steering(h, v, unit_vector(v), torch.tensor([1.0, 0.0, -2.0]), zeros, zeros, torch.ones(3, 5)), old_h
    )


def test_clamp_sets_the_projection_to_the_target_and_keeps_the_rest(vector):
    h, u = _hidden(), unit_vector(vector)
    targets = torch.tensor([5.0, -3.0, 0.25])
    active = steering_active(torch.arange(5)[None], torch.tensor([0, 2, 5]), h.dtype)
    out = apply_steering(h, vector, u, torch.zeros(3), torch.ones(3), targets, active)
    along = out @ u
    for row, start in enumerate([0, 2, 5]):
        assert torch.allclose(along[row, start:], targets[row].expand(5 - start), atol=1e-4)
        assert torch.equal(out[row, :start], h[row, :start])  # before steer_from: untouched
    orthogonal = lambda x: x - (x @ u)[..., None] * u  # noqa: E731
    assert torch.allclose(orthogonal(out), orthogonal(h), atol=1e-4)


def test_ablation_zeroes_the_projection(vector):
    h, u = _hidden(1), unit_vector(vector)
    h = h + 6.0 * u  # a sizeable component along u to remove
    out = apply_steering(h, vector, u, torch.zeros(3), torch.ones(3), torch.zeros(3), torch.ones(3, 5))
    assert (h @ u).abs().min() > 1.0
    assert (out @ u).abs().max() < 1e-4
    assert torch.allclose(out, h - (h @ u)[..., None] * u, atol=1e-5)


def test_clamp_in_bfloat16_reaches_the_target_to_bfloat16_precision(vector):
    h = (_hidden(4) * 10).to(torch.bfloat16)
    v = vector.to(torch.bfloat16)
    u = unit_vector(v)
    targets = torch.tensor([20.0, -7.5, 0.0])
    out = apply_steering(h, v, u, torch.zeros(3, dtype=torch.bfloat16), torch.ones(3), targets, torch.ones(3, 5))
    assert out.dtype == torch.bfloat16
    along = out.float() @ u.float()
    assert torch.allclose(along, targets[:, None].expand(3, 5), atol=0.6)  # |h| ~ 240: bf16 steps of ~1-2
    assert (h.float() @ u.float() - targets[:, None]).abs().max() > 5  # it did move


def test_rows_with_nothing_to_do_are_exactly_unchanged(vector):
    h = _hidden(2)
    out = apply_steering(
        h,
        vector,
        unit_vector(vector),
        torch.tensor([0.0, 3.0, 0.0]),
        torch.tensor([0.0, 0.0, 1.0]),
        torch.tensor([9.0, 0.0, 0.0]),
        torch.ones(3, 5),
    )
    assert torch.equal(out[0], h[0])  # add 0, project 0 (a target alone does nothing)
    assert not torch.equal(out[1], h[1]) and not torch.equal(out[2], h[2])


def test_zero_vector_has_zero_unit():
    assert torch.equal(unit_vector(torch.zeros(8)), torch.zeros(8))
    v = torch.tensor([3.0, 4.0])
    assert torch.allclose(unit_vector(v), torch.tensor([0.6, 0.8]))


def test_plan_checks_rows_and_layers(vector):
    from steering.core.hooks import plan_from
    from steering.errors import SteeringError

    plan = SteeringPlan.addition(1, vector, [1.0, 0.0])
    with pytest.raises(ValueError, match="a steering plan for 2 rows, 3 conversations"):
        plan_from(plan, None, 3)
    with pytest.raises(ValueError, match="multipliers are part of a SteeringPlan"):
        plan_from(plan, [1.0, 2.0], 2)
    with pytest.raises(SteeringError, match="layer 7 is out of range"):
        SteeringPlan.addition(7, vector, [1.0]).check(4)
    with pytest.raises(ValueError, match="one value per row"):
        LayerSteering.build(vector, [1.0, 2.0], project=[1.0])


# ---------------------------------------------------------------------------- in the model
def _plan(vector, layers=(1, 2)):
    """Three rows: CAA split over the band (+), unsteered, ablation (-); a fourth: clamp to -4."""
    rows = {}
    for layer in layers:
        rows[layer] = LayerSteering.build(
            vector, add=[3.0 / len(layers), 0.0, 0.0, 0.0], project=[0.0, 0.0, 1.0, 1.0], target=[0.0, 0.0, 0.0, -4.0]
        )
    return SteeringPlan(rows)


@torch.inference_mode()
def test_clamp_in_the_model_sets_the_block_output_projection(tiny_model, tiny_tokenizer, vector):
    from steering.core.prompts import chat_prompt

    prompt = chat_prompt(tiny_tokenizer, Q1)
    ids = torch.tensor([prompt.input_ids] * 4)
    seen = {}
    handle = tiny_model.model.layers[2].register_forward_hook(
        lambda m, a, out: seen.__setitem__("h", (out[0] if isinstance(out, tuple) else out).clone())
    )
    try:
        with steer(tiny_model, _plan(vector, layers=(2,)), [prompt.steer_from] * 4):
            tiny_model(input_ids=ids)
    finally:
        handle.remove()
    # the recording hook ran before the steering hook: apply the formula by hand and compare
    u = unit_vector(vector)
    with steer(tiny_model, _plan(vector, layers=(2,)), [prompt.steer_from] * 4) as hooks:
        out = hooks[0](tiny_model.model.layers[2], (), {}, (seen["h"],))[0]
    s = prompt.steer_from
    assert torch.allclose(out[3, s:] @ u, torch.full((ids.shape[1] - s,), -4.0), atol=1e-4)
    assert (out[2, s:] @ u).abs().max() < 1e-4
    assert torch.equal(out[1], seen["h"][1])


@torch.inference_mode()
def test_band_splits_the_strength_between_layers(tiny_model, tiny_tokenizer, vector):
    """Addition of 3 x v split over a band of two layers adds 1.5 x v at each (the residual stream
    carries both): the same as two single-layer hooks of 1.5, not 3 at one layer."""
    from steering.core.prompts import chat_prompt

    prompt = chat_prompt(tiny_tokenizer, Q1)
    ids, sf = torch.tensor([prompt.input_ids]), [prompt.steer_from]
    vector = vector * 0.05  # small: a large vector dominates the normalised stream either way
    plan = SteeringPlan({1: LayerSteering.build(vector, [1.5]), 2: LayerSteering.build(vector, [1.5])})
    with steer(tiny_model, plan, sf):
        by_plan = tiny_model(input_ids=ids).logits
    with steering(tiny_model, 1, vector, [1.5], sf), steering(tiny_model, 2, vector, [1.5], sf):
        by_hooks = tiny_model(input_ids=ids).logits
    with steering(tiny_model, 1, vector, [3.0], sf):
        single = tiny_model(input_ids=ids).logits
    assert torch.equal(by_plan, by_hooks)
    assert not torch.equal(single, by_plan)  # close (the stream carries the addition on), not the same
    gen = generate(tiny_model, tiny_tokenizer, [Q1], steer=plan, settings=GREEDY)
    assert gen.new_tokens == [GREEDY.max_new_tokens]


def test_rows_of_a_mixed_plan_equal_each_row_alone(tiny_model, tiny_tokenizer, vector):
    plan = _plan(vector)
    batch = generate(tiny_model, tiny_tokenizer, [Q1, Q1, Q2, Q1], steer=plan, settings=GREEDY)
    plain = generate(tiny_model, tiny_tokenizer, [Q1], settings=GREEDY)
    assert batch.token_ids[1] == plain.token_ids[0]
    for row, conv in enumerate([Q1, Q1, Q2, Q1]):
        alone = SteeringPlan(
            {
                layer: LayerSteering.build(
                    spec.vector, spec.add[row : row + 1], spec.project[row : row + 1], spec.target[row : row + 1]
                )
                for layer, spec in plan.layers.items()
            }
        )
        assert (
            generate(tiny_model, tiny_tokenizer, [conv], steer=alone, settings=GREEDY).token_ids[0]
            == batch.token_ids[row]
        )
    assert len({tuple(t) for t in batch.token_ids}) == 4


@pytest.mark.parametrize("compile", [False, True])
def test_fast_path_equals_eager_for_every_operator(tiny_tokenizer, vector, compile):
    convs = [Q1, Q1, Q2, Q1]
    plans = (_plan(vector), _plan(-vector, layers=(3,)), _plan(vector, layers=(0, 1, 2)))
    runs = [(convs, {"steer": plan}) for plan in plans]
    # and the CAA path (SteeringSpec + multipliers) through the same fast path
    runs.append((convs[:3], {"multipliers": [2.0, 0.0, -2.0], "steer": SteeringSpec(1, vector)}))
    pairs, leftover = fast_path_and_eager_tokens(tiny_tokenizer, runs, GREEDY, compile)
    for fast, eager in pairs:
        assert fast == eager
    assert leftover["add"] == 0.0 and leftover["project"] == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_fast_path_equals_eager_for_every_operator(tiny_tokenizer, vector):
    from fixtures import make_tiny_model

    from steering.decode.fast_path import FastPath

    model = make_tiny_model(len(tiny_tokenizer)).cuda()
    fast = FastPath(model, compile=False, bucket=64, cuda_graphs=True)
    try:
        convs = [Q1, Q1, Q2, Q1]
        for plan in (_plan(vector), _plan(-vector, layers=(3,)), _plan(vector, layers=(0, 1, 2)), _plan(vector)):
            eager = generate(model, tiny_tokenizer, convs, steer=plan, settings=GREEDY)
            assert fast.generate(tiny_tokenizer, convs, steer=plan, settings=GREEDY).token_ids == eager.token_ids
        assert len(fast.graphs.graphs) == 3  # one capture per set of steered layers; operators and values are data
    finally:
        fast.steering.remove()
