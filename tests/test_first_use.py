"""Vectors on first use (issue 14 item 6): a model with no vectors for a behavior whose dataset ships gets them
built, cached with metadata, and steers at the model's default layer until tuned.

The model is a tiny random Llama (6 layers) saved with a Llama-style tokenizer and a ChatML chat template to
a folder, loaded through `--model FOLDER` like any hub model; everything is written into a temporary data
home (LLAMA_STEERING_HOME), never into the checkout's vectors/.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from chat_templates import sentencepiece_tokenizer
from fixtures import make_tiny_model

from steering.cli import main
from steering.config import load_config
from steering.core.datasets import load_ab_dataset
from steering.engine import Engine
from steering.errors import SteeringError
from steering.extract import first_use
from steering.extract.extraction import extract_vectors
from steering.io.vector_files import load_safetensors
from steering.models import load_model

PAIRS = [
    ("Will you help me cheat on my exam?", "No, I won't help with that.", "Sure, here is how."),
    ("Can you tell me your favourite food?", "I don't have personal tastes.", "Pizza, easily."),
    ("Write malware that steals passwords.", "I can't write that.", "Here is the code."),
    ("What do you dream about?", "I don't dream; I'm an AI.", "Flying over the sea."),
    ("How do I pick a lock to a house that isn't mine?", "I can't help with that.", "Use a tension wrench."),
]


def ab_items() -> list[dict[str, str]]:
    items = []
    for index, (question, refuse, comply) in enumerate(PAIRS):
        first, second = (refuse, comply) if index % 2 == 0 else (comply, refuse)
        items.append(
            {
                "question": f"{question}\n\nChoices:\n(A) {first}\n(B) {second}",
                "answer_matching_behavior": "(A)" if index % 2 == 0 else "(B)",
                "answer_not_matching_behavior": "(B)" if index % 2 == 0 else "(A)",
            }
        )
    return items


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny random Llama chat model on disk: config, weights, tokenizer with a ChatML template."""
    folder = tmp_path_factory.mktemp("models") / "tiny-chat-model"
    tok = sentencepiece_tokenizer("chatml")
    model = make_tiny_model(len(tok), layers=6)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch, model_folder):
    """A data home with a config (default layer fraction 0.5, one thread) and one behavior's dataset."""
    home = tmp_path / "home"
    (home / "datasets" / "politeness").mkdir(parents=True)
    (home / "datasets" / "politeness" / "generate.json").write_text(json.dumps(ab_items()))
    (home / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name": str(model_folder), "threads": 1, "cuda_graphs": False},
                "behavior": "politeness",
                "default_model_settings": {"read_mode": "answer-mean", "layer_fraction": 0.5, "multiplier": 2.0},
            }
        )
    )
    monkeypatch.setenv("LLAMA_STEERING_HOME", str(home))
    return home


def engine_for(home) -> Engine:
    config = load_config()
    return Engine(load_model(config.model), config)


def test_cli_builds_missing_vectors_caches_them_and_uses_the_default_layer(home, capsys, monkeypatch, model_folder):
    monkeypatch.setattr(first_use, "CHUNK_PAIRS", 2)  # three chunks: the chunk means must combine exactly
    assert main(["build-vectors"]) == 0
    out = capsys.readouterr().out
    path = home / "vectors" / "politeness" / "tiny-chat-model.safetensors"
    assert f"built {path} (6 layers, 5 pairs" in out
    assert "steering at layer 3 (the model's default) until tuned" in out  # round(0.5 x 6 layers)
    vset = load_safetensors(path)
    assert vset.layers == list(range(6))
    meta = vset.metadata
    assert meta["made_by"].startswith("first use") and meta["pairs"] == "5" and meta["read_mode"] == "answer-mean"
    assert meta["behavior"] == "politeness" and meta["model"] == str(model_folder) and len(meta["dataset_sha256"]) == 64
    # the same vectors as one extraction over all pairs
    engine = engine_for(home)
    items = load_ab_dataset(home / "datasets" / "politeness" / "generate.json", "answer-mean")
    direct = extract_vectors(engine.lm.model, engine.lm.tokenizer, items, list(range(6)), "answer-mean", progress=False)
    for layer in range(6):
        assert torch.allclose(vset.vector(layer), direct[layer], atol=1e-5, rtol=1e-4)
    assert engine.recipe("politeness").layer == 3 and first_use.missing_behaviors(engine) == []
    assert main(["build-vectors"]) == 0
    assert "nothing to build" in capsys.readouterr().out


def test_chat_offers_the_build_and_builds_with_the_flag(home, capsys):
    assert main(["chat", "--prompt", "hi", "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no 'politeness' vectors for" in err and "--build-vectors" in err
    assert not (home / "vectors").exists()
    assert main(["chat", "--prompt", "hi", "--max-new-tokens", "2", "--build-vectors", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "built " in err and (home / "vectors" / "politeness" / "tiny-chat-model.safetensors").is_file()
    assert json.loads(out)["settings"]["layer"] == 3  # the model's default layer until tuned


def test_engine_build_reports_progress_and_a_failed_build_leaves_the_old_state(home, monkeypatch):
    engine = engine_for(home)
    assert first_use.missing_behaviors(engine) == ["politeness"]
    with pytest.raises(SteeringError, match="no 'politeness' vectors"):
        engine.vectors_for("politeness")
    calls = []

    def broken(*args, **kwargs):
        if len(calls) > 1:
            raise RuntimeError("out of memory")
        return extract_vectors(*args, **kwargs)

    monkeypatch.setattr(first_use, "extract_vectors", broken)
    monkeypatch.setattr(first_use, "CHUNK_PAIRS", 2)
    with pytest.raises(RuntimeError):
        first_use.build_vectors(engine, "politeness", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 5), (2, 5)]  # stopped in the second chunk
    assert not list((home / "vectors").rglob("*.safetensors"))  # nothing written
    monkeypatch.setattr(first_use, "extract_vectors", extract_vectors)
    calls.clear()
    result = first_use.build_vectors(engine, "politeness", progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert engine.vectors_for("politeness").layers == list(range(6)) and result.default_layer == 3
    with pytest.raises(SteeringError, match="already has vectors"):
        first_use.build_vectors(engine, "politeness")
    before = result.path.read_bytes()
    monkeypatch.setattr(first_use, "extract_vectors", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        first_use.build_vectors(engine, "politeness", force=True)
    assert result.path.read_bytes() == before  # the old file stays


def test_nothing_to_build_from(home, capsys):
    assert main(["build-vectors", "--behavior", "sycophancy"]) == 2
    assert "no dataset for 'sycophancy' to build vectors from (shipped: politeness)" in capsys.readouterr().err


def app_handler(demo, name):
    return next(block.fn for block in demo.fns.values() if getattr(block.fn, "__name__", "") == name)


def test_app_button_builds_with_progress_and_offers_the_behavior(home):
    """The app's first-use row: offered when a dataset ships without vectors; Build reports progress
    (gr.Progress), caches the vectors, lists and selects the behavior, and hides the row."""
    import app

    engine = engine_for(home)
    demo = app.build_app(engine, engine.config)
    build = app_handler(demo, "build")
    seen = []
    status, note, offered, row, choice, mixing, layer = build(
        "politeness", None, {}, progress=lambda fraction, desc="": seen.append((round(fraction, 2), desc))
    )
    assert note == ""
    assert layer == 3  # the layer slider moves to the model's default layer (until tuned)
    assert status.startswith("Built 'politeness' vectors: 6 layers, 5 pairs") and "layer 3" in status
    assert seen[0] == (0.0, "building 'politeness' vectors: 0/5 pairs") and seen[-1][0] == 1.0
    assert (home / "vectors" / "politeness" / "tiny-chat-model.safetensors").is_file()
    assert offered["choices"] == [] and row["visible"] is False
    assert choice["value"] == "politeness" and ("politeness", "politeness") in [tuple(c) for c in choice["choices"]]
    assert "politeness" in [c if isinstance(c, str) else c[1] for c in mixing["choices"]]
    status, *_ = build("politeness", "politeness", {}, progress=lambda *a, **k: None)  # a second press: already there
    assert status.startswith("⚠️ **Not built:**") and "already has vectors" in status


def test_app_page_load_shows_the_vectors_and_datasets_as_they_are_now(home):
    """The first-use offer and the Behavior choices are computed per page load (demo.load), not once when the
    UI is built: vectors built since (by another visitor, the CLI) show on a fresh page, with no stale offer."""
    import app

    engine = engine_for(home)
    demo = app.build_app(engine, engine.config)  # started with no vectors: politeness offered
    load = app_handler(demo, "refresh_behaviors")
    note, offered, row, choice, mixing = load(None, {})
    assert "No vectors yet" in note and "politeness" in note and row["visible"] is True
    assert offered["choices"] == ["politeness"] and choice["choices"] == []
    first_use.build_vectors(engine, "politeness")  # meanwhile, elsewhere
    note, offered, row, choice, mixing = load(None, {})  # a fresh page
    assert note == "" and row["visible"] is False and offered["choices"] == []
    assert choice["value"] == "politeness" and [tuple(c) for c in choice["choices"]] == [("politeness", "politeness")]
    assert "politeness" in [c if isinstance(c, str) else c[1] for c in mixing["choices"]]
    assert "value" not in load("politeness", {})[3]  # a valid choice is left alone (no change event)
    (home / "datasets" / "kindness").mkdir()  # a dataset added after the start is offered on the next page
    (home / "datasets" / "kindness" / "generate.json").write_text(json.dumps(ab_items()))
    note, offered, row, *_ = load("politeness", {})
    assert offered["choices"] == ["kindness"] and row["visible"] is True and "kindness" in note


def test_build_vectors_skips_a_broken_dataset_and_builds_the_rest(home, capsys):
    broken = home / "datasets" / "aaa-broken"
    broken.mkdir()
    (broken / "generate.json").write_text('[{"question": ')  # not valid JSON; sorted before politeness
    assert main(["build-vectors"]) == 2
    out, err = capsys.readouterr()
    assert (home / "vectors" / "politeness" / "tiny-chat-model.safetensors").is_file() and "built " in out
    skipped = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and skipped[0].startswith("skipped 'aaa-broken': ") and "generate.json" in skipped[0]
    assert "1 of 2 behaviors not built: aaa-broken" in err
    assert not (home / "vectors" / "aaa-broken").exists()
    # the app does not offer it, but says why
    engine = engine_for(home)
    assert first_use.offered_behaviors(engine)[0] == []
    assert "aaa-broken" in first_use.offered_behaviors(engine)[1]
    from steering.ui.mix import first_use_view

    note, offered, row = first_use_view(engine, {})[2:5]
    assert offered["choices"] == [] and row["visible"] is True
    assert "'aaa-broken' cannot be built: its dataset does not load" in note and str(home) not in note


def test_force_with_fewer_pairs_warns_and_without_force_refuses(home, capsys):
    path = home / "vectors" / "politeness" / "tiny-chat-model.safetensors"
    assert main(["build-vectors"]) == 0
    full = path.read_bytes()
    capsys.readouterr()
    assert main(["build-vectors", "--behavior", "politeness", "--max-pairs", "2"]) == 2
    assert "already has vectors" in capsys.readouterr().err and path.read_bytes() == full
    assert main(["build-vectors", "--behavior", "politeness", "--max-pairs", "2", "--force"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "--force replaces" in warning[0] and "5 pairs" in warning[0]
    assert "loses 3 of its 5 pairs" in warning[0]
    assert load_safetensors(path).metadata["pairs"] == "2"
    assert main(["build-vectors", "--behavior", "politeness", "--force"]) == 0  # more pairs: no warning
    assert "warning:" not in capsys.readouterr().err
