"""Dataset items checked as tokens before any model runs (issue 10 item 7 and "work bounded before it starts").

Options that tokenization empties, options with no text in answer-mean mode, prompts longer than the
model's context: one-line SteeringErrors naming the item's index and the option, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from fixtures import ab_item

from steering.config import PROJECT_ROOT
from steering.core.limits import model_context_length
from steering.errors import SteeringError
from steering.evaluation import ab_prompts
from steering.extract.extraction import extract_vectors, tokenize_pairs

GOOD = ab_item("Name a planet\n\nChoices:\n(A) I won't.\n(B) Mars.")


def test_empty_option_in_answer_mean_mode_is_a_one_line_error(tiny_model, tiny_tokenizer):
    empty = ab_item("Name a colour\n\nChoices:\n(A) Red.\n(B)")
    assert empty.choices["B"] == ""
    with pytest.raises(SteeringError, match=r"^dataset item 1: option \(B\) has no text: answer-mean mode reads"):
        extract_vectors(tiny_model, tiny_tokenizer, [GOOD, empty], [1], "answer-mean", progress=False)
    # letter mode never reads the option text
    vectors = extract_vectors(tiny_model, tiny_tokenizer, [GOOD, empty], [1], "letter", progress=False)
    assert torch.isfinite(vectors[1]).all()


def test_option_that_tokenizes_to_nothing(tiny_model):
    from fixtures import make_tiny_tokenizer
    from tokenizers import normalizers

    tokenizer = make_tiny_tokenizer()
    tokenizer.backend_tokenizer.normalizer = normalizers.Replace("\u200b", "")  # drops zero-width spaces
    invisible = ab_item("Pick one\n\nChoices:\n(A) \u200b\u200b\n(B) This one.", matching="B")
    with pytest.raises(SteeringError, match=r"^dataset item 2: option \(A\) is empty after tokenization"):
        tokenize_pairs(tokenizer, [GOOD, GOOD, invisible], "answer-mean")


def test_prompt_longer_than_the_context_is_refused_before_the_model_runs(tiny_model, tiny_tokenizer):
    context = model_context_length(tiny_model)
    assert context == 512
    long = ab_item("Please read this. " * 40 + "\n\nChoices:\n(A) No.\n(B) Yes.", matching="B")
    calls = []
    handle = tiny_model.model.layers[0].register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(
            SteeringError,
            match=r"^dataset item 1: the prompt with option \(B\) is \d+ tokens long; "
            r"the model's context is 512 tokens",
        ):
            extract_vectors(tiny_model, tiny_tokenizer, [GOOD, long], [1], "letter", progress=False)
    finally:
        handle.remove()
    assert calls == []  # refused before any forward pass
    with pytest.raises(
        SteeringError,
        match=r"^A/B item 1: the prompt is \d+ tokens long; the model's context is "
        r"512 tokens",
    ):
        ab_prompts(tiny_tokenizer, [GOOD, long], context_length=context)
    assert len(ab_prompts(tiny_tokenizer, [GOOD], context_length=context)) == 1


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steering", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "question, mode, fragment",
    [
        (
            "x" * 30_000 + "\n\nChoices:\n(A) a\n(B) b",
            "letter",
            "item 1: 'question' is 30,022 characters long; the limit is 20,000",
        ),
        ("Q?\n\nChoices:\n(A) a\n(B)", "answer-mean", "item 1: option (B) has no text"),
    ],
)
def test_extract_refuses_bad_items_before_loading_the_model(tmp_path, question, mode, fragment):
    good = {
        "question": "Q?\n\nChoices:\n(A) a\n(B) b",
        "answer_matching_behavior": "(A)",
        "answer_not_matching_behavior": "(B)",
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps([good, dict(good, question=question)]))
    out = tmp_path / "v.safetensors"
    result = _run_cli("extract", "--dataset", str(path), "--read-mode", mode, "--out", str(out))
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and fragment in lines[0]
    assert not out.exists()
