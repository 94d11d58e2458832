"""Steering recipes (steering/core/recipe.py), the per-model defaults file and the Engine's use of them."""

from __future__ import annotations

import json

import pytest
import torch

from steering.config import load_config, override
from steering.core.recipe import Recipe
from steering.decode.generation import SamplingSettings, SteeringSpec, generate
from steering.errors import SteeringError
from steering.io.recipe_defaults import defaults_path, load_defaults, save_defaults
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet

GREEDY = SamplingSettings(max_new_tokens=8)
Q1 = [{"role": "user", "content": "What's your favorite planet?"}]


def _vectors(layers=4, size=64, seed=3):
    torch.manual_seed(seed)
    return VectorSet(
        {layer: torch.randn(size) * (layer + 1) * 0.2 for layer in range(layers)},
        {"model": "tiny", "read_mode": "answer-mean"},
    )


# ---------------------------------------------------------------------------- the recipe
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"plus": "multiply"}, "plus: expected one of add, clamp, ablate, add_norm, found 'multiply'"),
        ({"unit": "percent"}, "unit: expected one of multiplier, relative, found 'percent'"),
        ({"band": 0}, "band: expected an integer >= 1, found 0"),
        ({"strength": float("nan")}, "strength: expected a finite number, found nan"),
        ({"layer": -1}, "layer: expected an integer >= 0, found -1"),
    ],
)
def test_bad_recipes_are_one_line_errors(changes, message):
    with pytest.raises(SteeringError, match="^steering recipe: " + message.replace("(", r"\(").replace(")", r"\)")):
        Recipe(**{"layer": 2, "strength": 1.0, **changes})


def test_from_dict_names_the_key():
    with pytest.raises(SteeringError, match="^f.json: recipe: unknown key 'layers'"):
        Recipe.from_dict({"layers": [1], "layer": 1, "strength": 1}, where="f.json: recipe")
    with pytest.raises(SteeringError, match="missing key 'strength'"):
        Recipe.from_dict({"layer": 1})
    recipe = Recipe(layer=3, strength=0.2, unit="relative", band=3, plus="clamp", minus="ablate", method="pca")
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_band_is_centred_and_clipped():
    assert Recipe(layer=5, strength=1, band=3).layers(30) == [4, 5, 6]
    assert Recipe(layer=5, strength=1, band=4).layers(30) == [4, 5, 6, 7]
    assert Recipe(layer=0, strength=1, band=3).layers(30) == [0, 1]
    assert Recipe(layer=29, strength=1, band=3).layers(30) == [28, 29]
    with pytest.raises(SteeringError, match="layer 30 is out of range: the model has layers 0..29"):
        Recipe(layer=30, strength=1).layers(30)


def test_addition_splits_the_strength_over_the_band():
    vset = _vectors()
    plan = Recipe(layer=2, strength=3.0, band=3).plan(vset, [3.0, 0.0, -3.0], 4)
    assert sorted(plan.layers) == [1, 2, 3]
    for spec in plan.layers.values():
        assert torch.equal(spec.add, torch.tensor([1.0, 0.0, -1.0]))  # 3 / 3 layers, signed per row
        assert torch.equal(spec.project, torch.zeros(3))
        assert torch.equal(spec.vector, vset.vector(2))  # one vector (the anchor's) at every layer
    own = Recipe(layer=2, strength=3.0, band=3, shared_vector=False).plan(vset, [3.0], 4)
    assert all(torch.equal(own.layers[layer].vector, vset.vector(layer)) for layer in (1, 2, 3))


def test_one_layer_addition_is_the_paper_multiplier_exactly():
    vset = _vectors()
    plan = Recipe(layer=1, strength=2.7).plan(vset, [2.7, 0.0, -2.7, 0.1], 4)
    assert plan.layers[1].add.tolist() == torch.tensor([2.7, 0.0, -2.7, 0.1]).tolist()


@pytest.mark.parametrize("alpha", [-0.5, -2.7])
def test_a_negative_alpha_swaps_the_panes_signs(alpha):
    """With α < 0 the added and subtracted panes came out identical: the subtracted side's factor was
    strength / |strength| = -1, which flipped the negative row back to positive (review, issue 12)."""
    vset = _vectors()
    plan = Recipe(layer=1, strength=alpha).plan(vset, [alpha, 0.0, -alpha], 4)
    assert plan.layers[1].add.tolist() == pytest.approx([alpha, 0.0, -alpha])
    band = Recipe(layer=2, strength=alpha, band=3, plus="clamp").plan(vset, [alpha, 0.0, -alpha], 4)
    first, _, last = band.layers[2].add.tolist()
    assert first == pytest.approx(alpha / 3) and last == 0.0  # the negative row adds; the positive one clamps
    assert band.layers[2].project.tolist() == [0.0, 0.0, 1.0]


def test_relative_units_scale_with_the_hidden_norm():
    vset = _vectors()
    norms = {0: 10.0, 1: 20.0, 2: 40.0, 3: 80.0}
    plan = Recipe(layer=2, strength=0.5, unit="relative", band=2).plan(vset, [0.5, -0.5], 4, hidden_norm=norms.get)
    assert sorted(plan.layers) == [2, 3]
    for layer, spec in plan.layers.items():
        added = spec.add[0] * spec.vector
        # |added| = 0.5 x norm / 2 layers; the second row adds the opposite
        assert float(added.norm()) == pytest.approx(0.5 * norms[layer] / 2, rel=1e-5)
        assert float(spec.add[1]) == pytest.approx(-float(spec.add[0]))
    with pytest.raises(SteeringError, match="unit 'relative' needs the hidden-state norms"):
        Recipe(layer=2, strength=0.5, unit="relative").plan(vset, [1.0], 4)


def test_clamp_and_ablate_rows():
    vset = _vectors()
    v = vset.vector(1)
    plan = Recipe(layer=1, strength=2.0, plus="clamp", minus="ablate").plan(vset, [2.0, 0.0, -2.0], 4)
    spec = plan.layers[1]
    assert spec.add.tolist() == [0.0, 0.0, 0.0]
    assert spec.project.tolist() == [1.0, 0.0, 1.0]
    assert spec.target[0] == pytest.approx(2.0 * float(v.norm()))  # component set to 2 x |v|
    assert spec.target[2] == 0.0
    rel = Recipe(layer=1, strength=0.25, unit="relative", plus="add", minus="clamp").plan(
        vset, [-0.25], 4, hidden_norm=lambda layer: 12.0
    )
    assert rel.layers[1].target.tolist() == [-3.0] and rel.layers[1].project.tolist() == [1.0]


# ---------------------------------------------------------------------------- the defaults file
def test_defaults_file_round_trip_and_errors(tmp_path):
    path = defaults_path(tmp_path, "refusal", "tiny")
    assert path == tmp_path / "refusal" / "tiny.defaults.json"
    assert load_defaults(path) is None
    recipe = Recipe(layer=2, strength=0.3, unit="relative", band=3, plus="add", minus="ablate")
    save_defaults(path, recipe, {"model": "tiny", "scores": {"score": 1.5}})
    loaded = load_defaults(path)
    assert loaded.recipe == recipe and loaded.info["scores"] == {"score": 1.5} and "written" in loaded.info
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(SteeringError, match="tiny.defaults.json: not a readable JSON defaults file"):
        load_defaults(path)
    path.write_text(json.dumps({"recipe": {"layer": 2, "strength": 1, "plus": "boost"}}), encoding="utf-8")
    with pytest.raises(SteeringError, match=r"tiny.defaults.json: recipe: plus: expected one of add, clamp, ablate"):
        load_defaults(path)
    with pytest.raises(SteeringError, match="behavior"):
        defaults_path(tmp_path, "../etc", "tiny")


# ---------------------------------------------------------------------------- the engine
@pytest.fixture()
def setup(tmp_path, tiny_tokenizer):
    from fixtures import PATHS, make_engine

    config = load_config()
    config = override(config, vectors_dir=str(tmp_path))
    save_safetensors(_vectors(), tmp_path / "refusal" / "tiny.safetensors")
    return lambda: make_engine(tiny_tokenizer, PATHS["eager"], config), tmp_path


def test_engine_uses_config_without_a_defaults_file(setup, tiny_tokenizer):
    make, _ = setup
    engine = make()
    config = engine.config_defaults
    assert engine.recipe() == Recipe(layer=config.layer, strength=config.multiplier)
    assert engine.defaults == config
    # compare() with nothing but the conversation = the paper's comparison at the config's layer / multiplier
    layer = min(config.layer, 3)
    vector = engine.vectors_for("refusal").vector(layer)
    got = engine.compare(Q1, layer=layer, settings=GREEDY)
    expected = generate(
        engine.lm.model,
        tiny_tokenizer,
        [Q1] * 3,
        steer=SteeringSpec(layer, vector),
        multipliers=[config.multiplier, 0.0, -config.multiplier],
        settings=GREEDY,
    )
    assert got.token_ids == expected.token_ids


def test_engine_prefers_the_defaults_file(setup, tiny_tokenizer):
    make, tmp_path = setup
    recipe = Recipe(layer=2, strength=0.4, unit="relative", band=3, plus="clamp", minus="ablate")
    save_defaults(defaults_path(tmp_path, "refusal", "tiny"), recipe)
    engine = make()
    assert engine.recipe() == recipe
    assert (engine.defaults.layer, engine.defaults.multiplier) == (2, 0.4)
    assert engine.defaults.read_mode == engine.config_defaults.read_mode
    got = engine.compare(Q1, settings=GREEDY)
    plan = recipe.plan(engine.vectors_for("refusal"), [0.4, 0.0, -0.4], 4, hidden_norm=engine.hidden_norm)
    expected = generate(engine.lm.model, tiny_tokenizer, [Q1] * 3, steer=plan, settings=GREEDY)
    assert got.token_ids == expected.token_ids
    plain = generate(engine.lm.model, tiny_tokenizer, [Q1], settings=GREEDY)
    assert got.token_ids[1] == plain.token_ids[0]
    # the app's call (explicit vector / layer / multiplier) keeps the recipe's operators and band
    v = engine.vectors_for("refusal").vector(1)
    batch = engine.compare_batch(["What's your favorite planet?"], v, 1, 0.4, GREEDY)
    plan = recipe.with_overrides(layer=1).plan(v, [0.4, 0.0, -0.4], 4, hidden_norm=engine.hidden_norm)
    expected = generate(engine.lm.model, tiny_tokenizer, [Q1] * 3, steer=plan, settings=GREEDY)
    assert [batch[0][k] for k in ("added", "unsteered", "subtracted")] == expected.texts


def test_a_broken_defaults_file_is_reported_when_used(setup):
    make, tmp_path = setup
    defaults_path(tmp_path, "refusal", "tiny").write_text("[]", encoding="utf-8")
    engine = make()  # starts, with config.yaml's defaults
    assert engine.defaults == engine.config_defaults
    with pytest.raises(SteeringError, match="tiny.defaults.json: expected an object with a 'recipe' key"):
        engine.compare(Q1, settings=GREEDY)


def test_steering_test_command_uses_the_recipe(setup, tmp_path, monkeypatch, tiny_tokenizer):
    import steering.cli as cli

    make, vectors = setup
    recipe = Recipe(layer=2, strength=0.4, unit="relative", band=3, plus="clamp", minus="ablate")
    save_defaults(defaults_path(vectors, "refusal", "tiny"), recipe)
    engine = make()
    monkeypatch.setattr("steering.cli.loading.load_engine", lambda args, config: engine)
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps(["What's your favorite planet?"]))
    out = tmp_path / "out"
    assert (
        cli.main(
            ["test", "--questions", str(questions), "--multipliers", "0.4", "--out", str(out), "--max-new-tokens", "8"]
        )
        == 0
    )
    payload = json.loads((out / "test_results_x0.4.json").read_text())
    assert payload["settings"]["recipe"] == recipe.to_dict()
    plan = recipe.plan(engine.vectors_for("refusal"), [0.4, 0.0, -0.4], 4, hidden_norm=engine.hidden_norm)
    expected = generate(engine.lm.model, tiny_tokenizer, [Q1] * 3, steer=plan, settings=GREEDY)
    assert [payload["results"][0][k] for k in ("added", "unsteered", "subtracted")] == expected.texts


# ---------------------------------------------------------------------------- separate subtracted-side strength
def test_strength_minus_scales_only_the_subtracted_rows():
    vset = _vectors()
    plan = Recipe(layer=2, strength=3.0, band=3, strength_minus=1.5).plan(vset, [3.0, 0.0, -3.0], 4)
    for spec in plan.layers.values():
        assert spec.add.tolist() == [1.0, 0.0, -0.5]  # +3 / 3 layers; -1.5 / 3 layers
    same = Recipe(layer=2, strength=3.0, band=3).plan(vset, [3.0, 0.0, -3.0], 4)
    assert same.layers[2].add.tolist() == [1.0, 0.0, -1.0]  # None: both sides at `strength`, as before
    v = vset.vector(1)
    clamp = Recipe(layer=1, strength=2.0, plus="clamp", minus="clamp", strength_minus=0.5).plan(vset, [2.0, -2.0], 4)
    assert clamp.layers[1].target[0] == pytest.approx(2.0 * float(v.norm()))
    assert clamp.layers[1].target[1] == pytest.approx(-0.5 * float(v.norm()))
    off = Recipe(layer=1, strength=2.0, strength_minus=0.0).plan(vset, [2.0, -2.0], 4)
    assert off.layers[1].add.tolist() == [2.0, 0.0]  # 0: the subtracted rows are left unsteered


def test_strength_minus_keeps_its_ratio_under_a_strength_override():
    recipe = Recipe(layer=1, strength=1.5, strength_minus=1.0)
    assert (recipe.minus_strength, Recipe(layer=1, strength=1.5).minus_strength) == (1.0, 1.5)
    scaled = recipe.with_overrides(strength=3.0)
    assert (scaled.strength, scaled.strength_minus) == (3.0, 2.0)
    plan = scaled.plan(_vectors(), [3.0, -3.0], 4)
    assert plan.layers[1].add.tolist() == [3.0, -2.0]
    assert "strength 1.5 (+) / 1 (-)" in recipe.describe() and "(+)" not in Recipe(layer=1, strength=1.5).describe()


def test_strength_minus_in_files_is_optional_and_checked(tmp_path):
    path = defaults_path(tmp_path, "refusal", "tiny")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"recipe": {"layer": 2, "strength": 1.5, "plus": "clamp"}}), encoding="utf-8")
    assert load_defaults(path).recipe.strength_minus is None  # files written before the key existed
    save_defaults(path, Recipe.from_dict({"layer": 2, "strength": 1.5, "plus": "clamp", "strength_minus": 1}))
    loaded = load_defaults(path).recipe
    assert loaded.strength_minus == 1.0 and isinstance(loaded.strength_minus, float)
    with pytest.raises(
        SteeringError,
        match=r"^steering recipe: strength_minus: expected a finite number >= 0 or "
        r"null, found -1.0$",
    ):
        Recipe(layer=2, strength=1.5, strength_minus=-1.0)
    path.write_text(json.dumps({"recipe": {"layer": 2, "strength": 1.5, "strength_minus": "big"}}), encoding="utf-8")
    with pytest.raises(SteeringError, match="tiny.defaults.json: recipe: strength_minus: expected a finite number"):
        load_defaults(path)


def test_engine_applies_the_subtracted_side_strength(setup, tiny_tokenizer):
    make, tmp_path = setup
    recipe = Recipe(layer=2, strength=1.0, band=3, plus="clamp", minus="add", strength_minus=0.25)
    save_defaults(defaults_path(tmp_path, "refusal", "tiny"), recipe)
    engine = make()
    assert engine.recipe() == recipe
    got = engine.compare(Q1, settings=GREEDY)
    vset = engine.vectors_for("refusal")
    tied = Recipe(layer=2, strength=1.0, band=3, plus="clamp", minus="add")  # no strength_minus
    expected = generate(
        engine.lm.model, tiny_tokenizer, [Q1] * 3, steer=tied.plan(vset, [1.0, 0.0, -0.25], 4), settings=GREEDY
    )
    assert got.token_ids == expected.token_ids
    # the plan behind the panes: the subtracted row adds -0.25 x v split over the band (not -1 x v)
    plan = engine.steering_plan([1.0, 0.0, -1.0])
    for spec in plan.layers.values():
        assert spec.add.tolist() == pytest.approx([0.0, 0.0, -0.25 / 3])
        assert spec.project.tolist() == [1.0, 0.0, 0.0]
    # the app's slider (multiplier override) scales both sides, keeping their ratio
    assert engine.steering_plan([-1.0], multiplier=2.0).layers[2].add.tolist() == pytest.approx([-0.5 / 3])
    doubled = engine.compare(Q1, multiplier=2.0, settings=GREEDY)
    expected = generate(
        engine.lm.model, tiny_tokenizer, [Q1] * 3, steer=tied.plan(vset, [2.0, 0.0, -0.5], 4), settings=GREEDY
    )
    assert doubled.token_ids == expected.token_ids
