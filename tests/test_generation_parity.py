"""The project's decode loop (steering.decode.generation.generate) against transformers' own `model.generate`
under the same steering hook: greedy, several chat templates (tests/chat_templates.py), a tiny random Llama.

transformers' loop is the yardstick: it knows nothing of this project's prefix sharing, per-row EOS
bookkeeping, position rule or fast path; the hook (steering.core.hooks.steering, CAA addition from the prompt's
steer_from on) is the only shared piece. Each batch holds three rows of the same conversation at +m, 0, -m
(the app's three panes).
"""

from __future__ import annotations

import pytest
import torch
from chat_templates import CASES, conversation, sentencepiece_tokenizer
from fixtures import make_tiny_model

from steering.core.hooks import steering
from steering.core.prompts import build_messages, chat_prompt
from steering.decode.generation import SamplingSettings, SteeringSpec, generate

# |vector| = 0.05 against block 1's hidden-state norm of about 0.19 at +-4: steering changes the greedy tokens,
# and so does a multiplier 10-25% off or a position rule one token late in most templates (checked by hand),
# so a loop that steers differently from the hook under transformers' loop fails here.
LAYER, MULTIPLIERS, TOKENS, NORM = 1, [4.0, 0.0, -4.0], 24, 0.05
FAST_PATH_CASES = ["llama2-system", "chatml"]  # the compiled path costs a warm-up per model: two templates


def _case(case_id):
    _, template, system_prompt = next(c for c in CASES if c[0] == case_id)
    tokenizer = sentencepiece_tokenizer(template)
    model = make_tiny_model(len(tokenizer), seed=3)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    vector = vector / vector.norm() * NORM
    return tokenizer, model, conversation(), system_prompt, vector


def _transformers_reference(model, tokenizer, conv, system_prompt, vector) -> list[list[int]]:
    """transformers' greedy generate with the steering hook on; each row cut at its first EOS."""
    prompt = chat_prompt(tokenizer, build_messages(conv, system_prompt))
    ids = torch.tensor([prompt.input_ids] * len(MULTIPLIERS))
    with steering(model, LAYER, vector, MULTIPLIERS, [prompt.steer_from] * len(MULTIPLIERS)):
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=TOKENS,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    rows = []
    for row in out[:, ids.shape[1] :].tolist():
        rows.append(row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row)
    return rows


def _assert_steering_matters(expected):
    assert expected[0] != expected[1] or expected[2] != expected[1], "the hook changed nothing: a vacuous test"


def _steered(vector, system_prompt):
    """The keyword arguments of a three-row steered greedy run (MULTIPLIERS at LAYER, TOKENS new tokens)."""
    steer, settings = SteeringSpec(LAYER, vector), SamplingSettings(max_new_tokens=TOKENS)
    return dict(multipliers=MULTIPLIERS, steer=steer, settings=settings, system_prompt=system_prompt)


@pytest.mark.parametrize("case_id", [case for case, _, _ in CASES])
def test_eager_loop_equals_transformers_generate(case_id):
    tokenizer, model, conv, system_prompt, vector = _case(case_id)
    expected = _transformers_reference(model, tokenizer, conv, system_prompt, vector)
    _assert_steering_matters(expected)
    result = generate(model, tokenizer, [conv] * 3, **_steered(vector, system_prompt))
    assert result.token_ids == expected


@pytest.mark.parametrize("case_id", FAST_PATH_CASES)
def test_fast_path_loop_equals_transformers_generate(case_id):
    from steering.decode.fast_path import FastPath

    tokenizer, model, conv, system_prompt, vector = _case(case_id)
    expected = _transformers_reference(model, tokenizer, conv, system_prompt, vector)
    _, fresh, _, _, _ = _case(case_id)  # same weights; the fast path registers persistent hooks on its model
    fast = FastPath(fresh, compile=True, backend="eager")
    try:
        result = fast.generate(tokenizer, [conv] * 3, **_steered(vector, system_prompt))
    finally:
        fast.steering.remove()
    assert result.token_ids == expected
