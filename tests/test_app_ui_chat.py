"""The app's plain helpers (steering/ui_chat.py): no model, no server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from steering.errors import SteeringError
from steering.ui_chat import VectorChoice, check_upload, conversation, pane_labels, sampling, text_of, trim_prompt
from steering.vector_files import VectorSet, load_vectors, save_caa_layout, save_gguf, save_safetensors

HIDDEN, LAYERS = 8, 4
FAKE_ENGINE = SimpleNamespace(load_vector_file=lambda p: load_vectors(p, "m").validate(HIDDEN, LAYERS))


def test_message_content_may_arrive_as_blocks():
    assert text_of([{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]) == "Hello"
    assert text_of({"type": "text", "text": "Hi"}) == "Hi"
    assert text_of(None) == ""
    history = [{"role": "system", "content": "x"}, {"role": "user", "content": [{"type": "text", "text": "Q"}]},
               {"role": "assistant", "content": "A", "metadata": None}]
    assert conversation(history) == [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert conversation(None) == []


def test_trim_and_labels_and_sampling():
    assert trim_prompt("  hi  ", 10) == ("hi", False)
    assert trim_prompt("x" * 25, 10) == ("x" * 10, True)
    assert pane_labels(2.5) == ("Added steering (+α = +2.5)", "Unsteered (α = 0)", "Subtracted steering (−α = −2.5)")
    assert sampling(16, 0.7, 0.9, 3).seed == 3
    assert sampling(16, 0.7, 0.9, 3, random_seed=True).seed is None
    with pytest.raises(SteeringError, match="top_p"):
        sampling(16, 0.7, 0.0, 3)


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
