"""The app's plain helpers (steering/ui/chat.py): no model, no server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from steering.core.limits import Limits
from steering.errors import SteeringError
from steering.io.caa_pt import save_caa_layout
from steering.io.gguf_vectors import save_gguf
from steering.io.vector_files import save_safetensors
from steering.io.vector_set import VectorSet
from steering.io.vector_store import load_vectors
from steering.ui.chat import Turn, conversations, discard_upload, keep_upload, pane_labels, render
from steering.ui.checks import VectorChoice, check_behavior, check_settings, check_upload, public_message, trim_prompt

HIDDEN, LAYERS = 8, 4
FAKE_ENGINE = SimpleNamespace(load_vector_file=lambda p: load_vectors(p, "m").validate(HIDDEN, LAYERS))


def test_trim_and_labels():
    assert trim_prompt("  hi  ", 10) == ("hi", False)
    assert trim_prompt("x" * 25, 10) == ("x" * 10, True)
    # the titles carry no α: moving the slider must not relabel answers made at another α (captions say it)
    assert pane_labels() == ("Added steering (+α)", "Unsteered (α = 0)", "Subtracted steering (−α)")


def test_uploads_are_checked_for_size_and_fit(tmp_path):
    good = save_safetensors(VectorSet({1: torch.ones(HIDDEN), 2: torch.ones(HIDDEN)}), tmp_path / "good.safetensors")
    assert check_upload(FAKE_ENGINE, good, max_mb=1) == "good.safetensors: layers 1, 2"
    with pytest.raises(SteeringError, match=r"good.safetensors is 0.0 MB; the limit is 1e-06 MB"):
        check_upload(FAKE_ENGINE, good, max_mb=1e-6)
    wrong = save_safetensors(VectorSet({1: torch.ones(HIDDEN + 1)}), tmp_path / "wrong.safetensors")
    with pytest.raises(SteeringError, match="^wrong.safetensors: layer 1: vector size 9 does not match") as info:
        check_upload(FAKE_ENGINE, wrong, max_mb=1)
    assert str(tmp_path) not in str(info.value)  # the upload's temp folder means nothing to the user
    from safetensors.torch import save_file  # save_safetensors refuses to write NaN: write the bad file raw

    nan = tmp_path / "nan.safetensors"
    save_file({"layer.1": torch.full((HIDDEN,), float("nan"))}, str(nan))
    with pytest.raises(SteeringError, match="NaN"):
        check_upload(FAKE_ENGINE, nan, max_mb=1)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf")
    with pytest.raises(SteeringError, match="junk.gguf"):
        check_upload(FAKE_ENGINE, junk, max_mb=1)


def test_paper_layout_and_gguf_uploads(tmp_path):
    vset = VectorSet({layer: torch.randn(HIDDEN) for layer in range(1, LAYERS)})
    pt = save_caa_layout(vset, tmp_path, "m")[0]
    assert check_upload(FAKE_ENGINE, pt, max_mb=1) == "vec_layer_1_m.pt: layers 1"
    gguf = save_gguf(vset, tmp_path / "cv.gguf")
    assert check_upload(FAKE_ENGINE, gguf, max_mb=1) == "cv.gguf: layers 1–3"


def test_vector_choice_is_per_request(tmp_path):
    path = str(save_safetensors(VectorSet({2: torch.ones(HIDDEN)}), tmp_path / "mine.safetensors"))
    uploads = {"Uploaded: mine.safetensors": path}
    assert VectorChoice.parse("Uploaded: mine.safetensors", uploads) == VectorChoice(None, path)
    assert VectorChoice.parse("refusal", uploads) == VectorChoice("refusal", None)
    assert torch.equal(VectorChoice(None, path).vector(FAKE_ENGINE, 2), torch.ones(HIDDEN))
    with pytest.raises(SteeringError, match="^mine.safetensors has no vector for layer 3"):
        VectorChoice(None, path).vector(FAKE_ENGINE, 3)
    with pytest.raises(SteeringError, match="choose a steering vector"):
        VectorChoice(None, None).vector(FAKE_ENGINE, 2)


LIMITS = Limits()  # max_new_tokens 1024, |multiplier| <= 100
GOOD = dict(layer=2, multiplier=2.0, max_new_tokens=64, temperature=0.7, top_p=0.9, seed=5)


def settings(**changes):
    return check_settings(LAYERS, LIMITS, **{**GOOD, **changes})


def test_settings_are_checked_against_the_ui_ranges():
    """The API accepted max_new_tokens 1500, NaN/inf multipliers and seeds that overflow torch (issue 10, item 10)."""
    ok = settings(system_prompt="  Be brief.  ")
    assert (ok.layer, ok.multiplier, ok.system_prompt) == (2, 2.0, "Be brief.")
    assert (ok.sampling.max_new_tokens, ok.sampling.temperature, ok.sampling.top_p, ok.sampling.seed) == (
        64,
        0.7,
        0.9,
        5,
    )
    assert settings(seed=None).sampling.seed is None
    assert settings(seed=99999999999999999999999, random_seed=True).sampling.seed is None  # the seed is not used
    assert settings(layer=3.0, max_new_tokens="16").layer == 3
    bad = {
        "max_new_tokens 1500 is out of range: expected 1 to 1024": dict(max_new_tokens=1500),
        "max_new_tokens 0 is out of range": dict(max_new_tokens=0),
        "max_new_tokens must be a whole number": dict(max_new_tokens=2.5),
        "multiplier \\(α\\) must be a finite number": dict(multiplier=float("nan")),
        "multiplier \\(α\\) must be a finite number, got inf": dict(multiplier=float("inf")),
        "multiplier \\(α\\) 1e\\+30 is out of range": dict(multiplier=1e30),
        "seed 99999999999999999999999 is out of range": dict(seed=99999999999999999999999),
        "seed -1 is out of range": dict(seed=-1),
        "temperature nan is out of range: expected 0 to 2": dict(temperature=float("nan")),
        "temperature 5 is out of range": dict(temperature=5),
        "top_p 0 is out of range: expected 0.05 to 1": dict(top_p=0),
        "layer 4 is out of range: expected 0 to 3": dict(layer=4),
        "layer must be a whole number, got True": dict(layer=True),
        "layer must be a whole number, got 'x'": dict(layer="x"),
        "system_prompt must be text": dict(system_prompt=["x"]),
    }
    for message, change in bad.items():
        with pytest.raises(SteeringError, match=f"^{message}"):
            settings(**change)


def test_behavior_is_a_name_and_messages_carry_no_server_paths():
    engine = SimpleNamespace(behaviors=lambda: ["refusal"])
    assert check_behavior(engine, "refusal") == "refusal"
    for path in ("/work/main/vectors/refusal", "../../x", "refusal/../refusal", "C:\\vectors\\refusal"):
        with pytest.raises(SteeringError, match="^behavior must be a name such as 'refusal', not a path$"):
            check_behavior(engine, path)
    with pytest.raises(SteeringError, match="^behavior name '' is not valid"):
        check_behavior(engine, "")
    with pytest.raises(SteeringError, match="^no 'sycophancy' vectors for this model; known behaviors: refusal$"):
        check_behavior(engine, "sycophancy")
    old = (
        "no 'sycophancy' vectors for smollm2 (/srv/app/vectors/sycophancy/smollm2.safetensors missing); "
        "known behaviors: refusal; make them with: python -m steering extract --behavior sycophancy"
    )
    assert (
        public_message(SteeringError(old))
        == "no 'sycophancy' vectors for smollm2 (smollm2.safetensors missing); known behaviors: refusal"
    )
    assert (
        public_message(FileNotFoundError(2, "No such file", "/tmp/x/y/v.pt"))
        == "FileNotFoundError: [Errno 2] No such file: 'v.pt'"
    )
    assert public_message(SteeringError("layer 3: ok")) == "layer 3: ok"


def turn(status="done", **changes):
    t = Turn("Hi", 2.0, 9, "refusal", 16)
    t.answers, t.new_tokens, t.status = ["Nope.", "Hello!", "Sure!"], [3, 5, 2], status
    for key, value in changes.items():
        setattr(t, key, value)
    return t


def test_failed_turn_is_shown_but_never_fed_back():
    """A failure's text was stored as the answer and fed back next turn (issue 10, item 10)."""
    failed = Turn("Again", 2.0, 9, "refusal", 16)
    failed.fail("ValueError: Overflow when unpacking long long")
    turns = [turn(), failed]
    assert conversations(turns) == [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": a}] for a in ("Nope.", "Hello!", "Sure!")
    ]
    panes = render(turns)
    assert [m["role"] for m in panes[0]] == ["user", "assistant", "user", "assistant"]
    assert all("⚠️ Generation failed: ValueError: Overflow" in pane[-1]["content"] for pane in panes)
    assert "not part of the conversation" in panes[1][-1]["content"]
    # unfinished turns and turns stopped before any text are not fed back either
    assert conversations([turn(status="running")]) == [[], [], []]
    assert conversations([turn(status="stopped", answers=["", "", ""])]) == [[], [], []]
    assert conversations([turn(status="stopped")])[2][-1]["content"] == "Sure!"


def test_each_answer_carries_the_settings_that_made_it():
    """Captions: α, layer and vector per answer; cut by the token limit or stopped says so (issue 10, item 10)."""
    done = turn()
    assert [done.caption(p) for p in range(3)] == [
        "+α = +2 · layer 9 · refusal",
        "α = 0 (unsteered)",
        "−α = −2 · layer 9 · refusal",
    ]
    assert turn(new_tokens=[16, 3, 16]).caption(0).endswith("cut at the limit of 16 new tokens")
    assert turn(status="stopped").caption(2).endswith("· stopped")
    assert turn(status="running").caption(1) == "α = 0 (unsteered) · writing…"
    shown = render([done, turn(multiplier=5.0, layer=11, vector="mine.safetensors")])
    assert shown[0][1]["content"] == "Nope.\n\n<sub>+α = +2 · layer 9 · refusal</sub>"
    assert shown[0][3]["content"].endswith("<sub>+α = +5 · layer 11 · mine.safetensors</sub>")
    assert conversations([done])[0][1]["content"] == "Nope."  # the model never sees a caption
    # a recipe whose subtracted side has its own strength (strength_minus 2 at strength 1.5): that pane says so
    own = turn(multiplier=1.5, minus_ratio=2.0 / 1.5)
    assert own.caption(2) == "−α = −1.5 × 1.33 on this side = −2 · layer 9 · refusal"
    assert own.caption(0) == "+α = +1.5 · layer 9 · refusal"


def test_uploads_leave_gradios_cache_for_a_private_folder(tmp_path):
    """Uploads stayed in Gradio's URL-readable cache forever (issue 10, item 10)."""
    cache = tmp_path / "gradio" / "0123abcd"
    cache.mkdir(parents=True)
    (cache / "v.safetensors").write_bytes(b"x")
    kept = keep_upload(cache / "v.safetensors", tmp_path / "session")
    assert kept == tmp_path / "session" / "v.safetensors" and kept.read_bytes() == b"x"
    assert not cache.exists()  # the cache's folder for the file is gone
    assert (tmp_path / "session").stat().st_mode & 0o077 == 0  # private to the server's user
    (cache).mkdir()
    (cache / "v.safetensors").write_bytes(b"y")
    assert keep_upload(cache / "v.safetensors", tmp_path / "session").name == "v-1.safetensors"
    discard_upload(kept)
    assert not kept.exists()
    discard_upload(None)
    discard_upload(tmp_path / "missing.pt")


def test_norm_note_describes_the_recipe_the_panes_use():
    from steering.core.recipe import Recipe
    from steering.ui.checks import norm_note

    vector = torch.ones(4) * 2.0  # norm 4
    engine = SimpleNamespace(lm=SimpleNamespace(num_layers=30), relative_norm=lambda v, layer: float(v.norm()) / 10.0)
    band = norm_note(engine, vector, 13, 1.5, Recipe(layer=9, strength=1.5, band=3, plus="clamp", minus="add"))
    assert "**0.40×**" in band and "**0.60×**" in band  # 4 / 10, then x 1.5
    assert "layers 12–14" in band and "+α sets the part along the vector to α × its size at each layer" in band
    assert "−α adds −α × the vector, split over the 3 layers" in band
    edge = norm_note(engine, vector, 29, 1.0, Recipe(layer=9, strength=1.0, band=3, minus="ablate"))
    assert "layers 28–29" in edge and "−α removes the part along the vector at each layer" in edge
    own = norm_note(engine, vector, 16, 1.5, Recipe(layer=16, strength=1.5, band=3, plus="clamp", strength_minus=2.0))
    assert "−α adds −1.33α × the vector, split over the 3 layers" in own
    single = norm_note(engine, vector, 9, 2.0, Recipe(layer=9, strength=2.0))
    assert "Applied at layer 9: +α adds α × the vector; −α adds −α × the vector." in single


def test_markdown_text_shows_text_as_typed():
    from steering.ui.checks import markdown_text

    assert markdown_text("vec_layer_<L>_<model>.pt & *x* `y` [z]") == (
        "vec\\_layer\\_&lt;L&gt;\\_&lt;model&gt;.pt &amp; \\*x\\* \\`y\\` \\[z\\]"
    )
