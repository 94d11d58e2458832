"""Dataset items are checked against limits.max_prompt_tokens (not only the model's context) before the model
runs, in every dataset reader of extract, with a one-line message naming the file, the item, the option and
the cap (issue 10 review, item 3)."""

from __future__ import annotations

import re

import pytest
from fixtures import ab_item

from steering.errors import SteeringError
from steering.extract.extraction import extract_vectors
from steering.extract.instructions import instruction_direction

GOOD = ab_item("Name a planet\n\nChoices:\n(A) I won't.\n(B) Mars.")
LONG = ab_item("Please read this. " * 12 + "\n\nChoices:\n(A) No.\n(B) Yes.", matching="B")


def _refused_before_the_model_runs(model, run) -> str:
    """The one-line SteeringError message of `run()`, which must raise it before any forward pass of `model`."""
    calls: list[int] = []
    handle = model.model.layers[0].register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(SteeringError) as info:
            run()
    finally:
        handle.remove()
    message = str(info.value)
    assert calls == [] and "\n" not in message, message
    return message


def test_extract_refuses_items_over_the_prompt_cap_before_the_model_runs(tiny_model, tiny_tokenizer):
    message = _refused_before_the_model_runs(
        tiny_model,
        lambda: extract_vectors(
            tiny_model, tiny_tokenizer, [GOOD, LONG], [1], "letter", progress=False,
            max_prompt_tokens=60, source="data/long.json",
        ),
    )  # fmt: skip
    assert message.startswith("data/long.json: dataset item 1: the prompt with option (B) is "), message
    assert message.endswith("the limit is 60 (limits.max_prompt_tokens)"), message
    # under the cap: runs
    assert extract_vectors(tiny_model, tiny_tokenizer, [GOOD], [1], "letter", progress=False, max_prompt_tokens=60)


def test_instruction_direction_checks_context_and_cap_before_the_model_runs(tiny_model, tiny_tokenizer):
    harmful, harmless = ["Do a bad thing."], ["Say hi.", "Please read this. " * 12]
    message = _refused_before_the_model_runs(
        tiny_model,
        lambda: instruction_direction(
            tiny_model, tiny_tokenizer, harmful, harmless, [1], progress=False,
            max_prompt_tokens=60, source="data/instructions.json",
        ),
    )  # fmt: skip
    assert message.startswith("data/instructions.json: harmless request 1: the prompt is "), message
    assert message.endswith("the limit is 60 (limits.max_prompt_tokens)"), message
    # over the model's context (512 tokens) without a cap
    message = _refused_before_the_model_runs(
        tiny_model,
        lambda: instruction_direction(
            tiny_model, tiny_tokenizer, harmful, ["x " * 600], [1], progress=False, source="i.json"
        ),
    )
    pattern = r"i.json: harmless request 0: the prompt is \d+ tokens long; the model.s context is 512 tokens"
    assert re.fullmatch(pattern, message), message
