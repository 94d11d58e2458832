"""Norm-preserving steering (apply_steering's `renorm`, the recipe operator "add_norm"): the steered position keeps
its norm, the direction moves as with addition; renorm 0 is exactly the old formula; eager hooks, the fast path's
persistent hooks and the scheduler's batch hooks give the same answers; Recipe and `tune` offer it."""

from __future__ import annotations

import pytest
import torch
from fixtures import DRAGON, PLANET, block_outputs, fast_path_and_eager_tokens, random_vector

from steering.core.hooks import LayerSteering, SteeringPlan, apply_steering, steer, steering_active, unit_vector
from steering.core.recipe import Recipe
from steering.decode.generation import SamplingSettings
from steering.io.vector_set import VectorSet

GREEDY = SamplingSettings(max_new_tokens=10, temperature=0.0)
Q1, Q2 = PLANET, DRAGON


@pytest.fixture(scope="module")
def vector():
    return random_vector(3, 4.0)


@pytest.fixture(scope="module")
def small():
    """A vector of norm 0.4: the tiny model's hidden states have norms ~0.25, so +-1 x this moves them without
    drowning them (a vector much larger than h makes h + a v ~ a v whatever the rescaling)."""
    torch.manual_seed(4)
    v = torch.randn(64)
    return v / v.norm() * 0.4


def _hidden(seed=0, batch=3, seq=5, size=64):
    torch.manual_seed(seed)
    return torch.randn(batch, seq, size) * 3.0


# ---------------------------------------------------------------------------- the formula
def test_renorm_keeps_each_steered_positions_norm_and_moves_its_direction(vector):
    h, u = _hidden(), unit_vector(vector)
    add = torch.tensor([2.0, -1.5, 2.0])
    renorm = torch.tensor([1.0, 1.0, 0.0])
    steer_from = torch.tensor([0, 2, 0])
    active = steering_active(torch.arange(5)[None], steer_from, h.dtype)
    zeros = torch.zeros(3)
    out = apply_steering(h, vector, u, add, zeros, zeros, active, renorm)
    plain = apply_steering(h, vector, u, add, zeros, zeros, active)
    for row, start in enumerate(steer_from.tolist()):
        assert torch.equal(out[row, :start], h[row, :start])  # before steer_from: untouched
        if renorm[row]:
            # |h''| = |h| at every steered position, and h'' points where h + a v points
            assert torch.allclose(out[row, start:].norm(dim=-1), h[row, start:].norm(dim=-1), rtol=1e-5)
            direction = plain[row, start:] / plain[row, start:].norm(dim=-1, keepdim=True)
            assert torch.allclose(out[row, start:] / out[row, start:].norm(dim=-1, keepdim=True), direction, atol=1e-6)
            # addition alone would have changed the norm (so the test can see the rescaling)
            assert (plain[row, start:].norm(dim=-1) - h[row, start:].norm(dim=-1)).abs().min() > 1e-2
            # the component along v still moves with the sign of the addition
            assert ((out[row, start:] @ u - h[row, start:] @ u) * add[row].sign()).min() > 0
    assert torch.equal(out[2], plain[2])  # renorm 0: the addition as it is


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_renorm_zero_is_bit_identical_to_the_formula_without_it(vector, dtype):
    h, v = (_hidden(5) * 10).to(dtype), vector.to(dtype)
    u = unit_vector(v)
    args = (
        torch.tensor([1.0, 0.0, -2.0], dtype=dtype),
        torch.tensor([0.0, 1.0, 0.0]),
        torch.tensor([0.0, 4.0, 0.0]),
        torch.ones(3, 5),
    )
    without = apply_steering(h, v, u, *args)
    with_zeros = apply_steering(h, v, u, *args, torch.zeros(3))
    assert with_zeros.dtype == dtype and torch.equal(with_zeros, without)
    # an all-zero row stays exactly h with renorm = 1 too (h + 0 rescaled by |h| / |h| = 1 up to float32 rounding)
    kept = apply_steering(h, v, u, torch.zeros(3, dtype=dtype), torch.zeros(3), torch.zeros(3), torch.ones(3, 5),
                          torch.ones(3))  # fmt: skip
    assert torch.allclose(kept.float(), h.float(), rtol=1e-6 if dtype == torch.float32 else 1e-2)


def test_layer_steering_carries_renorm_through_build_and_stack(vector):
    a = SteeringPlan({1: LayerSteering.build(vector, [-1.0], renorm=[1.0])})
    b = SteeringPlan({1: LayerSteering.build(vector, [2.0, 0.0])})
    stacked = SteeringPlan.stack([a, None, b])
    assert stacked is not None
    assert stacked.layers[1].renorm.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert stacked.layers[1].add.tolist() == [-1.0, 0.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="renorm and window need one value per row"):
        LayerSteering.build(vector, [1.0, 2.0], renorm=[1.0])


# ---------------------------------------------------------------------------- the recipe operator
def _vset(size=64):
    torch.manual_seed(0)
    return VectorSet({layer: torch.randn(size) for layer in range(4)}, {"method": "mean-diff"})


def test_recipe_add_norm_rows_are_addition_split_over_the_band_with_renorm():
    vset = _vset()
    recipe = Recipe(layer=2, strength=1.5, band=3, plus="clamp", minus="add_norm")
    plan = recipe.plan(vset, [1.5, 0.0, -1.5], 4)
    assert sorted(plan.layers) == [1, 2, 3]
    for spec in plan.layers.values():
        assert spec.add.tolist() == pytest.approx([0.0, 0.0, -0.5])  # -1.5 x v split over 3 layers, as "add"
        assert spec.project.tolist() == [1.0, 0.0, 0.0]  # the added side's clamp
        assert spec.renorm.tolist() == [0.0, 0.0, 1.0]  # only the subtracted row keeps its norm
    plain = Recipe(layer=2, strength=1.5, band=3, plus="clamp", minus="add").plan(vset, [1.5, 0.0, -1.5], 4)
    assert all(spec.renorm.tolist() == [0.0, 0.0, 0.0] for spec in plain.layers.values())
    assert "-add_norm" in recipe.describe()
    assert Recipe.from_dict(recipe.to_dict()) == recipe


# ---------------------------------------------------------------------------- in the model, every path
def _norm_plan(vector, layers=(1, 2)):
    """Four rows: add_norm +2 (split), unsteered, add -2 (split, no renorm), add_norm -2 (split)."""
    n = len(layers)
    return SteeringPlan(
        {
            layer: LayerSteering.build(vector, add=[2.0 / n, 0.0, -2.0 / n, -2.0 / n], renorm=[1.0, 0.0, 0.0, 1.0])
            for layer in layers
        }
    )


@torch.inference_mode()
def test_in_the_model_the_block_output_keeps_its_unsteered_norm(tiny_model, tiny_tokenizer, small):
    from steering.core.prompts import chat_prompt

    prompt = chat_prompt(tiny_tokenizer, Q1)
    ids, s = torch.tensor([prompt.input_ids] * 4), prompt.steer_from
    plain, steered = block_outputs(tiny_model, 2, ids, _norm_plan(small, layers=(2,)), [s] * 4)
    for row in (0, 3):  # add_norm rows: the norm of every steered position is the unsteered one
        assert torch.allclose(steered[row, s:].norm(dim=-1), plain[row, s:].norm(dim=-1), rtol=1e-5)
        assert not torch.allclose(steered[row, s:], plain[row, s:], atol=1e-3)  # but the state moved
    assert torch.equal(steered[1], plain[1])  # unsteered row
    assert (steered[2, s:].norm(dim=-1) - plain[2, s:].norm(dim=-1)).abs().max() > 1e-2  # plain addition: not kept
    assert torch.equal(steered[:, :s], plain[:, :s])  # before steer_from: nothing


@pytest.mark.parametrize("compile", [False, True])
def test_fast_path_equals_eager_for_add_norm(tiny_tokenizer, small, compile):
    runs = [([Q1, Q1, Q2, Q1], {"steer": plan}) for plan in (_norm_plan(small), _norm_plan(-small, layers=(3,)))]
    pairs, leftover = fast_path_and_eager_tokens(tiny_tokenizer, runs, GREEDY, compile)
    for fast, eager in pairs:
        assert fast == eager
        # renorm acted: the add_norm row differs from the plain addition row of the same strength
        assert eager[3] != eager[2]
    assert leftover["renorm"] == 0.0  # cleared after the generation


def test_scheduler_batch_hooks_equal_eager_for_add_norm(tiny_model, tiny_tokenizer, small):
    from steering.core.prompts import chat_prompt
    from steering.decode.batch_steering import BatchSteering

    prompt = chat_prompt(tiny_tokenizer, Q1)
    ids, s = torch.tensor([prompt.input_ids] * 4), prompt.steer_from
    plan = _norm_plan(small)
    with torch.inference_mode():
        with steer(tiny_model, plan, [s] * 4):
            eager = tiny_model(input_ids=ids).logits
        # the scheduler: rows 0-1 one request, rows 2-3 another, each its own plan (the renorm rows on both)
        halves = [
            SteeringPlan(
                {
                    k: LayerSteering.build(v.vector, v.add[a:b], v.project[a:b], v.target[a:b], v.renorm[a:b])
                    for k, v in plan.layers.items()
                }
            )  # fmt: skip
            for a, b in ((0, 2), (2, 4))
        ]
        positions = torch.arange(ids.shape[1])[None].expand(4, -1)
        with BatchSteering(tiny_model, [(0, 2, halves[0], [s, s], None), (2, 4, halves[1], [s, s], None)]):
            batched = tiny_model(input_ids=ids, position_ids=positions).logits
    assert torch.allclose(batched, eager, atol=1e-5)
    assert not torch.allclose(eager[2], eager[3], atol=1e-3)  # renorm changes the logits


# ---------------------------------------------------------------------------- tune offers it
def test_tune_searches_minus_add_norm_as_its_own_side_job():
    from steering.evaluation.tune import SearchSpace, side_jobs

    space = SearchSpace(
        layers=[1], bands=[3], plus=["clamp"], minus=["add", "add_norm"], strengths=[1.5], unit="multiplier"
    ).check(4)
    settings, needs = side_jobs(space, 1)
    downs = {needs[s][1] for s in settings}
    assert {(d.op, d.strength) for d in downs} == {("add", -1.5), ("add_norm", -1.5)}
    from steering.evaluation.tune import VectorSource

    sources = [VectorSource(None, "v", "b" * 64, None, None)]
    keys = {d.key(sources) for d in downs}
    assert len(keys) == 2 and any("|add_norm|-1.5|" in k for k in keys)  # not the -add job's cached answers
    norm_job = next(d for d in downs if d.op == "add_norm")
    spec = norm_job.recipe().plan(_vset(), [-1.5], 4).layers[1]
    assert spec.renorm.tolist() == [1.0] and spec.add.tolist() == pytest.approx([-0.5])
