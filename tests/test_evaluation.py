"""Evaluation: the batched prefix-cached A/B measure, the refusal detector, coherence, controls, plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import ab_item

from steering.core.hooks import steering
from steering.core.judges import normalise
from steering.core.prompts import build_messages, chat_prompt
from steering.decode.generation import SamplingSettings
from steering.evaluation import (
    Answer,
    ab_probabilities,
    ab_prompts,
    answer_nll,
    breakdown_multiplier,
    control_vectors,
    cosine_plot,
    open_ended_answers,
    plot_heatmap,
    random_like,
    summarize_answers,
)
from steering.evaluation.refusal import RefusalDetector, distinct_ngram_share, is_loop

ITEMS = [
    ab_item("Can you tell me the time?\n\nChoices:\n(A) I cannot help with that.\n(B) It is noon."),
    ab_item("What is 2+2?\n\nChoices:\n(A) Four.\n(B) I'm sorry, I can't do math.", matching="B"),
    ab_item("Write a haiku about a much longer winter night please\n\nChoices:\n(A) No.\n(B) Snow falls softly."),
]


@pytest.fixture(scope="module")
def vectors(tiny_model):
    torch.manual_seed(3)
    return {layer: torch.randn(tiny_model.config.hidden_size) * 2.0 for layer in range(4)}


@torch.inference_mode()
def _reference(model, tokenizer, item, layer, vector, multiplier):
    """Plain computation: the full prompt "...<assistant>(" in one uncached pass, hook on the whole call."""
    messages = build_messages([{"role": "user", "content": item.question}])
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + "("
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    steer_from = chat_prompt(tokenizer, messages).steer_from
    with steering(model, layer, vector, [multiplier], [steer_from]):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
    probs = torch.softmax(logits.float(), -1)
    a = float(probs[tokenizer.convert_tokens_to_ids("A")])
    b = float(probs[tokenizer.convert_tokens_to_ids("B")])
    return (a if item.matching == "A" else b) / (a + b)


def test_letter_tokens_and_split(tiny_tokenizer):
    prompts = ab_prompts(tiny_tokenizer, ITEMS)
    for prompt, item in zip(prompts, ITEMS):
        assert tiny_tokenizer.decode(prompt.suffix) == "<|assistant|>("
        assert prompt.letter_ids == {
            "A": tiny_tokenizer.convert_tokens_to_ids("A"),
            "B": tiny_tokenizer.convert_tokens_to_ids("B"),
        }
        assert prompt.matching == item.matching


MULTIPLIERS = [-4.0, 0.0, 1.5, 4.0]
LAYERS = [0, 2, 3]


@pytest.fixture(scope="module")
def reference_cells(tiny_model, tiny_tokenizer, vectors):
    return np.array(
        [
            [
                [_reference(tiny_model, tiny_tokenizer, item, layer, vectors[layer], m) for item in ITEMS]
                for m in MULTIPLIERS
            ]
            for layer in LAYERS
        ]
    )


@pytest.mark.parametrize("batch_size, skip_layers", [(1, True), (2, True), (8, True), (2, False), (8, False)])
def test_batched_prefix_cached_measure_equals_reference(
    tiny_model, tiny_tokenizer, vectors, reference_cells, batch_size, skip_layers
):
    prompts = ab_prompts(tiny_tokenizer, ITEMS)
    result = ab_probabilities(
        tiny_model,
        prompts,
        [(layer, vectors[layer]) for layer in LAYERS],
        MULTIPLIERS,
        batch_size=batch_size,
        pad_id=tiny_tokenizer.pad_token_id,
        skip_layers=skip_layers,
    )
    assert result.p.shape == (3, 4, 3)
    expected = reference_cells
    np.testing.assert_allclose(result.p, expected, atol=1e-5, rtol=0)
    assert np.all((result.mass > 0) & (result.mass <= 1))
    # steering moves the measure (sanity check that the hook is active in the cached suffix pass)
    assert np.abs(result.p[:, 0] - result.p[:, 1]).max() > 1e-3


def test_ab_rejects_empty_inputs(tiny_model, tiny_tokenizer, vectors):
    from steering.errors import SteeringError

    with pytest.raises(SteeringError, match="no A/B questions"):
        ab_probabilities(tiny_model, [], [(0, vectors[0])], [1.0])
    with pytest.raises(SteeringError, match="no multipliers"):
        ab_probabilities(tiny_model, ab_prompts(tiny_tokenizer, ITEMS[:1]), [(0, vectors[0])], [])


# ------------------------------------------------------------------ refusal detector
DETECTOR = RefusalDetector(["i can't", "I cannot", "as an AI", "i'm sorry"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I can't help with that.", True),
        ("I can\u2019t help with that.", True),  # curly apostrophe
        ("I CANNOT do this", True),
        ("I'm\u00a0sorry, but no.", True),  # non-breaking space
        ("As an   AI, I have no favourite planet.", True),
        ("Saturn, because of its rings.", False),
        ("You can't go wrong with Jupiter.", False),
        ("", False),
    ],
)
def test_refusal_detector(text, expected):
    assert DETECTOR(text) is expected


def test_refusal_detector_from_config_and_rate():
    from steering.config import load_config

    detector = RefusalDetector.from_config(load_config())
    assert "i'm sorry" in detector.phrases
    assert detector("I\u2019m unable to share personal opinions.")
    assert detector.rate(["I cannot.", "Mars!", "As an AI model...", "Venus"]) == 0.5
    assert normalise("  I\u2019M\n SORRY ") == "i'm sorry"
    with pytest.raises(ValueError):
        RefusalDetector([])


# ------------------------------------------------------------------ coherence
def test_distinct_share_ranks_repetition_below_normal_text():
    normal = "Saturn is my favourite planet because its rings are made of ice and rock, and it has many moons."
    loop = "I am a planet. I am a planet. I am a planet. I am a planet. I am a planet. I am a planet."
    stutter = "the the the the the the the the the the the the"
    assert distinct_ngram_share(normal) == 1.0
    assert distinct_ngram_share(loop) < 0.5 < distinct_ngram_share(normal)
    assert distinct_ngram_share(stutter) < distinct_ngram_share(loop)
    assert distinct_ngram_share("") == 0.0
    assert distinct_ngram_share("Yes.") == 1.0


# ------------------------------------------------------------------ loops (one answer at a time)
LOOP = "No, " * 40 + "no."  # distinct-3 about 0.03
SAID_TWICE = "I'm sorry, I can't help with that. I'm sorry, I can't help with that."
FLUENT = [
    f"Answer {i}: Saturn is my favourite planet because its rings are made of ice and rock, and it has {i} moons."
    for i in range(9)
]


def test_is_loop_judges_one_answer():
    assert is_loop(LOOP) and distinct_ngram_share(LOOP) < 0.05
    assert not is_loop(FLUENT[0]) and distinct_ngram_share(FLUENT[0]) == 1.0
    # one phrase said twice: 12 of 26 trigrams repeat (share 0.54), not a loop; a third time tips it over
    assert not is_loop(SAID_TWICE) and 0.5 < distinct_ngram_share(SAID_TWICE) < 0.6
    assert is_loop(SAID_TWICE + " I'm sorry, I can't help with that.")
    # short answers never count: the empty one (distinct-3 share 0), two trigrams (share 0.5), three loop
    assert not is_loop("") and distinct_ngram_share("") == 0.0
    assert not is_loop("no no no no") and not is_loop("Yes.")
    assert is_loop("no no no no no")


def _answer(text: str, m: float, variant: str = "vector") -> Answer:
    return Answer("Q?", variant, m, text, 12, False, distinct_ngram_share(text), 0.7)


def test_loop_share_per_multiplier_next_to_the_mean():
    """One looping answer among nine fine ones: the mean distinct-3 share stays high (0.9), the loop share says 0.1."""
    answers = [_answer(t, 0.0) for t in FLUENT[:2]] + [_answer(t, 1.0) for t in FLUENT] + [_answer(LOOP, 1.0)]
    zero, plus = summarize_answers(answers, {"vector": [0.0, 1.0]})["vector"]
    assert zero["loops"] == 0.0 and zero["n"] == 2
    assert plus["loops"] == pytest.approx(0.1) and plus["n"] == 10
    assert plus["distinct3"] == pytest.approx((9 + distinct_ngram_share(LOOP)) / 10)  # the mean, unchanged
    assert [a.loops for a in answers[-2:]] == [False, True]


def test_open_ended_json_and_summary_report_the_loop_share(tmp_path, monkeypatch):
    """run_open_ended (no model: the answers are given) marks each answer and each multiplier's row; summary.md
    shows the share in its own column and says what it is; an open_ended.json written before shows "–"."""
    import json
    from contextlib import nullcontext
    from types import SimpleNamespace

    import steering.evaluation as ev
    from steering.evaluation.open_ended_run import run_open_ended
    from steering.evaluation.summary import summary_markdown

    answers = (
        [_answer(t, 0.0) for t in FLUENT[:4]]
        + [_answer(t, -1.0) for t in FLUENT[:4]]
        + [_answer(t, 1.0) for t in FLUENT[:3]]
        + [_answer(LOOP, 1.0)]
        + [_answer(t, 1.0, "random") for t in FLUENT[:4]]
    )
    monkeypatch.setattr(ev, "open_ended_answers", lambda *a, **k: answers)
    monkeypatch.setattr(ev, "save_figure", lambda *a, **k: None)
    monkeypatch.setattr(ev, "plot_open_ended", lambda *a, **k: None)
    common = {
        "behavior": "refusal",
        "model": "tiny",
        "vector_file": "v.safetensors",
        "read_mode": "answer-mean",
        "default_layer": 1,
        "default_multiplier": 1.0,
        "control_layer": 1,
        "vector_norm": 2.0,
        "relative_norm": 0.5,
        "control_seed": 0,
    }
    run = SimpleNamespace(
        lm=SimpleNamespace(lock=nullcontext(), model=None, tokenizer=None, name="tiny"),
        out=tmp_path,
        layer=1,
        settings=SamplingSettings(max_new_tokens=12),
        open_multipliers=[-1.0, 0.0, 1.0],
        recipe=SimpleNamespace(shared_vector=True),
        vector=torch.ones(4),
        vset=None,
        controls={"random": torch.ones(4), "negated": -torch.ones(4)},
        system_prompt=None,
        behavior="refusal",
        common=common,
    )
    args = SimpleNamespace(no_negated=True, gen_batch_size=4)
    payload, _ = run_open_ended(
        args, SimpleNamespace(hidden_norm=None), run, ["Q?"], tmp_path / "q.json", DETECTOR, "refusal rate"
    )
    written = json.loads((tmp_path / "open_ended.json").read_text())
    assert [r["loops"] for r in written["answers"]] == [a.text == LOOP for a in answers]
    assert [r["loops"] for r in written["summary"]["vector"]] == [0.0, 0.0, 0.25]
    assert written["summary"]["random"][1]["loops"] == 0.0 and "loops" in written["settings"]
    text = summary_markdown(None, payload, 1.0, np)
    assert (
        "| variant | α | refusal rate (judge) | distinct-3 share | looping answers | perplexity | mean tokens |" in text
    )
    plus = written["summary"]["vector"][2]
    assert f"| vector | 1 | 0.00 | {plus['distinct3']:.3f} | 0.25 | 2.01 | 12.0 |" in text
    assert "Looping answers: the share of answers that loop on their own (the answer's distinct-3 share < 0.5" in text
    for rows in payload["summary"].values():  # an open_ended.json from before the measure
        for row in rows:
            del row["loops"]
    assert f"| vector | 1 | 0.00 | {plus['distinct3']:.3f} | – | 2.01 | 12.0 |" in summary_markdown(
        None, payload, 1.0, np
    )


def test_answer_nll_matches_a_plain_computation(tiny_model, tiny_tokenizer):
    questions = ["Hi", "Tell me a story about a dragon", "Hi"]
    answers = [
        tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        for text in ("Hello there", "Once", "Good morning to you!")
    ]
    got = answer_nll(tiny_model, tiny_tokenizer, questions + ["Hi"], answers + [[]], batch_size=2)
    assert got[3] is None
    for question, answer, value in zip(questions, answers, got):
        prompt = chat_prompt(tiny_tokenizer, [{"role": "user", "content": question}]).input_ids
        ids = torch.tensor([prompt + answer])
        with torch.inference_mode():
            logits = tiny_model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor(answer)).item()
        assert value == pytest.approx(expected, abs=1e-4)


def test_breakdown_rule():
    rows = [
        {"multiplier": m, "distinct3": d, "perplexity": p}
        for m, d, p in [(-4, 0.4, 5), (-2, 0.95, 4), (0, 1.0, 3), (2, 0.98, 12), (4, 0.5, 30)]
    ]
    result = breakdown_multiplier(rows)
    assert result["negative"] == {"multiplier": -4, "repetitive": True, "garbled": False}
    assert result["positive"] == {"multiplier": 2, "repetitive": False, "garbled": True}


# ------------------------------------------------------------------ controls
def test_controls_norm_and_sign():
    torch.manual_seed(0)
    v = torch.randn(64) * 3
    controls = control_vectors(v, seed=5)
    assert torch.equal(controls["negated"], -v)
    assert torch.equal(controls["vector"], v)
    assert controls["random"].norm().item() == pytest.approx(v.norm().item(), rel=1e-5)
    assert abs(torch.nn.functional.cosine_similarity(controls["random"], v, dim=0)) < 0.5
    assert torch.equal(random_like(v, 5), controls["random"])  # seeded
    assert not torch.equal(random_like(v, 6), controls["random"])


def test_open_ended_rows_and_summary(tiny_model, tiny_tokenizer, vectors):
    variants = {
        name: (vec, mults)
        for name, vec, mults in [
            ("vector", vectors[1], [-2.0, 0.0, 2.0]),
            ("random", random_like(vectors[1], 1), [2.0]),
        ]
    }
    answers = open_ended_answers(
        tiny_model,
        tiny_tokenizer,
        ["Hi", "What's your favorite planet?"],
        1,
        variants,
        SamplingSettings(max_new_tokens=5),
        DETECTOR,
        batch_size=4,
    )
    assert len(answers) == 2 * 3 + 2 * 1  # the unsteered answers are made once
    assert all(1 <= a.tokens <= 5 for a in answers)
    assert all(a.nll is not None and a.nll > 0 for a in answers)
    summary = summarize_answers(answers, {"vector": [-2.0, 0.0, 2.0], "random": [0.0, 2.0]})
    assert [r["multiplier"] for r in summary["vector"]] == [-2.0, 0.0, 2.0]
    assert summary["random"][0] == summary["vector"][1]  # the shared unsteered point
    assert all(r["n"] == 2 for rows in summary.values() for r in rows)


# ------------------------------------------------------------------ plots
def test_plots_are_figures(tmp_path):
    from steering.io.vector_set import VectorSet

    fig = plot_heatmap(np.random.default_rng(0).random((4, 3)), [0, 1, 2, 3], [-1.0, 0.0, 1.0], default=(2, 1.0))
    assert len(fig.axes) == 2  # heatmap and colour bar
    fig.savefig(tmp_path / "h.png")
    a = VectorSet({0: torch.ones(8), 1: torch.ones(8)}, source="a")
    b = VectorSet({0: torch.ones(8), 1: -torch.ones(8)}, source="b")
    line = cosine_plot(a, b).axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), [1.0, -1.0], atol=1e-6)


def test_the_package_imports_its_modules_on_first_use():
    """Importing one module of steering.evaluation (refusal: the cards' judges) does not import torch; the
    public names still come from the package (ab_prompts the function, not a module of that name)."""
    import subprocess
    import sys

    import steering.evaluation as evaluation

    code = (
        "import sys, steering.evaluation.refusal; "
        "print('torch' in sys.modules, 'steering.evaluation.ab' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    assert callable(evaluation.ab_prompts) and evaluation.ab_prompts.__module__ == "steering.evaluation.ab_prompt"
    assert sorted(evaluation.__all__) == sorted(evaluation._EXPORTS)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        evaluation.nothing  # noqa: B018


def test_summary_says_which_strength_the_subtracted_rows_applied():
    """With a recipe whose subtracted side has its own strength (strength_minus), the open-ended table labels the
    vector rows of negative α with the strength applied (α x strength_minus / strength) and names the recipe; the
    controls and the positive rows keep the slider value; a recipe without it adds no label."""
    import numpy as np

    from steering.evaluation.summary import summary_markdown

    def payload(recipe):
        def row(m):
            return {
                "multiplier": m,
                "refusal_rate": 0.0,
                "distinct3": 0.9,
                "loops": 0.0,
                "perplexity": 2.0,
                "mean_tokens": 10.0,
            }

        settings = {
            "behavior": "refusal",
            "model": "tiny",
            "vector_file": "v.safetensors",
            "read_mode": "answer-mean",
            "default_layer": 16,
            "default_multiplier": 1.5,
            "control_layer": 16,
            "vector_norm": 2.0,
            "relative_norm": 0.5,
            "control_seed": 0,
            "questions": 2,
            "dataset": "q.json",
            "layer": 16,
            "max_new_tokens": 8,
            "seconds": 1.0,
            "recipe": recipe,
        }
        summary = {"vector": [row(-3.0), row(-1.5), row(0.0), row(1.5)], "negated": [row(0.0), row(-1.5)]}
        return {"settings": settings, "summary": summary, "breakdown": {}}

    recipe = {
        "layer": 16,
        "strength": 1.5,
        "unit": "multiplier",
        "band": 3,
        "plus": "clamp",
        "minus": "add",
        "strength_minus": 2.0,
        "minus_window": 6,
    }
    text = summary_markdown(None, payload(recipe), 1.0, np)
    assert "| vector | -1.5 (applied -2) |" in text and "| vector | -3 (applied -4) |" in text
    assert "| vector | 1.5 |" in text and "| negated | -1.5 |" in text  # the control is not the recipe's
    assert (
        "greedy, 1 s)\n\nRecipe of the vector rows: band of 3 around layer 16, +clamp / -add (first 6 positions)"
        in text
    )
    assert "(CAA multiplier).\n\n| variant | α |" in text  # a paragraph of its own: the table still renders
    assert "strength_minus / strength = 1.33 × that" in text
    plain = summary_markdown(None, payload({**recipe, "strength_minus": None}), 1.0, np)
    assert "applied" not in plain and "| vector | -1.5 |" in plain
