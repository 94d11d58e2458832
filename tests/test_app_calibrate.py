"""The Calibrate tab's plain helpers (steering/ui/calibrate.py): no model, no server."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from steering.config import Config, override
from steering.errors import SteeringError
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet
from steering.io.vector_store import load_vectors
from steering.ui import calibrate as ui_calibrate
from steering.ui.calibrate import (
    Sweep,
    ab_behaviors,
    ab_items,
    cell_setting,
    default_layers,
    default_multipliers,
    format_list,
    parse_layers,
    parse_multipliers,
    question_set,
    run_sweep,
)
from steering.ui.calibrate_views import compare_sets

HIDDEN, LAYERS = 8, 30


class FakeEngine(SimpleNamespace):
    def __init__(self, behaviors=None):
        super().__init__(lm=SimpleNamespace(num_layers=LAYERS), config=Config(), sets=behaviors or {})

    def load_vector_file(self, path):
        return load_vectors(path, "m").validate(HIDDEN, LAYERS)

    def vectors_for(self, behavior):
        return self.sets[behavior]


def test_default_grid_is_centred_on_the_default_and_stays_in_range():
    assert default_layers(9, 30) == [5, 7, 9, 11, 13]
    assert default_layers(0, 30) == [0, 2, 4, 6, 8]
    assert default_layers(29, 30) == [21, 23, 25, 27, 29]
    assert default_layers(2, 4) == [0, 1, 2, 3]  # a 4-layer model: every layer once
    assert default_layers(13, 32, count=3) == [11, 13, 15]
    assert default_multipliers(2.0) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert format_list(default_multipliers(1.5)) == "-3, -1.5, 0, 1.5, 3"


def test_layer_and_multiplier_lists_are_parsed_with_one_line_errors():
    assert parse_layers("9, 5 7;7", LAYERS) == [5, 7, 9]
    assert parse_multipliers("2, -2 0, −1") == [-2.0, -1.0, 0.0, 2.0]
    with pytest.raises(SteeringError, match="'x' is not a whole number"):
        parse_layers("5, x", LAYERS)
    with pytest.raises(SteeringError, match="30 is out of range"):
        parse_layers("30", LAYERS)
    with pytest.raises(SteeringError, match="at least one value"):
        parse_layers("  ", LAYERS)
    with pytest.raises(SteeringError, match="at most 12"):
        parse_layers(",".join(map(str, range(13))), LAYERS)
    with pytest.raises(SteeringError, match="'nan' is not a finite number"):
        parse_multipliers("1, nan")


def test_absurd_multipliers_are_refused_with_the_configured_limit():
    from steering.core.limits import Limits

    for text in ("1e308", "2, 1e30", "-101"):
        with pytest.raises(SteeringError, match=r"Multipliers: .* is out of range: expected between -100 and 100"):
            parse_multipliers(text)
    assert parse_multipliers("100, -100") == [-100.0, 100.0]
    with pytest.raises(SteeringError, match="between -5 and 5"):
        parse_multipliers("6", Limits(max_abs_multiplier=5))
    engine = FakeEngine({"refusal": VectorSet({5: torch.ones(HIDDEN)}, source="refusal")})
    engine.config = override(Config(), {"limits.max_abs_multiplier": 3})
    with pytest.raises(SteeringError, match="between -3 and 3"):
        run_sweep(engine, "refusal", {}, "5", "4", "refusal", 4)


def test_a_sweep_with_nan_results_is_a_one_line_failure(monkeypatch):
    engine = FakeEngine({"refusal": VectorSet({5: torch.ones(HIDDEN), 7: torch.ones(HIDDEN)}, source="refusal")})
    monkeypatch.setattr(ui_calibrate, "ab_items", lambda d, b, n: ["item"] * n)
    monkeypatch.setattr(
        ui_calibrate,
        "sweep_items",  # (layers, multipliers, questions)
        lambda eng, vset, layers, mults, items: np.array([[[0.5], [float("nan")]], [[0.5], [0.5]]]),
    )
    with pytest.raises(SteeringError, match=r"NaN\) at 1 of 4 cells, e.g. layer 5 α 2") as info:
        run_sweep(engine, "refusal", {}, "5, 7", "0, 2", "refusal", 4)
    assert "\n" not in str(info.value)


def test_cell_maps_to_layer_and_alpha():
    sweep = Sweep([5, 9], [-4.0, 0.0, 2.0, 20.0], np.full((2, 4), 0.5))
    headers, rows = sweep.table()
    assert headers == ["layer", "α = -4", "α = 0", "α = 2", "α = 20"]
    assert rows == [[5, 0.5, 0.5, 0.5, 0.5], [9, 0.5, 0.5, 0.5, 0.5]]
    state = sweep.state()
    layer, alpha, message = cell_setting([1, 3], state, alpha_max=10)
    assert (layer, alpha) == (9, 2.0) and "+α pane" in message
    layer, alpha, message = cell_setting((0, 1), state, alpha_max=10)
    assert (layer, alpha) == (5, 4.0) and "−α pane" in message  # the slider starts at 0: −4 is the −α pane
    assert cell_setting([0, 2], state, 10)[1] == 0.0
    assert cell_setting([0, 4], state, 10)[1] == 10.0  # clipped to the slider
    assert cell_setting([0, 0], state, 10) is None  # the layer column
    assert cell_setting([5, 1], state, 10) is None
    assert cell_setting([0, 1], None, 10) is None  # no sweep yet


def test_questions_follow_the_chat_behavior(tmp_path):
    for name in ("refusal", "sycophancy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "test_ab.json").write_text(
            json.dumps(
                [
                    {
                        "question": f"Q{i}\n\nChoices:\n (A) yes\n (B) no",
                        "answer_matching_behavior": "(A)",
                        "answer_not_matching_behavior": "(B)",
                    }
                    for i in range(5)
                ]
            )
        )
    (tmp_path / "empty").mkdir()
    available = ab_behaviors(tmp_path)
    assert available == ["refusal", "sycophancy"]
    assert len(ab_items(tmp_path, "refusal", 3)) == 3
    with pytest.raises(SteeringError, match="no A/B questions for 'empty'"):
        ab_items(tmp_path, "empty", 3)
    assert question_set("sycophancy", {}, "refusal", available) == "sycophancy"
    assert question_set("Uploaded: x.gguf", {"Uploaded: x.gguf": "/tmp/x.gguf"}, "refusal", available) == "refusal"


def test_sweep_checks_layers_before_running(monkeypatch):
    engine = FakeEngine({"refusal": VectorSet({5: torch.ones(HIDDEN), 7: torch.ones(HIDDEN)}, source="refusal")})
    with pytest.raises(SteeringError, match="no layer 9"):
        run_sweep(engine, "refusal", {}, "5, 9", "0, 2", "refusal", 4)
    monkeypatch.setattr(ui_calibrate, "ab_items", lambda d, b, n: ["item"] * n)
    calls = []

    def fake_sweep(eng, vset, layers, multipliers, items):
        calls.append((layers, multipliers, len(items)))
        return np.zeros((len(layers), len(multipliers), len(items)))

    monkeypatch.setattr(ui_calibrate, "sweep_items", fake_sweep)
    sweep = run_sweep(engine, "refusal", {}, "7, 5", "2, -2, 0", "refusal", 4)
    assert calls == [([5, 7], [-2.0, 0.0, 2.0], 4)]
    assert sweep.values.shape == (2, 3)


def test_compare_vectors_validates_both_sides(tmp_path):
    a = save_safetensors(VectorSet({1: torch.ones(HIDDEN), 2: torch.ones(HIDDEN)}), tmp_path / "a.safetensors")
    b = save_safetensors(VectorSet({2: -torch.ones(HIDDEN), 3: torch.ones(HIDDEN)}), tmp_path / "b.safetensors")
    engine = FakeEngine({"refusal": VectorSet({1: torch.ones(HIDDEN)}, source="refusal")})
    fig = compare_sets(engine, ("refusal", None), (None, str(a)), {}, max_mb=1)
    assert fig.axes[0].get_title() == "refusal vs a.safetensors"
    uploads = {"Uploaded: b.safetensors": str(b)}
    fig = compare_sets(engine, (None, str(a)), ("Uploaded: b.safetensors", None), uploads, max_mb=1)
    assert list(fig.axes[0].lines[0].get_ydata()) == pytest.approx([-1.0])
    with pytest.raises(SteeringError, match="^refusal and b.safetensors have no layer in common$"):
        compare_sets(engine, ("refusal", None), (None, str(b)), {}, max_mb=1)
    wrong = save_safetensors(VectorSet({1: torch.ones(HIDDEN + 1)}), tmp_path / "wrong.safetensors")
    with pytest.raises(SteeringError, match="^wrong.safetensors: layer 1: vector size 9") as info:
        compare_sets(engine, ("refusal", None), (None, str(wrong)), {}, max_mb=1)
    assert str(tmp_path) not in str(info.value)
    with pytest.raises(SteeringError, match="choose a vector set"):
        compare_sets(engine, ("refusal", None), (None, None), {}, max_mb=1)


def test_heatmap_colorbar_label_fits_beside_the_bar():
    """The Calibrate colorbar label was cut off ("mean p(match) / (p(A) + p(B")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from steering.evaluation.plots import plot_heatmap

    for count in (1, 2, 5, 12):
        fig = plot_heatmap(np.full((count, 5), 0.5), list(range(count)), [-2, -1, 0, 1, 2])
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        bar = fig.axes[1]
        label = bar.yaxis.label.get_window_extent(canvas.get_renderer())
        span = bar.get_window_extent(canvas.get_renderer())
        assert "p(A) + p(B))" in bar.get_ylabel()
        assert span.y0 - 1 <= label.y0 and label.y1 <= span.y1 + 1, (count, label, span)
        assert label.x1 <= fig.bbox.x1


def test_reliability_view_of_a_sweep():
    """Per-question slopes at the chosen layer: q0 rises with α, q1 falls (wrong way), q2 is flat."""
    from steering.ui.calibrate_views import reliability_layer, reliability_text, sweep_reliability

    p = np.zeros((2, 3, 3))
    p[1] = [[0.2, 0.8, 0.5], [0.5, 0.5, 0.5], [0.8, 0.2, 0.5]]  # layer 9: multipliers x questions
    state = Sweep([5, 9], [-2.0, 0.0, 2.0], p.mean(-1), p).state()
    assert reliability_layer(state, 9) == 9 and reliability_layer(state, 13) == 9  # not swept: the middle one
    assert reliability_layer(Sweep([5], [0.0, 1.0], np.zeros((1, 2))).state(), 5) is None  # no per-question p
    rel = sweep_reliability(state, 9)
    assert rel.n == 3 and rel.wrong_way == 1 and rel.flat == 1
    assert rel.slopes == pytest.approx([0.15, -0.15, 0.0])
    text = reliability_text(rel, 9)
    assert "1 of 3 questions move the wrong way (33%" in text
    with pytest.raises(SteeringError, match="layer 7 was not swept"):
        sweep_reliability(state, 7)


def test_sweep_items_are_what_ab_sweep_averages(tiny_tokenizer):
    """The per-question sweep behind the reliability view gives ab_sweep's means (tiny random model)."""
    from fixtures import ab_item, make_tiny_engine

    from steering.config import load_config
    from steering.evaluation import ab_sweep
    from steering.ui.calibrate import sweep_items

    engine = make_tiny_engine(tiny_tokenizer, config=load_config())
    torch.manual_seed(0)
    vset = VectorSet({1: torch.randn(64), 2: torch.randn(64)})
    items = [ab_item(f"Question {i}?\n\nChoices:\n(A) Yes\n(B) No", "AB"[i % 2]) for i in range(3)]
    per_item = sweep_items(engine, vset, [1, 2], [-2.0, 0.0, 2.0], items)
    assert per_item.shape == (2, 3, 3)
    np.testing.assert_allclose(per_item.mean(-1), ab_sweep(engine, vset, [1, 2], [-2.0, 0.0, 2.0], items), atol=1e-6)
    assert np.ptp(per_item[:, :, 0]) > 0  # the multipliers move the answer


def test_the_heatmaps_default_label_sits_in_the_outlined_cell():
    """Tester's item 7: "default" was drawn right of the outlined cell (over α = 3 when 1.5 was outlined)."""
    from steering.evaluation.plots import plot_heatmap

    mults = [-3.0, -1.5, 0.0, 1.5, 3.0]
    fig = plot_heatmap(np.full((3, 5), 0.5), [11, 13, 15], mults, default=(13, 1.5))
    ax = fig.axes[0]
    labels = [t for t in ax.texts if "default" in t.get_text()]
    assert len(labels) == 1 and labels[0].get_position() == (3, 1)  # column α = 1.5, row layer 13
    outline = [p for p in ax.patches if p.get_edgecolor()[:3] != (0, 0, 0) and not p.get_fill()]
    assert [(p.get_x() + 0.5, p.get_y() + 0.5) for p in outline] == [(3, 1)]
    fig = plot_heatmap(np.full((3, 5), 0.5), [11, 13, 15], mults, default=(13, 1.5), annotate=False)
    assert [t.get_position() for t in fig.axes[0].texts if t.get_text() == "default"] == [(3, 1)]


def test_calibrate_layers_for_a_vector_with_few_layers():
    """Tester's item 6: an uploaded one-layer vector got the default's five layers, none of which it has."""
    from steering.ui.calibrate import layers_for_vector

    assert layers_for_vector([5], "11, 12, 13, 14, 15", 13, 30) == [5]
    assert layers_for_vector([5], "5", 13, 30) is None  # what is typed fits: kept
    assert layers_for_vector([4, 9], "", 13, 30) == [4, 9]
    assert layers_for_vector(range(30), "oops", 13, 30) == default_layers(13, 30)
    assert layers_for_vector(range(30), "3, 7", 13, 30) is None
