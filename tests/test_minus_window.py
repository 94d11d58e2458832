"""Where the subtracted side steers (Recipe.minus_window, steering_active's window): only the first N positions from
the end of the instruction; the positions after them are not steered, on every path (eager hooks, the fast path's
persistent hooks, the scheduler's batch hooks); `tune --minus-windows` searches it."""

from __future__ import annotations

import math

import pytest
import torch
from fixtures import DRAGON, PLANET, block_outputs

from steering.core.hooks import LayerSteering, SteeringPlan, steer, steering_active
from steering.core.recipe import Recipe
from steering.decode.generation import SamplingSettings, generate
from steering.errors import SteeringError
from steering.io.vector_set import VectorSet

GREEDY = SamplingSettings(max_new_tokens=10, temperature=0.0)
Q1, Q2 = PLANET, DRAGON


@pytest.fixture(scope="module")
def small():
    """A vector of norm 0.6 against hidden norms ~0.25 of the tiny model: it changes the answers."""
    torch.manual_seed(5)
    v = torch.randn(64)
    return v / v.norm() * 0.6


def test_steering_active_stops_after_the_window():
    positions = torch.arange(8)[None]
    steer_from = torch.tensor([2, 2, 5])
    got = steering_active(positions, steer_from, torch.float32, torch.tensor([3.0, math.inf, 1.0]))
    assert got.tolist() == [
        [0, 0, 1, 1, 1, 0, 0, 0],  # positions 2, 3, 4
        [0, 0, 1, 1, 1, 1, 1, 1],  # inf: every position from steer_from (CAA)
        [0, 0, 0, 0, 0, 1, 0, 0],  # position 5 only
    ]
    assert torch.equal(steering_active(positions, steer_from, torch.float32), got.new_tensor(
        [[0, 0, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1]]))  # fmt: skip
    # one decoding step (seq 1) at an absolute position: inside / outside the window
    step = steering_active(torch.tensor([[4], [4], [6]]), steer_from, torch.float32, torch.tensor([3.0, 1.0, 2.0]))
    assert step.tolist() == [[1.0], [0.0], [1.0]]


def test_recipe_minus_window_limits_only_the_subtracted_rows():
    torch.manual_seed(0)
    vset = VectorSet({layer: torch.randn(16) for layer in range(4)}, {})
    recipe = Recipe(layer=2, strength=1.5, band=3, plus="clamp", minus="add", minus_window=8)
    for spec in recipe.plan(vset, [1.5, 0.0, -1.5], 4).layers.values():
        assert spec.window.tolist() == [math.inf, math.inf, 8.0]
        assert spec.add.tolist() == pytest.approx([0.0, 0.0, -0.5])  # the strength is unchanged
    plain = Recipe(layer=2, strength=1.5, band=3, plus="clamp", minus="add")
    assert all(s.window.isinf().all() for s in plain.plan(vset, [1.5, 0.0, -1.5], 4).layers.values())
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert "-add (first 8 positions)" in recipe.describe()
    for bad in (0, 2.5, True, "8"):
        with pytest.raises(SteeringError, match="minus_window: expected an integer >= 1 or null"):
            Recipe(layer=2, strength=1.0, minus_window=bad)
    with pytest.raises(ValueError, match="number of positions steered"):
        LayerSteering.build(vset.vector(0), [1.0], window=[0.0])


def _window_plan(vector, window, layers=(1, 2)):
    """Four rows: add -2 windowed, add -2 everywhere (CAA), unsteered, add +2 windowed."""
    n = len(layers)
    return SteeringPlan(
        {
            layer: LayerSteering.build(
                vector, add=[-2.0 / n, -2.0 / n, 0.0, 2.0 / n], window=[window, math.inf, math.inf, window]
            )
            for layer in layers
        }
    )


def _prompt_and_answer(tok):
    """Four rows of the templated question plus five answer tokens (teacher-forced), and the first steered position."""
    from steering.core.prompts import chat_prompt

    prompt = chat_prompt(tok, Q1)
    answer = tok("The planet Mars is red", add_special_tokens=False).input_ids[:5]
    ids = torch.tensor([prompt.input_ids + answer] * 4)
    assert ids.shape[1] - prompt.steer_from >= 5
    return ids, prompt.steer_from


@torch.inference_mode()
def test_positions_after_the_window_are_not_steered(tiny_model, tiny_tokenizer, small):
    ids, s = _prompt_and_answer(tiny_tokenizer)
    plain, steered = block_outputs(tiny_model, 2, ids, _window_plan(small, 2.0, layers=(2,)), [s] * 4)
    moved = steered - plain
    assert torch.allclose(moved[0, s : s + 2], (-2.0 * small).expand(2, -1), atol=1e-6)  # inside: steered
    assert torch.equal(steered[0, s + 2 :], plain[0, s + 2 :])  # after the window: exactly the block's own output
    assert torch.equal(steered[0, :s], plain[0, :s])
    assert torch.allclose(moved[1, s:], (-2.0 * small).expand(ids.shape[1] - s, -1), atol=1e-6)  # CAA: every one


def test_generation_window_differs_from_caa_and_every_path_agrees(tiny_tokenizer, small):
    from fixtures import make_tiny_model

    from steering.core.prompts import chat_prompt
    from steering.decode.fast_path import FastPath

    header = len(chat_prompt(tiny_tokenizer, Q1).input_ids) - chat_prompt(tiny_tokenizer, Q1).steer_from
    model = make_tiny_model(len(tiny_tokenizer))  # own copy: the fast path registers hooks on it
    convs = [Q1, Q1, Q1, Q2]
    plan = _window_plan(small, float(header + 2))  # the prompt's end and the first two answer positions
    eager = generate(model, tiny_tokenizer, convs, steer=plan, settings=GREEDY)
    assert eager.token_ids[0] != eager.token_ids[1]  # the window changed the answer ...
    plain = generate(model, tiny_tokenizer, [Q1], settings=GREEDY)
    assert eager.token_ids[0] != plain.token_ids[0]  # ... and it still steers
    assert eager.token_ids[2] == plain.token_ids[0]
    for kind in (dict(compile=False), dict(compile=True, backend="eager")):
        fast = FastPath(model, bucket=64, **kind)
        try:
            assert fast.generate(tiny_tokenizer, convs, steer=plan, settings=GREEDY).token_ids == eager.token_ids
            assert bool(fast.steering.window.isinf().all())  # cleared after the generation
        finally:
            fast.steering.remove()


def test_scheduler_batch_hooks_equal_eager_for_a_window(tiny_model, tiny_tokenizer, small):
    from steering.decode.batch_steering import BatchSteering

    ids, s = _prompt_and_answer(tiny_tokenizer)
    plan = _window_plan(small, 2.0)
    with torch.inference_mode():
        with steer(tiny_model, plan, [s] * 4):
            eager = tiny_model(input_ids=ids).logits
        halves = [
            SteeringPlan(
                {
                    k: LayerSteering.build(
                        v.vector, v.add[a:b], v.project[a:b], v.target[a:b], v.renorm[a:b], v.window[a:b]
                    )
                    for k, v in plan.layers.items()
                }
            )
            for a, b in ((0, 2), (2, 4))
        ]
        positions = torch.arange(ids.shape[1])[None].expand(4, -1)
        with BatchSteering(tiny_model, [(0, 2, halves[0], [s, s], None), (2, 4, halves[1], [s, s], None)]):
            batched = tiny_model(input_ids=ids, position_ids=positions).logits
    assert torch.allclose(batched, eager, atol=1e-5)
    assert not torch.allclose(eager[0, -1], eager[1, -1], atol=1e-4)  # the window changes the last logits


def test_the_apps_note_says_where_the_subtracted_side_steers():
    from types import SimpleNamespace

    from steering.ui.checks import norm_note

    engine = SimpleNamespace(lm=SimpleNamespace(num_layers=30), relative_norm=lambda v, layer: 0.5)
    recipe = Recipe(layer=13, strength=1.5, band=3, plus="clamp", minus="add", minus_window=8)
    note = norm_note(engine, torch.ones(4), 13, 1.5, recipe)
    assert (
        "−α adds −α × the vector, split over the 3 layers at the first 8 positions from the end of your message only"
        in note
    )
    normed = norm_note(engine, torch.ones(4), 13, 1.5, Recipe(layer=13, strength=1.5, minus="add_norm"))
    assert "−α adds −α × the vector, keeping each hidden state's size" in normed
    assert "first" not in norm_note(engine, torch.ones(4), 13, 1.5, Recipe(layer=13, strength=1.5))


@pytest.mark.parametrize("kind", ["eager", "static"])
def test_schedulers_give_windowed_and_norm_kept_rows_what_they_get_alone(tiny_tokenizer, small, kind):
    """Two users in one batch of the scheduler (eager batch hooks, or the static-cache fast path's persistent
    hooks): one with a subtracted-side window, one with add_norm; each gets the tokens it gets alone."""
    import time

    from fixtures import make_tiny_lm

    from steering.decode.fast_path import FastPath
    from steering.decode.scheduler import Request, Scheduler

    lm = make_tiny_lm(tiny_tokenizer)
    fast = FastPath(lm.model, compile=False, bucket=16) if kind == "static" else None
    try:
        conv = [{"role": "user", "content": "Hi there, tell me a story about a dragon."}]
        windowed = _window_plan(small, 3.0)
        normed = SteeringPlan(
            {layer: LayerSteering.build(small, [2.0, 0.0, -2.0], renorm=[1.0, 0.0, 1.0]) for layer in (1, 2)}
        )
        requests = [
            Request([conv] * 4, windowed, SamplingSettings(max_new_tokens=12)),
            Request([conv] * 3, normed, SamplingSettings(max_new_tokens=10)),
        ]
        with lm.lock:
            expected = [
                generate(lm.model, lm.tokenizer, r.conversations, steer=r.plan, settings=r.settings).token_ids
                for r in requests
            ]
        assert expected[0][0] != expected[0][1]  # the window made a difference
        sched = Scheduler(lm, fast_path=fast)
        with lm.lock:  # submitted while the worker waits: one batch
            tickets = [sched.submit(r) for r in requests]
            time.sleep(0.05)
        assert [t.wait(60).token_ids for t in tickets] == expected
        assert sched.stats.most_requests == 2
    finally:
        if fast is not None:
            fast.steering.remove()
