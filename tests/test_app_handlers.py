"""The app's event handlers (app.build_app) on a tiny random Llama: no server, no browser.

Each handler is taken from the Blocks by name and driven the way Gradio drives it: a generator is
iterated (one item = one update of the outputs) and closed when Gradio cancels it (Stop, Clear, a lost
connection). The turns list is the session's gr.State, which Gradio hands to every event by reference.
"""

from __future__ import annotations

import json
import time

import app_harness
import gradio as gr
import pytest
import torch
from fixtures import make_tiny_engine

import app
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet
from steering.ui.chat import Turn
from steering.ui.settings import ChatSettings

LAYERS, HIDDEN = 4, 64
SKIP = gr.skip()


@pytest.fixture(scope="module")
def engine(tiny_tokenizer):
    return make_tiny_engine(tiny_tokenizer, layers=LAYERS)


@pytest.fixture(scope="module")
def handlers(engine):
    return app_harness.handlers_of(app.build_app(engine, engine.config))


@pytest.fixture(scope="module")
def chat(handlers):
    """Builds the chat handlers' dict inputs by field name (app_harness.ChatInputs)."""
    return app_harness.ChatInputs(handlers)


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory):
    torch.manual_seed(3)
    vset = VectorSet({layer: torch.randn(HIDDEN) for layer in range(LAYERS)})
    return str(save_safetensors(vset, tmp_path_factory.mktemp("vec") / "mine.safetensors"))


def inputs(vector_file, **changes):
    """The chat settings of these tests (an uploaded vector, layer 1, α 4, 12 tokens, greedy), some changed."""
    settings = ChatSettings(
        behavior="Uploaded: mine.safetensors",
        uploads={"Uploaded: mine.safetensors": vector_file},
        layer=1,
        alpha=4.0,
        max_new_tokens=12,
        temperature=0.0,
        top_p=1.0,
        seed=0,
        random_seed=False,
        system_prompt="",
    )
    return settings.changed(**changes)


def drain(gen):
    return list(gen)


def send(handlers, text, turns, settings, outbox=None):
    """What Send does: its quick step puts the message into the session's Outbox, then the queued turn runs."""
    outbox = outbox or app.Outbox()
    outbox.put(text)
    return handlers["send"].fn(app_harness.ChatInputs(handlers).data(settings, history=turns, outbox=outbox))


def retry(handlers, turns, settings, outbox=None):
    outbox = outbox or app.Outbox()
    outbox.put(None)
    return handlers["retry"].fn(app_harness.ChatInputs(handlers).data(settings, history=turns, outbox=outbox))


def test_send_keeps_typed_text_and_disables_send_while_streaming(handlers, vector_file, engine):
    """Every streamed update used to erase the message box; Send during streaming was silently dropped."""
    turns: list = []
    updates = drain(send(handlers, "Hello there", turns, inputs(vector_file)))
    assert len(updates) >= 3
    first, *middle, last = updates
    assert len(first) == 7  # 3 panes, Send, Retry, the 2 prompted panes: the message box is no output
    assert first[3]["interactive"] is False and first[4]["interactive"] is False
    assert last[3]["interactive"] is True and last[4]["interactive"] is True
    assert [t.status for t in turns] == ["done"]
    assert last[0][-1]["content"].endswith(
        "<sub>+α = +4 · layer 1 · mine.safetensors · cut at the limit of 12 new tokens</sub>"
    )
    assert last[1][-1]["content"].endswith("<sub>α = 0 (unsteered) · cut at the limit of 12 new tokens</sub>")
    assert not engine.lm.lock.locked()


def started(handlers, vector_file, turns, max_new=400, outbox=None):
    """A turn streaming a long answer: (its generator, the session's Outbox)."""
    outbox = outbox or app.Outbox()
    gen = send(handlers, "Tell me a long story", turns, inputs(vector_file, max_new_tokens=max_new), outbox=outbox)
    for _ in range(3):
        next(gen)
    return gen, outbox


def wait_unlocked(engine, seconds=5.0) -> float:
    start = time.monotonic()
    while engine.lm.lock.locked():
        assert time.monotonic() - start < seconds, "the model kept generating"
        time.sleep(0.01)
    return time.monotonic() - start


def test_stop_ends_the_turn_and_the_model(handlers, vector_file, engine):
    """Stop's update raced the stream: an update already on its way landed after it and the caption said
    "writing…" for good (CI). Now the turn itself ends with the last update, which shows "stopped"."""
    turns: list = []
    gen, outbox = started(handlers, vector_file, turns)
    shown = handlers["stop"].fn(turns, outbox, "")
    assert shown[3]["interactive"] is True  # Send is back
    rest = drain(gen)  # the stream ends at its next token with one last update of its own
    assert len(rest) == 1 and list(rest[0][:3]) == list(shown[:3]) and rest[0][3]["interactive"] is True
    wait_unlocked(engine)
    assert turns[0].status == "stopped" and turns[0].answers[0]  # the text made before Stop stays
    assert shown[0][-1]["content"] == turns[0].shown(0) and turns[0].caption(0).endswith("· stopped")
    assert app.conversations(turns)[0][-1]["content"] == turns[0].answers[0]  # what was shown is what is fed back


def test_clear_during_streaming_stops_and_clears(handlers, vector_file, engine):
    """Clear during streaming did nothing and generation ran on (issue 10, item 10)."""
    turns: list = []
    gen, outbox = started(handlers, vector_file, turns)
    cleared = handlers["clear"].fn(turns, outbox)
    assert cleared[:3] == ([], [], []) and cleared[3]["interactive"] is True
    rest = drain(gen)  # its last update shows the cleared panes, so no earlier update can bring the turn back
    assert len(rest) == 1 and list(rest[0][:3]) == [[], [], []] and turns == []
    wait_unlocked(engine)


def test_cancelling_the_handler_stops_the_model(handlers, vector_file, engine):
    """What Gradio does on a lost connection: it closes the generator."""
    turns: list = []
    gen, _ = started(handlers, vector_file, turns)
    gen.close()
    assert wait_unlocked(engine) < 5
    assert turns[0].status == "stopped"


def test_failed_turn_stays_out_of_the_conversation(handlers, vector_file, engine, monkeypatch):
    """A failure's text was stored as the answer and fed back next turn (issue 10, item 10)."""
    turns: list = []
    real = engine.compare
    seen = []

    def broken(*args, **kwargs):
        raise ValueError("Overflow when unpacking long long")

    monkeypatch.setattr(engine, "compare", broken)
    last = drain(send(handlers, "First", turns, inputs(vector_file)))[-1]
    assert all(
        "⚠️ Generation failed: ValueError: Overflow when unpacking long long" in pane[-1]["content"] for pane in last[:3]
    )
    assert last[3]["interactive"] is True

    def spy(conversations, *args, **kwargs):
        seen.append(conversations)
        return real(conversations, *args, **kwargs)

    monkeypatch.setattr(engine, "compare", spy)
    drain(send(handlers, "Second", turns, inputs(vector_file)))
    assert seen[0] == [[{"role": "user", "content": "Second"}]] * 3
    assert [t.status for t in turns] == ["failed", "done"]
    # Retry replaces the last turn, with the settings of now, and still leaves the failure out
    seen.clear()
    drain(retry(handlers, turns, inputs(vector_file, alpha=1.0)))
    assert seen[0] == [[{"role": "user", "content": "Second"}]] * 3
    assert [t.status for t in turns] == ["failed", "done"] and turns[-1].multiplier == 1.0


def test_validator_refuses_with_a_message_at_the_message_box(handlers, chat, vector_file, tmp_path):
    validate = handlers["take_message"].validator
    ok = validate(chat.data(inputs(vector_file), prompt="Hi", history=[], outbox=app.Outbox()))
    assert all(check["is_valid"] for check in ok.values()) and not chat.problems(ok)

    def message(prompt, turns, where="prompt", **changes):
        checks = validate(chat.data(inputs(vector_file, **changes), prompt=prompt, history=turns))
        problems = chat.problems(checks)
        assert list(problems) == [where]
        return problems[where]

    assert message("   ", []) == "Type a message first."
    assert message("Hi", [], seed=99999999999999999999999).startswith("seed 99999999999999999999999 is out of range")
    assert message("Hi", [], max_new_tokens=1500).startswith("max_new_tokens 1500 is out of range")
    assert "tokens" in message("Hi", [], system_prompt="x" * 5000)  # one token per byte here: over the 4096 cap
    assert "characters long" in message("Hi", [], system_prompt="x" * 100_000)  # refused without tokenizing
    busy = Turn("Hi", 1.0, 1, "v", 8)
    assert message("Hi", [busy]).startswith("Still answering")
    one = str(save_safetensors(VectorSet({0: torch.ones(HIDDEN)}), tmp_path / "one.safetensors"))
    assert message(
        "Hi",
        [],
        where="behavior",
        uploads={"Uploaded: one.safetensors": one},
        behavior="Uploaded: one.safetensors",
        layer=1,
    ).startswith("one.safetensors has no vector for layer 1")


def test_upload_leaves_the_cache_and_is_removed_with_the_session(handlers, vector_file, tmp_path):
    cache = tmp_path / "gradio-cache" / "abc123"
    cache.mkdir(parents=True)
    upload = cache / "mine.safetensors"
    upload.write_bytes(open(vector_file, "rb").read())
    request = gr.Request(session_hash="session1")
    file_value, choice, uploads, note = handlers["on_upload"].fn(str(upload), {}, request)
    assert file_value is None  # the File component lets go of the (now moved) cache copy
    assert not upload.exists() and not cache.exists()
    kept = uploads["Uploaded: mine.safetensors"]
    assert choice["value"] == "Uploaded: mine.safetensors" and note.startswith("Loaded mine.safetensors")
    assert "gradio-cache" not in kept and open(kept, "rb").read() == open(vector_file, "rb").read()
    handlers["end_session"].fn(request)  # demo.unload: the session's folder goes
    assert not __import__("os").path.exists(kept)

    bad = cache / "bad.safetensors"
    cache.mkdir()
    bad.write_bytes(b"not a vector file")
    file_value, _, _, note = handlers["on_upload"].fn(str(bad), {}, request)
    assert file_value is None and note.startswith("⚠️ **Not loaded:** bad.safetensors") and not bad.exists()
    assert str(tmp_path) not in note


def test_messages_shown_in_markdown_keep_angle_brackets(handlers, tmp_path):
    """An upload note "vec_layer_<L>_<model>.pt" showed as "vec_layer_" (the note is Markdown)."""
    cache = tmp_path / "cache-md"
    cache.mkdir()
    odd = cache / "odd.pt"
    torch.save(torch.zeros(HIDDEN), odd)
    request = gr.Request(session_hash="session-md")
    note = handlers["on_upload"].fn(str(odd), {}, request)[3]
    assert "vec\\_layer\\_&lt;L&gt;\\_&lt;model&gt;.pt" in note and "<L>" not in note
    status = handlers["calibrate"].fn("refusal", {}, "1", "<b>", "refusal", 2)[3]  # the Calibrate status
    assert status.startswith("⚠️ **Sweep failed:** Multipliers: '&lt;b&gt;' is not a number"), status
    note = handlers["update_note"].fn("Uploaded: <gone>.pt", {}, 1, 2.0)  # the note under α
    assert "<gone>" not in note and "&lt;gone&gt;" in note, note


def test_over_long_prompts_are_refused_in_the_api_and_the_ui_alike(handlers, chat, vector_file, engine):
    """The API silently shortened a long prompt to app.max_prompt_chars (the UI warned)."""
    limit = engine.config.app.max_prompt_chars
    with pytest.raises(gr.Error, match=f"prompt is {limit + 1} characters long; the limit is {limit}"):
        next(handlers["compare"].fn("x" * (limit + 1), 1.0, 1, behavior="", max_new_tokens=2))
    validate = handlers["take_message"].validator
    checks = chat.problems(validate(chat.data(inputs(vector_file), prompt="x" * (limit + 1), history=[])))
    assert list(checks) == ["prompt"] and f"the limit is {limit}" in checks["prompt"]
    at_limit = chat.problems(validate(chat.data(inputs(vector_file), prompt="x" * limit, history=[])))
    assert "characters long" not in at_limit.get("prompt", "")  # (may still be too many tokens)


def test_seed_reaches_the_checks_as_typed(handlers, chat, vector_file, engine):
    """gr.Number sent floats: "9223372036854775807" (the stated maximum) was refused as 9223372036854776000."""
    demo = app.build_app(engine, engine.config)
    seed_box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "seed")
    assert isinstance(seed_box, gr.Textbox)  # the browser sends the digits as typed
    validate = handlers["take_message"].validator

    def problems(seed):
        return chat.problems(validate(chat.data(inputs(vector_file, seed=seed), prompt="Hi", history=[])))

    assert problems("9223372036854775807") == {}
    assert problems("9223372036854775808")["prompt"].startswith(
        "seed 9223372036854775808 is out of range: expected 0 to 9223372036854775807"
    )
    assert "got '1.5'" in problems("1.5")["prompt"]


def test_readme_gives_raw_http_callers_the_full_argument_order(handlers):
    """Raw callers of /gradio_api/call/compare with only the prompt got {"error": null}: Gradio needs all 9
    values, so the README lists them in the endpoint's own order."""
    import inspect
    import re

    names = list(inspect.signature(handlers["compare"].fn).parameters)
    readme = (app_harness.ROOT / "README.md").read_text()
    match = re.search(r"must send all (\d+)\s+values in this order[^`]*`([^`]+)`", readme)
    assert match, "README: the raw HTTP argument order is missing"
    assert int(match.group(1)) == len(names) and [n.strip() for n in match.group(2).split(",")] == names
    example = re.search(r'"data": \[(.*)\]', readme).group(1)
    assert len(json.loads(f"[{example}]")) == len(names)


def test_the_message_box_is_emptied_at_the_click_not_when_the_turn_starts(handlers, chat, engine):
    """Text typed while a message waited in the queue was erased when its turn started (run_turn cleared the
    box), and Send stayed enabled during the wait."""
    take, send_fn = handlers["take_message"], handlers["send"]
    assert take.validator is not None and take.concurrency_limit is None  # after the validator, never waits
    assert take.concurrency_id != send_fn.concurrency_id  # not behind the model's queue
    outbox = app.Outbox()
    box, send_btn, retry_btn = take.fn(chat.data(ChatSettings(), prompt="Hello", history=[], outbox=outbox))
    assert box == "" and send_btn["interactive"] is False and retry_btn["interactive"] is False
    assert outbox.take() == ("Hello", 0)
    prompt_id = next(b._id for b in take.inputs if getattr(b, "elem_id", None) == "prompt")
    assert prompt_id not in [b._id for b in send_fn.outputs]  # the queued turn never writes the message box
    outbox_id = chat.tab.outbox._id  # it reads the message taken at the click (the Outbox)
    assert outbox_id in [b._id for b in take.inputs] and outbox_id in [b._id for b in send_fn.inputs]
    assert send_fn.queue is not False
    assert not any(fn.cancels for fn in handlers.values())  # Stop and Clear act through the session state


def test_stop_of_a_queued_message_puts_it_back_in_the_box_and_it_never_runs(handlers, chat, vector_file, engine):
    """A message cancelled while it waited in the queue was lost: the click had emptied the box (review).
    Cancelling it with cancels= left red Error badges over the panes (CI); now its queued job finds it gone."""
    turns: list = []
    outbox = app.Outbox()
    drain(send(handlers, "First", turns, inputs(vector_file), outbox=outbox))
    outbox.put("Second, still queued")  # taken at a click; its job waits behind another user's
    shown = handlers["stop"].fn(turns, outbox, "")
    assert shown[5] == "Second, still queued" and len(turns) == 1
    late = drain(
        handlers["send"].fn(chat.data(inputs(vector_file), history=turns, outbox=outbox))
    )  # its job runs after all: nothing
    assert late == [(SKIP, SKIP, SKIP, *late[0][3:])] and late[0][3]["interactive"] is True and len(turns) == 1
    outbox.put("Third")
    shown = handlers["stop"].fn(turns, outbox, "typed since")  # the box is not overwritten
    assert shown[5] == SKIP
    shown = handlers["stop"].fn(turns, outbox, "")  # nothing waits: nothing comes back
    assert shown[5] == SKIP
    gen, _ = started(handlers, vector_file, turns, outbox=outbox)  # a running turn: stopped, its message stays
    shown = handlers["stop"].fn(turns, outbox, "")
    assert shown[5] == SKIP and turns[-1].status == "stopped"
    drain(gen)
    wait_unlocked(engine)


def test_a_message_sent_after_stopping_a_queued_one_runs_once(handlers, chat, vector_file, engine):
    """Stop a waiting message, send another: the first queued job takes the new message, the second finds
    nothing, so the new message runs exactly once and the cancelled one never."""
    turns: list = []
    outbox = app.Outbox()
    outbox.put("Cancelled")
    handlers["stop"].fn(turns, outbox, "")
    outbox.put("Wanted")
    first = drain(handlers["send"].fn(chat.data(inputs(vector_file), history=turns, outbox=outbox)))
    second = drain(handlers["send"].fn(chat.data(inputs(vector_file), history=turns, outbox=outbox)))
    assert [t.user for t in turns] == ["Wanted"] and turns[0].status == "done"
    assert len(first) > 2 and second == [(SKIP, SKIP, SKIP, *second[0][3:])]


@pytest.mark.integration
def test_choosing_a_behavior_moves_layer_and_alpha_to_its_own_recipe(embedded_engine):
    """A behavior chosen in the dropdown ran at the default behavior's layer and α (enthusiasm at refusal's
    layer 13, α 1.5: garbled with a relative-unit recipe). Only a choice by hand moves them (`input`, not
    `change`), so a link that sets behavior, layer and α together keeps its own values."""
    demo = app.build_app(embedded_engine, embedded_engine.config)
    follow = app_harness.handlers_of(demo)["follow_behavior"]
    assert [event for _, event in follow.targets] == ["input"]
    for behavior in ("refusal", "enthusiasm"):
        recipe = embedded_engine.recipe(behavior)
        assert follow.fn(behavior) == (recipe.layer, recipe.strength)
    assert embedded_engine.recipe("enthusiasm").layer != embedded_engine.recipe("refusal").layer
    assert follow.fn("Uploaded: mine.safetensors") == (SKIP, SKIP)  # an uploaded file keeps the sliders


def test_send_shows_its_busy_label_on_every_turn(handlers, chat, vector_file, engine):
    """Gradio pops "value" out of an update dict as it sends it: a Send update shared between turns said
    "⏳ Generating…" on the first turn only (the browser test of the prompted panes saw "Send" all along)."""
    from gradio.blocks import postprocess_update_dict

    for text in ("One", "Two"):
        outbox = app.Outbox()
        _, send_btn, _ = handlers["take_message"].fn(chat.data(inputs(vector_file), prompt=text, outbox=outbox))
        assert send_btn["value"] == "⏳ Generating…"
        postprocess_update_dict(chat.tab.send_btn, send_btn)  # what Gradio does with it
        updates = drain(handlers["send"].fn(chat.data(inputs(vector_file), history=[], outbox=outbox)))
        assert updates[0][3]["value"] == "⏳ Generating…" and updates[-1][3]["value"] == "Send"
        for update in (updates[0][3], updates[-1][3]):
            postprocess_update_dict(chat.tab.send_btn, update)
    wait_unlocked(engine)


def test_a_broken_recipe_fails_the_turn_in_the_panes(handlers, vector_file, engine, monkeypatch):
    """The subtracted pane's caption reads the recipe (its own strength); a defaults file that cannot be read
    fails the turn in the panes with its one-line message, like the comparison itself, and the app keeps serving."""
    from steering.errors import SteeringError

    def broken(*args, **kwargs):
        raise SteeringError("smollm2-135m-instruct.defaults.json: recipe.band: expected an integer >= 1, found 0")

    monkeypatch.setattr(engine, "recipe", broken)
    monkeypatch.setattr(engine, "compare", broken)
    turns: list = []
    last = drain(send(handlers, "Hi", turns, inputs(vector_file)))[-1]
    assert all("recipe.band: expected an integer >= 1, found 0" in pane[-1]["content"] for pane in last[:3])
    assert [t.status for t in turns] == ["failed"] and last[3]["interactive"] is True
    monkeypatch.undo()
    drain(send(handlers, "Again", turns, inputs(vector_file)))
    assert [t.status for t in turns] == ["failed", "done"]
