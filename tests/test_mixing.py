"""Mixing two behaviors (issue 14 item 4) on the tiny random Llama: the added pane gets a1 v1 + a2 v2 at one
layer, the subtracted pane the negatives, the unsteered pane nothing."""

from __future__ import annotations

import pytest
import torch
from fixtures import make_tiny_engine, make_tiny_model

from steering.config import ModelSettings, load_config, override
from steering.core.mixing import Mix, cosine, cosine_note, mixed_vector
from steering.core.recipe import Recipe
from steering.decode.generation import SamplingSettings, SteeringSpec, generate
from steering.errors import SteeringError
from steering.io.recipe_defaults import save_defaults
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet

GREEDY = SamplingSettings(max_new_tokens=6)
Q = [{"role": "user", "content": "What's your favorite planet?"}]


def vectors(seed: int) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {layer: torch.randn(64, generator=g) * 0.05 for layer in range(4)}


@pytest.fixture
def engine(tmp_path, tiny_tokenizer):
    config = override(load_config(), vectors_dir=tmp_path / "vectors", models={"tiny": {"layer": 1, "multiplier": 2.0}})
    for name, seed in (("alpha", 1), ("beta", 2)):
        save_safetensors(VectorSet(vectors(seed), {"model": "tiny"}), tmp_path / "vectors" / name / "tiny.safetensors")
    return make_tiny_engine(tiny_tokenizer, settings=ModelSettings(name="tiny", cuda_graphs=False), config=config)


@pytest.fixture(scope="module")
def reference(tiny_tokenizer):
    return make_tiny_model(len(tiny_tokenizer))  # same weights (seed 0), no hooks


def test_mixing_equals_adding_the_summed_vector(engine, reference, tiny_tokenizer):
    v1, v2 = vectors(1)[1], vectors(2)[1]
    mixed = engine.compare(
        Q, layer=1, multiplier=2.0, settings=GREEDY, behavior="alpha", mix=Mix(1.5, behavior="beta")
    ).token_ids
    expected = generate(
        reference,
        tiny_tokenizer,
        [Q] * 3,
        multipliers=[1.0, 0.0, -1.0],
        steer=SteeringSpec(1, 2.0 * v1 + 1.5 * v2),
        settings=GREEDY,
    ).token_ids
    assert mixed == expected
    plain = generate(reference, tiny_tokenizer, [Q], settings=GREEDY).token_ids[0]
    assert mixed[1] == plain  # the unsteered pane gets nothing
    single = engine.compare(Q, layer=1, multiplier=2.0, settings=GREEDY, behavior="alpha").token_ids
    assert mixed[0] != single[0] and mixed[2] != single[2]  # the second vector changed the steered panes


def test_alpha2_zero_is_single_behavior_steering(engine, tmp_path):
    # a tuned recipe that is not plain addition (a clamp over a band): a mix of a2 = 0 must keep it
    save_defaults(
        tmp_path / "vectors" / "alpha" / "tiny.defaults.json",
        Recipe(layer=2, strength=3.0, band=3, plus="clamp", minus="add"),
    )
    engine.forget_vectors("alpha")
    single = engine.compare(Q, settings=GREEDY, behavior="alpha").token_ids
    assert engine.compare(Q, settings=GREEDY, behavior="alpha", mix=Mix(0.0, behavior="beta")).token_ids == single
    kept = engine.steering_plan([1.0, 0.0, -1.0], behavior="alpha", mix=Mix(0.0, behavior="beta"))
    assert sorted(kept.layers) == [1, 2, 3] and kept.layers[2].project.tolist() == [1.0, 0.0, 0.0]  # the clamp
    # while mixing, both are CAA additions at the anchor layer instead
    plan = engine.steering_plan([1.0, 0.0, -1.0], behavior="alpha", mix=Mix(0.5, behavior="beta"))
    assert list(plan.layers) == [2]
    assert torch.allclose(plan.layers[2].vector, 3.0 * vectors(1)[2] + 0.5 * vectors(2)[2])
    assert plan.layers[2].add.tolist() == [1.0, 0.0, -1.0]


def test_relative_unit_recipe_is_converted_to_a_multiplier(engine):
    recipe = Recipe(layer=1, strength=0.2, unit="relative")
    plan = engine.steering_plan([1.0, 0.0, -1.0], recipe=recipe, behavior="alpha", mix=Mix(-1.0, behavior="beta"))
    v1, v2 = vectors(1)[1], vectors(2)[1]
    alpha1 = 0.2 * engine.hidden_norm(1) / float(v1.norm())
    assert torch.allclose(plan.layers[1].vector, alpha1 * v1 - v2, atol=1e-5)


def test_compare_batch_and_an_explicit_second_vector(engine, reference, tiny_tokenizer):
    v2 = torch.ones(64) * 0.05
    rows = engine.compare_batch(
        ["Hi", "Tell me a story."], layer=1, multiplier=1.0, settings=GREEDY, behavior="alpha", mix=Mix(2.0, vector=v2)
    )
    for prompt, row in zip(["Hi", "Tell me a story."], rows):
        conv = [{"role": "user", "content": prompt}]
        expected = generate(
            reference,
            tiny_tokenizer,
            [conv] * 3,
            multipliers=[1.0, 0.0, -1.0],
            steer=SteeringSpec(1, vectors(1)[1] + 2.0 * v2),
            settings=GREEDY,
        ).texts
        assert [row["added"], row["unsteered"], row["subtracted"]] == expected
    plan = engine.steering_plan([1.0, 0.0, -1.0], layer=1, multiplier=1.0, behavior="alpha", mix=Mix(2.0, vector=v2))
    assert torch.allclose(plan.layers[1].vector, vectors(1)[1] + 2.0 * v2)


def test_mix_errors_are_one_line(engine):
    with pytest.raises(SteeringError, match="no 'gamma' vectors for tiny"):
        engine.compare(Q, settings=GREEDY, behavior="alpha", mix=Mix(1.0, behavior="gamma"))
    with pytest.raises(SteeringError, match="multiplier"):
        engine.compare(Q, settings=GREEDY, behavior="alpha", mix=Mix(1e9, behavior="beta"))
    with pytest.raises(SteeringError, match="different sizes"):
        engine.compare(Q, settings=GREEDY, behavior="alpha", mix=Mix(1.0, vector=torch.ones(10)))


def test_cosine_and_its_note():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert cosine(a, b) == pytest.approx(2**-0.5)
    assert cosine(a, -a) == pytest.approx(-1.0) and cosine(a, torch.zeros(2)) == 0.0
    assert (
        cosine_note(a, b, "refusal", "beta", 13)
        == "cos(refusal, beta) at layer 13 = +0.71: similar directions: they add up"
    )
    assert "opposite directions" in cosine_note(a, -a, "x", "y", 1)
    assert "nearly independent" in cosine_note(a, torch.tensor([0.0, 1.0]), "x", "y", 1)
    assert torch.equal(mixed_vector(a, 2.0, b, -1.0), torch.tensor([1.0, -1.0]))


def test_app_mix_control_parsing(engine):
    """steering/ui/mix.py: what the app's "Mix with" control and α₂ slider give a chat turn."""
    from steering.ui.mix import NO_MIX, mix_choices, mix_note, parse_mix

    assert parse_mix(engine, NO_MIX, 3.0, {}, 1) == (None, "")
    assert parse_mix(engine, "beta", 0.0, {}, 1) == (None, "")  # α₂ = 0: no mix
    mix, words = parse_mix(engine, "beta", 2.5, {}, 1, first="alpha")
    assert words == " + 2.5×beta" and mix.multiplier == 2.5 and torch.equal(mix.vector, vectors(2)[1])
    with pytest.raises(SteeringError, match="mixed with itself"):
        parse_mix(engine, "alpha", 1.0, {}, 1, first="alpha")
    with pytest.raises(SteeringError, match="mixing strength α₂ 1e\\+09 is out of range"):
        parse_mix(engine, "beta", 1e9, {}, 1)
    assert mix_choices([("Alpha — a", "alpha")], {"Uploaded: x.safetensors": "/tmp/x"}) == [
        NO_MIX,
        ("Alpha — a", "alpha"),
        "Uploaded: x.safetensors",
    ]
    expected = f"{cosine(vectors(1)[2], vectors(2)[2]):+.2f}"
    assert mix_note(engine, "alpha", "beta", {}, 2).startswith(f"cos(alpha, beta) at layer 2 = {expected}")
    assert mix_note(engine, "alpha", NO_MIX, {}, 2) == ""
    assert mix_note(engine, "alpha", "gamma", {}, 2).startswith("⚠️ no 'gamma' vectors")


def test_api_and_app_mix_by_the_same_rules(engine):
    """/compare_mix and the app's control agree: "(none)" (the app's label), "" and null mean no mix; a
    behavior mixed with itself is refused by both, and its cosine line does not say they add up; α₂ has the
    slider's range (±10 here) in both."""
    import gradio as gr

    import app
    from steering.ui.mix import NO_MIX, mix_note, parse_mix

    demo = app.build_app(engine, engine.config)
    compare_mix = next(b.fn for b in demo.fns.values() if getattr(b.fn, "__name__", "") == "compare_mix")

    def run(**mix):
        return list(list(compare_mix(Q[0]["content"], 2.0, 1, "alpha", 6, 0.0, 1.0, 0, "", **mix))[-1])

    plain = run()
    for spelling in (NO_MIX, "", None):
        assert run(mix_behavior=spelling, mix_multiplier=2.0) == plain
    mixed = run(mix_behavior="beta", mix_multiplier=2.0)
    assert mixed[0] != plain[0] and mixed[1] == plain[1]
    with pytest.raises(gr.Error, match="'alpha' is mixed with itself"):
        run(mix_behavior="alpha", mix_multiplier=1.0)
    with pytest.raises(SteeringError, match="'alpha' is mixed with itself"):
        parse_mix(engine, "alpha", 1.0, {}, 1, first="alpha")
    note = mix_note(engine, "alpha", "alpha", {}, 1)
    assert "mixed with itself" in note and "add up" not in note and not note.startswith("cos(")
    with pytest.raises(gr.Error, match="between -10 and 10 \\(the app's slider range\\), got 50"):
        run(mix_behavior="beta", mix_multiplier=50.0)
    with pytest.raises(SteeringError, match="between -10 and 10"):
        parse_mix(engine, "beta", -10.5, {}, 1, first="alpha", alpha_max=10.0)
    assert run(mix_behavior="beta", mix_multiplier=-10.0) != plain  # the slider's end is accepted
