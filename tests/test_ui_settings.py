"""The chat's settings object (steering/ui/settings.py): validated by field name, read from Gradio's dict
input through the component map, and every field reaches the engine (chat turns and the API alike)."""

from __future__ import annotations

import inspect
from pathlib import Path
from unittest import mock

import app_harness
import pytest
import torch
from fixtures import make_tiny_lm

import app
from steering.config import load_config, override
from steering.engine import Engine
from steering.io.vector_files import load_safetensors, save_safetensors
from steering.io.vector_set import VectorSet
from steering.ui.settings import ChatSettings, Controls, SettingsError

LAYERS, HIDDEN = 4, 64


@pytest.fixture(scope="module")
def built(tiny_tokenizer, tmp_path_factory):
    """(engine, {handler name: BlockFunction}, ChatInputs, {upload entry: path}) of an app on a tiny model with
    two behaviors (alpha, beta) and an uploaded file."""
    tmp = tmp_path_factory.mktemp("settings")
    config = override(load_config(), vectors_dir=str(tmp / "vectors"))
    torch.manual_seed(0)
    for name in ("alpha", "beta"):
        vset = VectorSet({layer: torch.randn(HIDDEN) for layer in range(LAYERS)}, metadata={"model": "tiny"})
        save_safetensors(vset, tmp / "vectors" / name / "tiny.safetensors")
    mine = save_safetensors(VectorSet({2: torch.randn(HIDDEN)}), tmp / "mine.safetensors")
    engine = Engine(make_tiny_lm(tiny_tokenizer), config)
    handlers = app_harness.handlers_of(app.build_app(engine, config))
    return engine, handlers, app_harness.ChatInputs(handlers), {"Uploaded: mine.safetensors": str(mine)}


GOOD = ChatSettings("alpha", {}, 1, 2.0, 8, 0.0, 1.0, "0", False, "")


@pytest.mark.parametrize(
    ("field", "value", "start"),
    [
        ("layer", 9, "layer 9 is out of range: expected 0 to 3"),
        ("layer", "x", "layer must be a whole number"),
        ("alpha", float("nan"), "multiplier (α)"),
        ("alpha", 1e9, "multiplier (α)"),
        ("max_new_tokens", 0, "max_new_tokens 0 is out of range"),
        ("temperature", 5, "temperature 5 is out of range"),
        ("top_p", 0, "top_p 0 is out of range"),
        ("seed", "1.5", "seed"),
        ("system_prompt", 3, "system_prompt must be text"),
    ],
)
def test_a_bad_setting_is_refused_by_its_field_name(field, value, start):
    with pytest.raises(SettingsError) as caught:
        GOOD.changed(**{field: value}).turn(LAYERS, load_config().limits)
    assert caught.value.field == field
    message = str(caught.value)
    assert message.startswith(start) and "\n" not in message


def test_the_prompted_panes_prompts_are_refused_by_their_own_field():
    on = GOOD.changed(prompted=True, prompted_added="Ask for it.", prompted_subtracted="Avoid it.")
    assert on.prompts() == ("Ask for it.", "Avoid it.")
    assert GOOD.prompts() is None  # off: not checked
    for field in ("prompted_added", "prompted_subtracted"):
        with pytest.raises(SettingsError, match="is empty") as caught:
            on.changed(**{field: "  "}).prompts()
        assert caught.value.field == field


def test_controls_read_the_dict_by_field_and_know_only_fields():
    a, b = object(), object()
    controls = Controls({"layer": a, "alpha": b})
    assert controls.read({a: 3, b: 1.5, object(): "other"}) == ChatSettings(layer=3, alpha=1.5)
    assert controls.inputs("extra") == {a, b, "extra"} and controls.component("alpha") is b
    with pytest.raises(ValueError, match="no ChatSettings field named \\['colour'\\]"):
        Controls({"colour": a})
    with pytest.raises(TypeError):
        GOOD.changed(colour=1)


def test_the_app_has_a_control_for_every_field(built):
    _, handlers, chat, _ = built
    assert set(chat.controls.by_field) == set(ChatSettings.names())
    for name in ("take_message", "send", "retry", "strip", "copy_link", "copy_command", "send_linked"):
        inputs = {id(c) for c in handlers[name].inputs}
        assert handlers[name].inputs_as_dict, name  # one dict, read by field name
        assert all(id(c) in inputs for c in chat.controls.by_field.values()), name


def spy_on(engine, monkeypatch):
    """Engine.compare still runs; the returned mock keeps each call's keyword arguments."""
    spy = mock.Mock(wraps=engine.compare)
    monkeypatch.setattr(engine, "compare", spy)
    return spy


def test_every_chat_field_reaches_the_engine(built, monkeypatch):
    engine, handlers, chat, uploads = built
    spy = spy_on(engine, monkeypatch)
    # every field, in ChatSettings' order: behavior, uploads, layer, alpha, max_new_tokens, temperature, top_p,
    # seed, random_seed, system_prompt, prompted, prompted_added, prompted_subtracted, mix_behavior, mix_alpha
    values = ("Uploaded: mine.safetensors", uploads, 2, 1.5, 3, 0.7, 0.9, "1234", False, "Be brief.")
    settings = ChatSettings(*values, True, "Ask for it.", "Avoid it.", "beta", -2.0)
    outbox, turns = app.Outbox(), []
    outbox.put("Hello")
    list(handlers["send"].fn(chat.data(settings, history=turns, outbox=outbox)))
    assert turns[-1].status == "done", turns[-1].error
    call = spy.call_args.kwargs
    assert spy.call_count == 1
    assert (call["layer"], call["multiplier"], call["system_prompt"]) == (2, 1.5, "Be brief.")
    sampling = call["settings"]
    assert (sampling.max_new_tokens, sampling.temperature, sampling.top_p, sampling.seed) == (3, 0.7, 0.9, 1234)
    assert torch.equal(call["vector"], load_safetensors(Path(uploads["Uploaded: mine.safetensors"])).vectors[2])
    assert [c[0]["content"] for c in call["extra"]] == ["Ask for it.", "Avoid it."]  # the prompted panes
    assert call["mix"].multiplier == -2.0 and torch.equal(call["mix"].vector, engine.vectors_for("beta").vector(2))
    outbox.put("Again")
    list(handlers["send"].fn(chat.data(settings.changed(random_seed=True), history=turns, outbox=outbox)))
    assert spy.call_args.kwargs["settings"].seed is None  # a fresh seed every time


def test_every_api_parameter_reaches_the_engine(built, monkeypatch):
    engine, handlers, _, _ = built
    compare, compare_mix = handlers["compare"].fn, handlers["compare_mix"].fn
    names = list(inspect.signature(compare_mix).parameters)
    assert names[:9] == list(inspect.signature(compare).parameters)  # /compare keeps its 9 values
    assert names[9:] == ["mix_behavior", "mix_multiplier"]
    spy = spy_on(engine, monkeypatch)
    list(compare_mix("Hello", 1.5, 2, "alpha", 3, 0.7, 0.9, 1234, "Be brief.", "beta", -2.0))
    call = spy.call_args.kwargs
    assert spy.call_count == 1
    assert (call["layer"], call["multiplier"], call["system_prompt"]) == (2, 1.5, "Be brief.")
    sampling = call["settings"]
    assert (sampling.max_new_tokens, sampling.temperature, sampling.top_p, sampling.seed) == (3, 0.7, 0.9, 1234)
    assert torch.equal(call["vector"], engine.vectors_for("alpha").vector(2))
    assert call["conversations"] == [{"role": "user", "content": "Hello"}]
    assert call["mix"].multiplier == -2.0
    list(compare("Hello", max_new_tokens=2))  # the rest: the app's defaults
    assert spy.call_args.kwargs["mix"] is None and spy.call_args.kwargs["settings"].max_new_tokens == 2
