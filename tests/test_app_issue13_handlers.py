"""The tester's findings on the issue-13 demo, at the handler level (app.build_app on a tiny random Llama, no
browser): a link's load event is queued (its warnings reach the page), Copy link refuses a message over the
limit, a bad prompted-pane prompt is refused in the Send validator (the message stays in the box), Copy as a
command always says why when it makes no command, Calibrate's layers follow a one-layer vector, the strip's
button for a subtracted card says which pane it is, and the meter is titled like the panes."""

from __future__ import annotations

import app_harness
import pytest
import torch
from fixtures import make_tiny_lm

import app
from steering.config import load_config, override
from steering.engine import Engine
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet
from steering.ui.settings import ChatSettings

UPLOAD = "Uploaded: one.safetensors"


@pytest.fixture(scope="module")
def built(tiny_tokenizer, tmp_path_factory):
    """(the Blocks, {handler name: its BlockFunction}, {upload name: path}) on a tiny model; the upload is a
    one-layer vector at layer 2."""

    tmp = tmp_path_factory.mktemp("h13")
    config = load_config()
    config = override(config, vectors_dir=str(tmp / "vectors"))
    torch.manual_seed(0)
    save_safetensors(
        VectorSet({layer: torch.randn(64) for layer in range(4)}, metadata={"model": "tiny"}),
        tmp / "vectors" / "refusal" / "tiny.safetensors",
    )
    one = save_safetensors(VectorSet({2: torch.randn(64) * 0.1}), tmp / "one.safetensors")
    lm = make_tiny_lm(tiny_tokenizer)
    demo = app.build_app(Engine(lm, config), config)
    return demo, app_harness.handlers_of(demo), {UPLOAD: str(one)}


def view(fns, uploads, message, **changes):
    """The chat handlers' dict input: the uploaded one-layer vector at its layer 2, α 2, 16 greedy tokens."""
    settings = ChatSettings(UPLOAD, uploads, 2, 2.0, 16, 0.0, 1.0, "0", False, "").changed(**changes)
    return app_harness.ChatInputs(fns).data(settings, prompt=message, history=[], link_base="http://h:1/")


def test_a_links_load_event_is_queued_so_its_warning_reaches_the_page(built):
    """Item 1: gr.Warning from a non-queued event only reaches the server log."""
    _, fns, _ = built
    assert fns["open_link"].queue is True


def test_copy_link_refuses_a_message_over_the_limit(built):
    """Item 2: a 100,000-character link opened as an HTTP 500; Copy link now refuses it, as Send does."""
    _, fns, _ = built
    limit = load_config().app.max_prompt_chars
    settings = dict(behavior="refusal", layer=1)
    link, note = fns["copy_link"].fn(view(fns, {}, "x" * (limit + 1), **settings))
    assert link == "" and note == (
        f"No link: your message is {limit + 1} characters long; the limit is {limit}: shorten it."
    )
    link, note = fns["copy_link"].fn(view(fns, {}, "x" * limit, **settings))
    assert link.startswith("http://h:1/?message=xxx") and "greedy" in note


def test_a_bad_prompted_prompt_is_refused_at_its_box_by_the_validator(built):
    """Item 3: the turn used to be refused after the message left the box (emptied); now the validator refuses
    it, naming the prompted pane's box, so take_message never runs."""
    _, fns, uploads = built
    check, chat = fns["take_message"].validator, app_harness.ChatInputs(fns)

    def problems(on, added, subtracted):
        prompted = dict(prompted=on, prompted_added=added, prompted_subtracted=subtracted)
        data = view(fns, uploads, "Hello", max_new_tokens=8, **prompted)
        return chat.problems(check(data | {chat.tab.outbox: app.Outbox()}))

    assert problems(True, "Ask for it.", "Avoid it.") == {}
    checks = problems(True, "Ask for it.", "   ")
    assert list(checks) == ["prompted_subtracted"]  # the 'avoid it' prompt box
    assert "asking to avoid it) is empty" in checks["prompted_subtracted"]
    checks = problems(True, "y" * 5000, "Avoid it.")
    assert list(checks) == ["prompted_added"] and "5000 characters" in checks["prompted_added"]
    assert problems(False, "", "") == {}  # the prompted panes off: not checked


def test_copy_as_a_command_says_why_in_the_box_when_there_is_none(built):
    """Item 5: an uploaded one-layer vector at another layer gave an empty command box."""
    _, fns, uploads = built
    box, note = fns["copy_command"].fn(view(fns, uploads, "Hi", layer=1))
    assert box == "# No command for this view: one.safetensors has no vector for layer 1 (it has layers 2)"
    assert note.startswith("⚠️ one.safetensors has no vector for layer 1")
    box, _ = fns["copy_command"].fn(view(fns, uploads, "Hi", layer=2))
    assert "--vector one.safetensors --layer 2" in box  # at the vector's own layer: the command


def test_calibrate_layers_follow_a_one_layer_vector(built):
    """Item 6: the default layers (around the model's default) did not fit an uploaded one-layer vector."""
    _, fns, uploads = built
    layers = fns["calibrate_layers"].fn
    assert layers(UPLOAD, uploads, "0, 1, 2, 3") == "2"
    assert layers(UPLOAD, uploads, "2") == gr_skip()  # typed layers the vector has stay
    assert layers("refusal", {}, "2") == gr_skip()
    assert layers(None, {}, "0, 1") == gr_skip()  # no vector: the box keeps its text


def test_the_strips_subtracted_cards_say_which_pane_they_are(built):
    """Item 7: a card at α = −3 offered "Use α = 3"."""
    _, fns, uploads = built
    out = fns["strip"].fn(view(fns, uploads, "Tell me a story.", alpha=1.5, max_new_tokens=4))
    labels = [b["value"] for b in out[8:15]]
    assert labels == [
        "Use ±3 (this is the −α pane)",
        "Use ±1.5 (this is the −α pane)",
        "Use ±0.75 (this is the −α pane)",
        "Use α = 0 (no steering)",
        "Use α = 0.75",
        "Use α = 1.5",
        "Use α = 3",
    ]


def test_the_meter_is_titled_like_the_panes(built):
    """Item 7: the meter's titles ("+α (added)", ...) differed from the panes' ("Refuses more (+α)", ...)."""
    _, fns, uploads = built
    turns: list = []
    outbox = app.Outbox()
    outbox.put("Hello")
    tab = app_harness.ChatInputs(fns).tab
    data = view(fns, uploads, "", behavior="refusal", max_new_tokens=4) | {tab.outbox: outbox, tab.history: turns}
    list(fns["send"].fn(data))
    assert turns and turns[-1].status == "done"
    labels = [c.label for c in fns["send"].outputs if type(c).__name__ == "Chatbot"]  # the five panes' titles
    assert (
        [r.title for r in turns[-1].meter]
        == labels[:3]
        == ["Refuses more (+α)", "As the model is (α = 0)", "Refuses less (−α)"]
    )


def gr_skip():
    import gradio as gr

    return gr.skip()
