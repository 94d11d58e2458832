"""The behavior meter (steering/ui/meter.py) on a tiny random Llama: its values are the engine's own
projection h_L . u / n_L of every generated token, recomputed here with a full (uncached) forward pass."""

from __future__ import annotations

import pytest
import torch
from fixtures import random_vector

from steering.core.hooks import steer, unit_vector
from steering.core.layers import decoder_layers
from steering.core.prompts import build_messages, chat_prompt
from steering.core.recipe import Recipe
from steering.decode.generation import SamplingSettings
from steering.ui.meter import Meter, PaneReading, meter_html, meter_scale, shade, token_pieces

LAYER, HIDDEN = 1, 64
GREEDY = SamplingSettings(max_new_tokens=6)
CONV = [{"role": "user", "content": "What's your favorite planet?"}]


@pytest.fixture(scope="module")
def vector():
    return random_vector(seed=3, scale=2.0, size=HIDDEN)


def direct_projections(tiny_engine, vector, layer, multiplier, ids_per_row, recipe=None):
    """Each row's h_L . u / n_L at the positions that chose its generated tokens, from ONE uncached forward
    pass over prompt + generated tokens, with the same steering plan, read before block L's steering."""
    tok, model = tiny_engine.lm.tokenizer, tiny_engine.lm.model
    prompt = chat_prompt(tok, build_messages(CONV, None))
    plan = tiny_engine.steering_plan((1.0, 0.0, -1.0), recipe, None, vector, layer, multiplier)
    u = unit_vector(vector.float())
    out = []
    for row, ids in enumerate(ids_per_row):
        seen: dict[str, torch.Tensor] = {}

        def keep(module, args, output, seen=seen):
            seen["h"] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        handle = decoder_layers(model)[layer].register_forward_hook(keep)
        one_row = type(plan)(
            {
                k: type(s)(s.vector, s.add[row : row + 1], s.project[row : row + 1], s.target[row : row + 1])
                for k, s in plan.layers.items()
            }
        )
        full = torch.tensor([prompt.input_ids + ids])
        try:
            with torch.inference_mode(), steer(model, one_row, [prompt.steer_from]):
                model(input_ids=full)
        finally:
            handle.remove()
        start = len(prompt.input_ids) - 1  # the position whose logits chose generated token 0
        along = torch.matmul(seen["h"][0, start : start + len(ids)].float(), u)  # apply_steering's h.u
        out.append((along / tiny_engine.hidden_norm(layer)).tolist())
    return out


def test_meter_values_equal_the_engines_projection(tiny_engine, vector):
    meter = Meter.for_engine(tiny_engine, vector, LAYER)
    result = tiny_engine.compare(CONV, vector, LAYER, 3.0, GREEDY, meter=meter)
    values = meter.values(result.new_tokens)
    assert [len(v) for v in values] == result.new_tokens == [6, 6, 6]
    expected = direct_projections(tiny_engine, vector, LAYER, 3.0, result.token_ids)
    for got, want in zip(values, expected):
        assert got == pytest.approx(want, abs=2e-4)
    # the panes differ (the steering moved the later tokens), and the values are not all zero
    assert values[0] != values[2] and any(abs(v) > 1e-3 for v in values[1])


def test_meter_reads_before_the_layers_own_steering(tiny_engine, vector):
    """Read after block L's addition, the + row would be shifted by alpha |v| / n_L at every token."""
    meter = Meter.for_engine(tiny_engine, vector, LAYER)
    result = tiny_engine.compare(CONV, vector, LAYER, 3.0, GREEDY, meter=meter)
    plus = meter.values(result.new_tokens)[0]
    shifted = [v + 3.0 * float(vector.norm()) / tiny_engine.hidden_norm(LAYER) for v in plus]
    direct = direct_projections(tiny_engine, vector, LAYER, 3.0, result.token_ids)[0]
    assert plus == pytest.approx(direct, abs=2e-4) and shifted != pytest.approx(direct, abs=1e-2)


def test_meter_with_a_band_recipe_and_clamp(tiny_engine, vector):
    """A band of 3 layers around the anchor, clamp on the + side: the anchor's own reading still matches
    (the band's lower layer acts on it, the anchor's clamp does not)."""
    recipe = Recipe(layer=2, strength=1.5, band=3, plus="clamp", minus="add")
    meter = Meter.for_engine(tiny_engine, vector, 2)
    result = tiny_engine.compare(CONV, vector, 2, 1.5, GREEDY, recipe=recipe, meter=meter)
    expected = direct_projections(tiny_engine, vector, 2, 1.5, result.token_ids, recipe)
    for got, want in zip(meter.values(result.new_tokens), expected):
        assert got == pytest.approx(want, abs=2e-4)


def test_meter_leaves_the_answers_unchanged_and_removes_its_hook(tiny_engine, vector):
    plain = tiny_engine.compare(CONV, vector, LAYER, 3.0, GREEDY)
    metered = tiny_engine.compare(CONV, vector, LAYER, 3.0, GREEDY, meter=Meter.for_engine(tiny_engine, vector, LAYER))
    assert metered.texts == plain.texts
    assert not decoder_layers(tiny_engine.lm.model)[LAYER]._forward_hooks


def test_meter_drops_steps_after_a_row_finished():
    meter = Meter(torch.ones(4), 0, 2.0)
    meter.steps = [torch.tensor([2.0, 4.0]), torch.tensor([6.0, 8.0]), torch.tensor([1.0, 1.0])]
    assert meter.values([3, 1]) == [[1.0, 3.0, 0.5], [2.0]]
    with pytest.raises(ValueError, match="3 rows recorded|2 rows recorded"):
        meter.values([1, 1, 1])
    with pytest.raises(ValueError, match="positive"):
        Meter(torch.ones(4), 0, 0.0)


def test_token_pieces_join_to_the_decoded_text(tiny_tokenizer):
    ids = tiny_tokenizer("Héllo, wörld", add_special_tokens=False)["input_ids"]
    pieces = token_pieces(tiny_tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == tiny_tokenizer.decode(ids, skip_special_tokens=True)
    assert "" in pieces  # a byte that only starts a multi-byte character shows nothing by itself


def test_meter_html_shades_each_token_on_a_shared_scale():
    readings = [
        PaneReading("Added", ["I", " can't"], [0.2, 0.4]),
        PaneReading("Unsteered", ["Sure", "<b>"], [-0.1, 0.0]),
    ]
    page = meter_html(readings, 9)
    assert meter_scale(readings) == 0.4
    assert page.count('class="meter-token"') == 4
    assert 'data-value="0.4000"' in page and shade(0.4, 0.4) in page  # the darkest orange
    assert shade(-0.1, 0.4).startswith("rgba(37, 99, 235") and shade(0.0, 0.4) == "transparent"
    assert "&lt;b&gt;" in page and "<b>" not in page  # token text is escaped
    assert page.count("<polyline") == 2 and "layer 9" in page
