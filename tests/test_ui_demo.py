"""steering.ui.demo (issue 13 items 1, 2, 5, 8): pane words and prompted-pane prompts from the behavior's data,
the prompted rows in the same batch as the steered ones, the dose-response strip (one batch, the evaluation's
measures and breakdown rule), α presets from the defaults and the measured breakdown, the picture, tooltips."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fixtures import count_generate_calls, random_vector

from steering.config import load_config
from steering.decode.generation import SamplingSettings
from steering.errors import SteeringError
from steering.evaluation import answer_nll
from steering.evaluation.refusal import distinct_ngram_share
from steering.ui.chat import Turn
from steering.ui.demo import (
    DemoTurn,
    PaneText,
    check_prompted,
    pane_text,
    prompted_conversations,
    render_panes,
    safe_pane_text,
)
from steering.ui.explainer import explainer_image, tooltip_html
from steering.ui.presets import behavior_presets, measured_breakdown, presets
from steering.ui.strip import STRIP_FACTORS, Card, flag_breakdown, run_strip, strip_multipliers

GREEDY = SamplingSettings(max_new_tokens=6)
PROMPTS = ("You refuse everything.", "You never refuse.")


@pytest.fixture(scope="module")
def vector():
    return random_vector(seed=1, scale=4.0)


# ------------------------------------------------------------------ pane words and prompts (items 1, 8)
def test_refusal_words_and_prompts_come_from_its_card():
    words = pane_text(load_config().datasets_dir, "refusal")
    assert words.titles() == ("Refuses more (+α)", "As the model is (α = 0)", "Refuses less (−α)")
    assert words.source == "refusal/behavior.yaml"
    assert "decline" in words.prompts["added"] and "never decline" in words.prompts["subtracted"]


def test_prompts_yaml_is_the_fallback_without_a_card(tmp_path):
    (tmp_path / "formality").mkdir()
    (tmp_path / "formality" / "prompts.yaml").write_text(
        "added: sounds formal\nprompts:\n  added: Be formal.\n  subtracted: Be casual.\n"
    )
    words = pane_text(tmp_path, "formality")
    assert words.prompts == {"added": "Be formal.", "subtracted": "Be casual."}
    assert words.titles()[0] == "Sounds formal (+α)" and words.subtracted == "less of the behavior"
    assert words.source == "formality/prompts.yaml"


def test_no_data_gives_the_generic_words_and_no_prompts(tmp_path):
    assert pane_text(tmp_path, "nothing-here") == PaneText()
    assert pane_text(tmp_path, None).prompts == {"added": "", "subtracted": ""}


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "prompts:\n  added: Be formal.\n",
            "formality/prompts.yaml: prompts.subtracted must be a non-empty string, found NoneType",
        ),
        (
            "prompts: [a, b]\n",
            "formality/prompts.yaml: 'prompts' must be a mapping with keys added and subtracted, found list",
        ),
        ("prompt:\n  added: x\n", "formality/prompts.yaml: unknown key prompt (expected added, subtracted, prompts)"),
        ("prompts: {added: a, subtracted: b, other: c}\n", "formality/prompts.yaml: prompts has unknown key other"),
        ("prompts: {added: a\n", "formality/prompts.yaml: not valid YAML"),
    ],
)
def test_a_bad_prompts_file_is_one_line_naming_file_and_key(tmp_path, text, expected):
    (tmp_path / "formality").mkdir()
    (tmp_path / "formality" / "prompts.yaml").write_text(text)
    with pytest.raises(SteeringError) as err:
        pane_text(tmp_path, "formality")
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    words, problem = safe_pane_text(tmp_path, "formality")
    assert words == PaneText() and problem == str(err.value)


def test_check_prompted():
    assert check_prompted(False, "", "") is None
    assert check_prompted(True, " a ", "b") == ("a", "b")
    with pytest.raises(SteeringError, match="asking to avoid it\\) is empty"):
        check_prompted(True, "a", "  ")
    with pytest.raises(SteeringError, match="is 2001 characters long; the limit is 2000"):
        check_prompted(True, "a" * 2001, "b")


# ------------------------------------------------------------------ prompted panes in the same batch (item 1)
def test_prompted_conversations_carry_their_system_prompt_and_history():
    earlier = DemoTurn(
        "Hi", 1.0, 1, "refusal", 6, answers=["+", "0", "-", "no.", "sure!"], status="done", prompts=PROMPTS
    )
    off = Turn("And?", 1.0, 1, "refusal", 6, answers=["+2", "02", "-2"], status="done")
    convs = prompted_conversations([earlier, off], "Why?", PROMPTS)
    assert convs[0] == [
        {"role": "system", "content": PROMPTS[0]},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "no."},
        {"role": "user", "content": "And?"},
        {"role": "assistant", "content": "02"},  # the prompted panes were off: the unsteered answer
        {"role": "user", "content": "Why?"},
    ]
    assert convs[1][0]["content"] == PROMPTS[1] and convs[1][2]["content"] == "sure!"


def test_render_panes_shows_five_panes_with_the_prompt_in_the_caption():
    turn = DemoTurn("Hi", 1.5, 13, "refusal", 6, prompts=PROMPTS)
    assert turn.answers == [""] * 5
    turn.finish(["a", "b", "c", "no.", "yes!"], [1, 1, 1, 2, 6], False)
    panes = render_panes([turn, Turn("x", 1.5, 13, "refusal", 6, answers=["1", "2", "3"], status="done")])
    assert len(panes) == 5
    assert panes[3][1]["content"].startswith("no.\n\n<sub>α = 0, no steering · system prompt: “You refuse everything.”")
    assert "cut at the limit of 6 new tokens" in panes[4][1]["content"]
    assert panes[3][3]["content"] == "<sub>prompted pane was off for this message</sub>"


def test_prompted_rows_run_in_the_same_batch_and_match_their_own_runs(tiny_engine, vector, monkeypatch):
    conv = [{"role": "user", "content": "What's your favorite planet?"}]
    alone = tiny_engine.compare(conv, vector, 1, 3.0, GREEDY)
    prompted = prompted_conversations([], conv[0]["content"], PROMPTS)
    calls = count_generate_calls(tiny_engine, monkeypatch)
    both = tiny_engine.compare(conv, vector, 1, 3.0, GREEDY, extra=prompted)
    assert calls == [5]  # one engine call, one batch of 3 steered + 2 prompted rows
    assert both.texts[:3] == alone.texts  # the extra rows change nothing in the steered ones
    for side in range(2):  # each prompted row is the unsteered model with its own system prompt
        assert both.texts[3 + side] == tiny_engine.plain(conv, GREEDY, system_prompt=PROMPTS[side])
    assert both.texts[3] != both.texts[4]


# ------------------------------------------------------------------ the dose-response strip (item 2)
def test_strip_multipliers():
    assert strip_multipliers(1.5, 9) == [-3.0, -1.5, -0.75, 0.0, 0.75, 1.5, 3.0]
    assert strip_multipliers(0, 2, (-1, -0.5, 0, 0.5, 1)) == [-2.0, -1.0, 0.0, 1.0, 2.0]  # α = 0: the default
    with pytest.raises(SteeringError, match="5 to 7 multipliers, got 3"):
        strip_multipliers(1, 1, (-1, 0, 1))


def test_flag_breakdown_is_the_evaluations_rule():
    base = {"multiplier": 0.0, "distinct3": 0.9, "perplexity": 2.0}
    assert flag_breakdown({"multiplier": 1.0, "distinct3": 0.8, "perplexity": 5.9}, base) is None
    assert flag_breakdown({"multiplier": -2.0, "distinct3": 0.76, "perplexity": 2.0}, base) == {
        "repetitive": True,
        "garbled": False,
    }  # 0.76 < 0.85 x 0.9
    assert flag_breakdown({"multiplier": 3.0, "distinct3": 0.9, "perplexity": 6.1}, base) == {
        "repetitive": False,
        "garbled": True,
    }  # 6.1 > 3 x 2
    assert flag_breakdown({**base, "distinct3": 0.1}, base) is None  # the unsteered card is the reference


def test_strip_answers_every_multiplier_in_one_batch_with_the_evaluations_measures(tiny_engine, vector, monkeypatch):
    calls = count_generate_calls(tiny_engine, monkeypatch)
    settings = SamplingSettings(max_new_tokens=64)
    cards = run_strip(tiny_engine, "Tell me a story.", vector, 1, 2.0, settings, max_new_tokens=8)
    assert calls == [len(STRIP_FACTORS)]
    assert [c.multiplier for c in cards] == [-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0]
    assert all(c.tokens == 8 for c in cards)  # short answers: capped at the strip's length
    conv = [{"role": "user", "content": "Tell me a story."}]
    short = SamplingSettings(max_new_tokens=8)
    assert cards[3].text == tiny_engine.plain(conv, short)
    panes = tiny_engine.compare(conv, vector, 1, 1.0, short).texts  # +1, 0, -1: the strip's cards at ±m/2
    assert [cards[4].text, cards[3].text, cards[2].text] == panes
    ids = tiny_engine._generate(
        [conv] * 7,
        short,
        None,
        steer=tiny_engine.steering_plan(sorted(STRIP_FACTORS), vector=vector, layer=1, multiplier=2.0),
    ).token_ids
    nlls = answer_nll(tiny_engine.lm.model, tiny_engine.lm.tokenizer, ["Tell me a story."] * 7, ids)
    for card, nll in zip(cards, nlls):
        assert card.distinct3 == distinct_ngram_share(card.text)
        assert card.perplexity == pytest.approx(math.exp(nll))
    base = {"multiplier": 0.0, "distinct3": cards[3].distinct3, "perplexity": cards[3].perplexity}
    assert [c.breakdown for c in cards] == [
        flag_breakdown({"multiplier": c.multiplier, "distinct3": c.distinct3, "perplexity": c.perplexity}, base)
        for c in cards
    ]


def test_strip_refuses_a_multiplier_over_the_cap(tiny_engine, vector):
    with pytest.raises(SteeringError, match="out of range"):
        run_strip(tiny_engine, "Hi", vector, 1, tiny_engine.limits.max_abs_multiplier * 0.75, GREEDY)


def test_card_markdown_escapes_and_flags():
    card = Card(-3.0, "<b>*loop*</b>", 12, 0.5, 40.0, {"repetitive": True, "garbled": True})
    text = card.markdown(PaneText("refuses more", "refuses less"))
    assert text.startswith("**α = −3 · refuses less**") and "&lt;b&gt;\\*loop\\*&lt;/b&gt;" in text
    assert "distinct-3 0.50 · perplexity 40.0 · 12 tokens" in text
    assert "breaks down** (repetitive and garbled)" in text
    assert card.alpha == 3.0
    assert "breaks down" not in Card(0.0, "ok", 1, 1.0, None).markdown()


# ------------------------------------------------------------------ presets, picture, tooltips (item 5)
def test_presets_from_the_default_and_the_breakdown_point():
    assert [(p.name, p.alpha) for p in presets(1.5, 3.0)] == [
        ("gentle", 0.75),
        ("clear", 1.5),
        ("too strong — watch it break", 3.0),
    ]
    assert presets(1.5, None)[2].alpha == 3.0 and "no measured breakdown" in presets(1.5, None)[2].why
    assert presets(2.0, 1.0)[2].alpha == 4.0  # a breakdown below the default is no "too strong" preset
    assert presets(1.5, 3.0)[0].label == "gentle (α = 0.75)"


def test_measured_breakdown_reads_this_behavior_and_models_evaluation(tmp_path):
    (tmp_path / "eval").mkdir()
    data = {
        "settings": {"behavior": "refusal", "model": "m"},
        "breakdown": {"positive": {"multiplier": 3.0}, "negative": {"multiplier": -2.5}},
    }
    (tmp_path / "eval" / "open_ended.json").write_text(json.dumps(data))
    assert measured_breakdown(tmp_path, "refusal", "m") == 2.5
    assert measured_breakdown(tmp_path, "refusal", "other-model") is None
    (tmp_path / "eval" / "refusal").mkdir()
    data["breakdown"] = {"positive": None, "negative": None}  # held up: the per-behavior file wins
    (tmp_path / "eval" / "refusal" / "open_ended.json").write_text(json.dumps(data))
    assert measured_breakdown(tmp_path, "refusal", "m") is None
    (tmp_path / "eval" / "refusal" / "open_ended.json").write_text("{broken")
    assert measured_breakdown(tmp_path, "refusal", "m") == 2.5  # unreadable: logged, the next file is used


def test_breakdown_from_an_evaluation_of_another_recipe_is_not_used(tmp_path):
    """A results file made with an earlier recipe (the refusal defaults moved from layer 13 to the band around
    16) is skipped for the "too strong" preset: the next file with the current recipe is used, else twice the
    default. A file without a recorded recipe cannot be checked and is skipped too."""
    from steering.core.recipe import Recipe

    current = Recipe(layer=16, strength=1.5, band=3, plus="clamp", minus="add", strength_minus=2.0, minus_window=6)
    old = Recipe(layer=13, strength=1.5, band=3, plus="clamp", minus="add")

    def write(path, recipe, alpha):
        path.parent.mkdir(parents=True, exist_ok=True)
        settings = {"behavior": "refusal", "model": "m"}
        if recipe is not None:
            settings["recipe"] = recipe.to_dict()
        path.write_text(json.dumps({"settings": settings, "breakdown": {"positive": {"multiplier": alpha}}}))

    class Engine:
        lm = type("LM", (), {"slug": "m"})()
        defaults = type("D", (), {"multiplier": 1.0})()

        def recipe(self, behavior):
            return current

    per_behavior, general = tmp_path / "eval" / "refusal" / "open_ended.json", tmp_path / "eval" / "open_ended.json"
    write(per_behavior, old, 2.0)  # stale: made at layer 13
    write(general, current, 4.5)
    assert measured_breakdown(tmp_path, "refusal", "m", current) == 4.5
    assert measured_breakdown(tmp_path, "refusal", "m") == 2.0  # no recipe given: not checked
    assert [p.alpha for p in behavior_presets(Engine(), "refusal", tmp_path)] == [0.75, 1.5, 4.5]
    write(general, None, 4.5)  # no recorded recipe either: no measured point, twice the default
    strong = behavior_presets(Engine(), "refusal", tmp_path)[2]
    assert strong.alpha == 3.0 and "no measured breakdown" in strong.why
    write(per_behavior, current, 3.5)  # made with the current recipe: used
    assert behavior_presets(Engine(), "refusal", tmp_path)[2].alpha == 3.5


def test_steered_layers_are_the_recipes(tiny_engine):
    from steering.ui.presets import steered_layers

    assert steered_layers(tiny_engine, "refusal") == tiny_engine.recipe("refusal").layers(4)
    assert steered_layers(tiny_engine, None) == []


def test_shipped_model_presets_use_its_tuned_default_and_measured_breakdown():
    """The shipped files: refusal's SmolLM2 default is 1.5 and results/eval, made with that recipe, saw the text
    break at |α| = 3."""
    from steering.core.recipe import Recipe

    config = load_config()
    defaults = json.loads((config.vectors_dir / "refusal" / "smollm2-135m-instruct.defaults.json").read_text())

    class Fake:
        lm = type("LM", (), {"slug": "smollm2-135m-instruct"})()

        def recipe(self, behavior):
            return Recipe.from_dict(defaults["recipe"])

    alphas = [p.alpha for p in behavior_presets(Fake(), "refusal", config.results_dir)]
    assert alphas == [0.75, 1.5, 3.0]


def test_explainer_picture_and_tooltips():
    image = explainer_image(30, 13)
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 300 and image.dtype.name == "uint8"
    assert image.std() > 10  # a drawing, not a blank canvas

    def orange(img):
        return int(
            (
                (img[..., 0] > 240)
                & (abs(img[..., 1].astype(int) - 216) < 6)
                & (abs(img[..., 2].astype(int) - 168) < 6)
            ).sum()
        )  # the steered layers' fill

    assert orange(explainer_image(30, 13, band=[12, 13, 14])) > 2.5 * orange(image)  # three boxes, not one
    tip = tooltip_html("alpha", "What is α?")
    assert 'role="tooltip"' in tip and "how hard the vector pushes" in tip and "What is α?" in tip


# ------------------------------------------------------------------ the app's strip handler (no browser)
@pytest.fixture(scope="module")
def strip_handler(tiny_engine, tmp_path_factory):
    import app
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet

    torch.manual_seed(3)
    path = save_safetensors(
        VectorSet({layer: torch.randn(64) for layer in range(4)}), tmp_path_factory.mktemp("vec") / "mine.safetensors"
    )
    import app_harness

    from steering.ui.settings import ChatSettings

    handlers = app_harness.handlers_of(app.build_app(tiny_engine, tiny_engine.config))
    chat = app_harness.ChatInputs(handlers)
    uploads = {"Uploaded: mine.safetensors": str(path)}
    settings = ChatSettings("Uploaded: mine.safetensors", uploads, 1, 1.0, 6, 0.0, 1.0, "0", False, "")
    return lambda prompt, turns, alpha=1.0: handlers["strip"].fn(
        chat.data(settings.changed(alpha=alpha), prompt=prompt, history=turns)
    )


def test_app_strip_fills_every_card_and_its_alpha(strip_handler):
    row, *out = strip_handler("Tell me a story.", [], alpha=1.0)
    assert row["visible"] is True  # the row of cards is hidden until the first strip
    n = len(STRIP_FACTORS)
    cards, buttons, alphas, note = out[:n], out[n : 2 * n], out[2 * n], out[2 * n + 1]
    assert [c.split("**")[1] for c in cards] == [
        "α = −2 · less of the behavior",
        "α = −1 · less of the behavior",
        "α = −0.5 · less of the behavior",
        "α = 0 · as the model is",
        "α = +0.5 · more of the behavior",
        "α = +1 · more of the behavior",
        "α = +2 · more of the behavior",
    ]
    assert [b["visible"] for b in buttons] == [True] * n and buttons[0]["value"] == "Use ±2 (this is the −α pane)"
    assert alphas == [2.0, 1.0, 0.5, 0.0, 0.5, 1.0, 2.0]
    assert note.startswith("“Tell me a story.” at 7 strengths, one batch, up to 6 tokens each.")


def test_app_strip_uses_the_last_message_or_says_what_is_missing(strip_handler):
    import gradio as gr

    out = strip_handler("", [])
    assert out[-1] == "⚠️ **No strip:** type a message first: the strip answers it at 7 strengths"
    assert all(o == gr.skip() for o in out[:-1])  # the cards (and the row) from before stay
    last = Turn("Hi there", 1.0, 1, "mine.safetensors", 6, status="done", answers=["a", "b", "c"])
    assert strip_handler("  ", [last])[-1].startswith("“Hi there” at 7 strengths")


def test_render_panes_shows_the_users_message_as_typed():
    """Tester's item 4: HTML in a user message was rendered ("<b>bold</b>" bold, "<img>" a broken image)."""
    typed = "<b>bold</b> and <img src=x> *not italic*"
    turn = DemoTurn(typed, 2.0, 1, "refusal", 6, status="done", answers=["**a**", "b", "c", "d", "e"], prompts=PROMPTS)
    panes = render_panes([turn])
    assert len(panes) == 5
    for pane in panes:
        user, answer = pane
        assert user["content"] == r"&lt;b&gt;bold&lt;/b&gt; and &lt;img src=x&gt; \*not italic\*"
    assert panes[0][1]["content"].startswith("**a**\n\n<sub>")  # the answers and captions unchanged
    assert turn.user == typed  # what the model sees is the message as typed


def test_a_strip_cards_button_says_which_pane_it_is():
    """Tester's item 7: a card at α = −3 offered "Use α = 3"."""
    assert [Card(m, "", 0, 1.0, None).use_label for m in (-3.0, 0.0, 1.5)] == [
        "Use ±3 (this is the −α pane)",
        "Use α = 0 (no steering)",
        "Use α = 1.5",
    ]
