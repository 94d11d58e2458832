"""Links that reproduce a view and the view as commands (steering/ui/links.py); no model, no browser."""

from __future__ import annotations

import shlex
from urllib.parse import parse_qsl, urlsplit

import pytest
import torch

from steering.core.limits import Limits
from steering.ui.commands import commands, gguf_name
from steering.ui.links import UPLOAD_NOTE, LinkView, link_for, link_problems_note, make_view, parse_link

BEHAVIORS = ["refusal", "sycophancy"]
LIMITS = Limits()


def parse(params):
    return parse_link(params, BEHAVIORS, num_layers=30, limits=LIMITS, alpha_max=10.0, max_chars=2000)


def test_a_link_round_trips_every_setting():
    view = make_view("Hi & bye? 50% off", "refusal", 1.5, 13, 0.7, "9223372036854775807", 48, 0.9, "Be brief.")
    link, note = link_for("http://127.0.0.1:7860/?old=1#x", "refusal", {}, view)
    assert link.startswith("http://127.0.0.1:7860/?message=Hi+%26+bye%3F+50%25+off&behavior=refusal")
    params = dict(parse_qsl(urlsplit(link).query))
    assert params == {
        "message": "Hi & bye? 50% off",
        "behavior": "refusal",
        "alpha": "1.5",
        "layer": "13",
        "temperature": "0.7",
        "seed": "9223372036854775807",
        "max_tokens": "48",
        "top_p": "0.9",
        "system": "Be brief.",
        "run": "1",
    }
    back = parse(params)
    assert back == LinkView(
        "Hi & bye? 50% off", "refusal", 1.5, 13, 0.7, "9223372036854775807", 48, 0.9, "Be brief.", True
    )
    assert "seed 9223372036854775807" in note


def test_defaults_are_left_out_and_greedy_is_named():
    view = make_view("Hello", "refusal", 2.0, 9, 0.0, "0", 64, 1.0, "")
    link, note = link_for("http://h/", "refusal", None, view)
    assert "top_p" not in link and "system" not in link and "greedy" in note


def test_an_uploaded_vector_gives_no_link_but_the_reason():
    view = make_view("Hello", "Uploaded: mine.safetensors", 2.0, 9, 0.0, "0", 64)
    link, note = link_for("http://h/", "Uploaded: mine.safetensors", {"Uploaded: mine.safetensors": "/tmp/x"}, view)
    assert link == "" and note == UPLOAD_NOTE and "cannot travel in a link" in note


def test_no_message_fills_settings_only_and_random_seed_warns():
    link, note = link_for("http://h/", "refusal", {}, make_view("", "refusal", 2.0, 9, 0.0, "0", 64))
    assert "run=1" not in link and "message" not in link and "settings only" in note
    _, note = link_for("http://h/", "refusal", {}, make_view("Hi", "refusal", 2, 9, 0.8, "3", 64), random_seed=True)
    assert "New random seed every time" in note


@pytest.mark.parametrize(
    "key,value,problem",
    [
        ("alpha", "abc", "alpha: α must be a number"),
        ("alpha", "11", "alpha: α '11' is out of range"),
        ("layer", "30", "layer: layer 30 is out of range: expected 0 to 29"),
        ("layer", "2.5", "layer: layer must be a whole number"),
        ("temperature", "nan", "temperature: temperature 'nan' is out of range"),
        ("seed", "-1", "seed: seed -1 is out of range"),
        ("max_tokens", "0", "max_tokens: max tokens 0 is out of range"),
        ("behavior", "../etc", "behavior: '../etc' is not a behavior of this model"),
        ("message", "x" * 2001, "message: 2001 characters long; the limit is 2000"),
    ],
)
def test_a_bad_value_is_named_and_left_out(key, value, problem):
    view = parse(
        {key: value, "layer": "5", "run": "1", "message": "Hi"}
        if key not in ("layer", "message")
        else {key: value, "run": "1"}
    )
    assert getattr(view, key) is None
    assert len(view.problems) == 1 and view.problems[0].startswith(problem)
    assert link_problems_note(view).startswith("This link had settings the app cannot use")


def test_run_needs_a_message_and_unknown_keys_are_ignored():
    assert parse({"run": "1", "alpha": "2"}).run is False
    assert parse({"run": "1", "message": "Hi", "utm_source": "x"}).run is True
    assert parse({}) == LinkView() and link_problems_note(LinkView()) == ""


def command_args(**over):
    args = dict(
        vector_source="vectors/refusal/smollm2-135m-instruct.safetensors",
        vector_name="refusal",
        behavior="refusal",
        model="smollm2-135m-instruct",
        model_slug="smollm2-135m-instruct",
        model_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        layer=13,
        alpha=1.5,
        llama_scale=1.5,
        message="What's up?",
        temperature=0.0,
        seed="0",
        max_tokens=64,
    )
    args.update(over)
    return args


def test_commands_name_the_exported_file_and_the_settings():
    llama, cli = commands(**command_args(recipe_note="band of 3 around layer 13, +clamp / -add"))
    out = gguf_name("refusal", "smollm2-135m-instruct", 13)
    assert out == "refusal-smollm2-135m-instruct-layer13.gguf"
    lines = [line for line in llama.splitlines() if not line.startswith("#")]
    assert shlex.split(lines[0]) == [
        "python",
        "-m",
        "steering",
        "export-gguf",
        "vectors/refusal/smollm2-135m-instruct.safetensors",
        out,
        "--layers",
        "13",
    ]
    plus, minus = (shlex.split(line) for line in lines[1:3])
    assert plus[plus.index("--control-vector-scaled") + 1 :][:2] == [out, "1.5"]
    assert minus[minus.index("--control-vector-scaled") + 2] == "-1.5"
    assert plus[plus.index("--control-vector-layer-range") + 1 :][:2] == ["13", "13"]
    assert plus[-2:] == ["-p", "What's up?"] and "band of 3" in llama
    assert shlex.split(cli) == [
        "python",
        "-m",
        "steering",
        "chat",
        "--model",
        "smollm2-135m-instruct",
        "--behavior",
        "refusal",
        "--layer",
        "13",
        "--multiplier",
        "1.5",
        "--max-new-tokens",
        "64",
        "--temperature",
        "0",
        "--seed",
        "0",
        "--prompt",
        "What's up?",
    ]


def test_commands_for_an_upload_and_for_layer_0():
    llama, cli = commands(
        **command_args(
            vector_source="mine.safetensors",
            vector_name="mine.safetensors",
            behavior=None,
            top_p=0.9,
            system="Be brief.",
        )
    )
    assert "mine-smollm2-135m-instruct-layer13.gguf" in llama
    assert "--vector mine.safetensors" in cli and "--top-p 0.9" in cli and "--system-prompt 'Be brief.'" in cli
    llama, _ = commands(**command_args(layer=0))
    assert "no layer 0" in llama and "llama-cli" not in llama


def test_the_export_line_writes_the_file_llama_cpp_reads(tmp_path, monkeypatch):
    """Run the copied export line's arguments through this project's CLI (a small vector set)."""
    from steering import cli
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet
    from steering.io.vector_store import load_vectors

    src = tmp_path / "refusal.safetensors"
    save_safetensors(VectorSet({1: torch.ones(8), 2: torch.arange(8.0)}, metadata={"model": "tiny"}), src)
    llama, _ = commands(**command_args(vector_source=str(src), layer=2))
    export = shlex.split(next(line for line in llama.splitlines() if "export-gguf" in line))
    monkeypatch.chdir(tmp_path)
    assert cli.main(export[3:]) == 0
    written = load_vectors(tmp_path / gguf_name("refusal", "smollm2-135m-instruct", 2))
    assert written.layers == [2] and torch.equal(written.vector(2), torch.arange(8.0))


def test_command_text_for_the_apps_controls(tiny_tokenizer, tmp_path):
    """The app's text on a tiny model: a shipped-style behavior (vectors_dir in tmp) and an uploaded file."""

    from fixtures import make_tiny_engine

    from steering.config import load_config, override
    from steering.errors import SteeringError
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet
    from steering.ui.commands import command_text

    config = load_config()
    config = override(config, vectors_dir=str(tmp_path / "vectors"))
    torch.manual_seed(0)
    vset = VectorSet({1: torch.randn(64), 2: torch.randn(64)}, metadata={"model": "tiny"})
    save_safetensors(vset, tmp_path / "vectors" / "refusal" / "tiny.safetensors")
    upload = save_safetensors(vset, tmp_path / "mine.safetensors")
    engine = make_tiny_engine(tiny_tokenizer, config=config)
    text = command_text(engine, "refusal", {}, 2, 1.5, "Hi there", 0, "0", 16)
    assert "export-gguf" in text and "refusal-tiny-layer2.gguf 1.5 --control-vector-layer-range 2 2" in text
    assert "refusal-tiny-layer2.gguf -1.5" in text and "-m MODEL.gguf" in text
    assert "python -m steering chat --model tiny --behavior refusal --layer 2 --multiplier 1.5" in text
    text = command_text(
        engine, "Uploaded: mine.safetensors", {"Uploaded: mine.safetensors": str(upload)}, 1, 2, "", 0.5, "7", 16, 0.9
    )
    assert "export-gguf mine.safetensors mine-tiny-layer1.gguf --layers 1" in text
    assert "--vector mine.safetensors" in text and "--seed 7" in text and str(tmp_path) not in text
    with pytest.raises(SteeringError, match="layer 9 is out of range"):
        command_text(engine, "refusal", {}, 9, 1.5, "Hi", 0, "0", 16)


def test_the_apps_link_handlers(tiny_tokenizer, tmp_path):
    """open_link (demo.load) fills the controls from the query string and hands a run=1 message to the send
    step; copy_link makes the link from the controls (the last message sent when the box is empty)."""
    from types import SimpleNamespace

    import app_harness
    import gradio as gr
    from fixtures import make_tiny_lm

    import app
    from steering.config import load_config, override
    from steering.engine import Engine
    from steering.io.vector_files import save_safetensors
    from steering.io.vector_set import VectorSet
    from steering.ui.chat import Turn
    from steering.ui.settings import ChatSettings

    config = load_config()
    config = override(config, vectors_dir=str(tmp_path / "vectors"))
    save_safetensors(
        VectorSet({1: torch.ones(64), 2: torch.ones(64)}, metadata={"model": "tiny"}),
        tmp_path / "vectors" / "refusal" / "tiny.safetensors",
    )
    lm = make_tiny_lm(tiny_tokenizer)
    demo = app.build_app(Engine(lm, config), config)
    handlers = app_harness.handlers_of(demo)
    fns = {name: f.fn for name, f in handlers.items()}
    request = SimpleNamespace(
        query_params={"message": "Hi", "behavior": "refusal", "alpha": "2.5", "layer": "9", "seed": "7", "run": "1"}
    )
    with pytest.warns(UserWarning, match="layer: layer 9 is out of range: expected 0 to 3"):
        out = fns["open_link"](request)
    box, behavior, alpha, layer, temperature, seed, *_, run_message = out
    assert (behavior, alpha, seed, run_message) == ("refusal", 2.5, "7", "Hi")
    assert isinstance(box, type(gr.skip())) and isinstance(layer, type(gr.skip()))  # sent, not typed; bad: kept
    turns = [Turn("What's up?", 2.0, 1, "refusal", 16)]
    settings = ChatSettings("refusal", {}, 1, 2.0, 16, 0.0, 1.0, "0", False, "")
    data = app_harness.ChatInputs(handlers).data(settings, link_base="http://h:1/", history=turns, prompt="")
    link, note = fns["copy_link"](data)
    assert (
        link
        == (
            "http://h:1/?message=What%27s+up%3F&behavior=refusal&alpha=2&layer=1&temperature=0&seed=0"
            "&max_tokens=16&run=1"
        )
        and "greedy" in note
    )


def test_link_for_refuses_a_message_or_system_prompt_over_the_limit():
    """Tester's item 2: Copy link made a 100,000-character link that opened as an HTTP 500."""
    long = make_view("x" * 2001, "refusal", 2, 13, 0, "0", 16)
    assert link_for("http://h/", "refusal", {}, long, max_chars=2000) == (
        "",
        "No link: your message is 2001 characters long; the limit is 2000: shorten it.",
    )
    system = make_view("Hi", "refusal", 2, 13, 0, "0", 16, system="s" * 2001)
    assert link_for("http://h/", "refusal", {}, system, max_chars=2000)[1].startswith("No link: the system prompt")
    assert link_for("http://h/", "refusal", {}, make_view("x" * 2000, "refusal", 2, 13, 0, "0", 16), max_chars=2000)[
        0
    ].startswith("http://h/?message=xx")


def test_the_llama_lines_are_numbered_in_order():
    """Tester's item 7: both llama-cli lines were numbered "# 2."."""
    llama, _ = commands(**command_args())
    steps = [line.split(".", 1)[0] for line in llama.splitlines() if line.startswith("# ") and line[2].isdigit()]
    assert steps == ["# 1", "# 2", "# 3"]
