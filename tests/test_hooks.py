"""The steering operator and batched generation on a tiny random Llama (fp32, greedy)."""

from __future__ import annotations

import pytest
import torch

from steering.core.hooks import steering
from steering.core.prompts import chat_prompt
from steering.decode.generation import SamplingSettings, SteeringSpec, generate

GREEDY = SamplingSettings(max_new_tokens=12, temperature=0.0)
Q1 = [{"role": "user", "content": "What's your favorite planet?"}]
Q2 = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there!"},
    {"role": "user", "content": "Tell me a much longer story about a dragon, please."},
]


@pytest.fixture(scope="module")
def vector(tiny_model):
    torch.manual_seed(1)
    return torch.randn(tiny_model.config.hidden_size) * 4.0


def _three_rows(model, tokenizer, vector, multipliers, settings, **kwargs):
    """generate() of Q1 three times, steered at layer 1 with `vector` by `multipliers` (one per row)."""
    steer = SteeringSpec(1, vector)
    return generate(model, tokenizer, [Q1] * 3, multipliers=multipliers, steer=steer, settings=settings, **kwargs)


def test_multiplier_zero_row_equals_no_hook(tiny_model, tiny_tokenizer, vector):
    plain = generate(tiny_model, tiny_tokenizer, [Q1], settings=GREEDY)
    steered = _three_rows(tiny_model, tiny_tokenizer, vector, [3.0, 0.0, -3.0], GREEDY)
    assert steered.token_ids[1] == plain.token_ids[0]
    assert steered.token_ids[0] != steered.token_ids[2], "a strong vector must change the steered rows"


def test_rows_do_not_depend_on_each_other(tiny_model, tiny_tokenizer, vector):
    batch = generate(
        tiny_model,
        tiny_tokenizer,
        [Q1, Q2, Q1],
        multipliers=[2.0, -2.0, 0.0],
        steer=SteeringSpec(2, vector),
        settings=GREEDY,
    )
    alone_first = generate(
        tiny_model, tiny_tokenizer, [Q1], multipliers=[2.0], steer=SteeringSpec(2, vector), settings=GREEDY
    )
    alone_second = generate(
        tiny_model, tiny_tokenizer, [Q2], multipliers=[-2.0], steer=SteeringSpec(2, vector), settings=GREEDY
    )
    assert batch.token_ids[0] == alone_first.token_ids[0]
    assert batch.token_ids[1] == alone_second.token_ids[0]


def test_shared_prefix_runs_once_and_changes_no_row(tiny_model, tiny_tokenizer, vector):
    convs = [Q2, Q2[:2] + [{"role": "user", "content": "Another question entirely."}], Q2]
    alphas = [2.0, 0.0, -2.0]
    ids = [chat_prompt(tiny_tokenizer, conv).input_ids for conv in convs]
    shared = next(i for i, (a, b) in enumerate(zip(ids[0], ids[1])) if a != b)
    shapes = []
    handle = tiny_model.model.layers[0].register_forward_hook(
        lambda m, args, out: shapes.append(tuple(args[0].shape[:2]))
    )
    try:
        batch = generate(
            tiny_model, tiny_tokenizer, convs, multipliers=alphas, steer=SteeringSpec(1, vector), settings=GREEDY
        )
    finally:
        handle.remove()
    assert shapes[0] == (1, shared)  # the common prefix (history and template), once
    assert shapes[1] == (3, max(map(len, ids)) - shared)  # then each row's own tokens
    for row, (conv, alpha) in enumerate(zip(convs, alphas)):
        alone = generate(
            tiny_model, tiny_tokenizer, [conv], multipliers=[alpha], steer=SteeringSpec(1, vector), settings=GREEDY
        )
        assert batch.token_ids[row] == alone.token_ids[0]


@torch.inference_mode()
def _uncached_greedy(model, tokenizer, conversation, layer, vector, multiplier, steps):
    """Reference: recompute the whole sequence every step (no KV cache), hook active throughout."""
    prompt = chat_prompt(tokenizer, conversation)
    ids = list(prompt.input_ids)
    out = []
    with steering(model, layer, vector, [multiplier], [prompt.steer_from]):
        for _ in range(steps):
            tensor = torch.tensor([ids])
            logits = model(input_ids=tensor, position_ids=torch.arange(len(ids))[None], use_cache=False).logits
            token = int(logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
    return out


def test_cached_and_uncached_decoding_agree(tiny_model, tiny_tokenizer, vector):
    cached = generate(
        tiny_model, tiny_tokenizer, [Q2], multipliers=[2.5], steer=SteeringSpec(1, vector), settings=GREEDY
    )
    assert cached.token_ids[0] == _uncached_greedy(tiny_model, tiny_tokenizer, Q2, 1, vector, 2.5, 12)


@torch.inference_mode()
def test_position_rule_steers_only_after_the_instruction(tiny_model, tiny_tokenizer, vector):
    prompt = chat_prompt(tiny_tokenizer, Q1)
    ids = torch.tensor([prompt.input_ids])
    # The assistant prefix "<|assistant|>" comes after the user's turn and is steered.
    assert 0 < prompt.steer_from < ids.shape[1]
    base = tiny_model(input_ids=ids).logits
    with steering(tiny_model, 1, vector, [3.0], [prompt.steer_from]):
        steered = tiny_model(input_ids=ids).logits
    before, after = slice(0, prompt.steer_from), slice(prompt.steer_from, None)
    assert torch.equal(base[0, before], steered[0, before])
    assert not torch.allclose(base[0, after], steered[0, after])


def test_hook_removed_on_exception(tiny_model, vector):
    blocks = tiny_model.model.layers
    before = dict(blocks[0]._forward_hooks)  # transformers may keep hooks of its own on a shared model
    with pytest.raises(RuntimeError):
        with steering(tiny_model, 0, vector, [1.0], [0]):
            assert len(blocks[0]._forward_hooks) == len(before) + 1
            raise RuntimeError("boom")
    assert dict(blocks[0]._forward_hooks) == before


def test_layer_out_of_range_is_a_clear_error(tiny_model, vector):
    from steering.errors import SteeringError

    with pytest.raises(SteeringError, match="layer 9 is out of range: the model has layers 0..3"):
        with steering(tiny_model, 9, vector, [1.0], [0]):
            pass


def test_stop_event_ends_generation(tiny_model, tiny_tokenizer, vector):
    import threading

    stop = threading.Event()
    seen = []

    def on_text(texts):
        seen.append(texts)
        if len(seen) == 3:
            stop.set()

    settings = SamplingSettings(max_new_tokens=40)
    result = _three_rows(tiny_model, tiny_tokenizer, vector, [1, 0, -1], settings, on_text=on_text, stop_event=stop)
    assert result.stopped
    assert result.new_tokens == [3, 3, 3]


def test_sampling_same_seed_same_text(tiny_model, tiny_tokenizer):
    settings = SamplingSettings(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=7)
    first = generate(tiny_model, tiny_tokenizer, [Q1, Q1], settings=settings)
    second = generate(tiny_model, tiny_tokenizer, [Q1, Q1], settings=settings)
    other = generate(
        tiny_model,
        tiny_tokenizer,
        [Q1, Q1],
        settings=SamplingSettings(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=8),
    )
    assert first.token_ids == second.token_ids
    assert first.token_ids != other.token_ids


def test_stream_yields_growing_text_and_final(tiny_model, tiny_tokenizer, vector):
    from steering.decode.generation import stream

    updates = list(
        stream(
            generate,
            model=tiny_model,
            tokenizer=tiny_tokenizer,
            conversations=[Q1, Q1],
            multipliers=[1.0, 0.0],
            steer=SteeringSpec(1, vector),
            settings=SamplingSettings(max_new_tokens=8),
        )
    )
    final = generate(
        tiny_model,
        tiny_tokenizer,
        [Q1, Q1],
        multipliers=[1.0, 0.0],
        steer=SteeringSpec(1, vector),
        settings=SamplingSettings(max_new_tokens=8),
    )
    assert updates[-1] == final.texts
    assert len(updates) >= 2
    assert all(len(a[0]) <= len(b[0]) for a, b in zip(updates, updates[1:]))
