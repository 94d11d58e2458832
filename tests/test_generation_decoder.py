"""The seams of the decomposed generation (issue 11 item 4): the decoder protocol and its backends, the
token choice, the token reader (synchronous or lookahead, no module global) and the replies."""

from __future__ import annotations

import threading

import pytest
import torch
from fixtures import make_tiny_model

import steering.decode.generation as generation
from steering.decode.batch import PromptBatch
from steering.decode.decoder import EagerDecoder, StaticDecoder
from steering.decode.generation import SamplingSettings, SteeringSpec, generate
from steering.decode.sampling import TokenChoice
from steering.decode.tokens import Replies, TokenReader

Q1 = [{"role": "user", "content": "What's your favorite planet?"}]
Q2 = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there!"},
    {"role": "user", "content": "Tell me a longer story about a dragon."},
]
GREEDY = SamplingSettings(max_new_tokens=8)


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return make_tiny_model(len(tiny_tokenizer))


def _static_cache(model):
    from transformers import StaticCache

    return lambda rows, total: StaticCache(config=model.config, max_cache_len=64 * -(-total // 64))


BACKENDS = {
    "eager": lambda model: EagerDecoder(model),
    "static": lambda model: StaticDecoder(model, _static_cache(model), model.forward),
    "compiled": lambda model: StaticDecoder(
        model, _static_cache(model), torch.compile(model.forward, backend="eager", dynamic=False)
    ),
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_each_backend_through_the_protocol_gives_the_full_forward_logits(backend, model, tiny_tokenizer):
    """prefill() then step(ids) return the last position's logits of the whole sequence run without a cache."""
    torch._dynamo.reset()
    decoder = BACKENDS[backend](model)
    batch = PromptBatch.build(model, tiny_tokenizer, [Q1, Q2], share_prefix=decoder.shares_prefix)
    decoder.reset(batch, max_new_tokens=3)
    with torch.inference_mode():
        logits = decoder.prefill()
        fed = [logits.argmax(-1)]
        for _ in range(2):
            logits = decoder.step(fed[-1].unsqueeze(-1))
            fed.append(logits.argmax(-1))
        ids = torch.cat([batch.input_ids, torch.stack(fed[:2], dim=1)], dim=1)
        mask = torch.cat([batch.attention, torch.ones(2, 2, dtype=torch.long)], dim=1)
        full = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    assert logits.shape == (2, full.shape[-1]) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, full[:, -1].float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_gives_the_eager_greedy_tokens(backend, model, tiny_tokenizer):
    torch._dynamo.reset()
    steer = SteeringSpec(1, torch.randn(64, generator=torch.Generator().manual_seed(1)) * 4.0)
    args = dict(multipliers=[3.0, 0.0, -3.0], steer=steer, settings=GREEDY)
    expected = generate(model, tiny_tokenizer, [Q1, Q2, Q1], **args)
    got = generate(model, tiny_tokenizer, [Q1, Q2, Q1], decoder=BACKENDS[backend](model), **args)
    assert got.token_ids == expected.token_ids
    assert expected.token_ids[0] != expected.token_ids[2]  # the steering acts


def test_only_the_dynamic_cache_shares_the_prefix(model, tiny_tokenizer):
    eager = PromptBatch.build(model, tiny_tokenizer, [Q2, Q2, Q2], steered=False)
    steered = PromptBatch.build(model, tiny_tokenizer, [Q2, Q2, Q2], steered=True)
    static = PromptBatch.build(model, tiny_tokenizer, [Q2, Q2, Q2], share_prefix=False)
    assert eager.shared == len(eager.prompts[0].input_ids) - 1
    assert steered.shared == min(eager.shared, *steered.steer_from)
    assert static.shared == 0 and not StaticDecoder(model, _static_cache(model), model.forward).shares_prefix
    assert EagerDecoder(model).shares_prefix


def test_a_static_cache_too_short_is_refused(model, tiny_tokenizer):
    from transformers import StaticCache

    decoder = StaticDecoder(model, lambda rows, total: StaticCache(config=model.config, max_cache_len=8), model.forward)
    with pytest.raises(ValueError, match="the cache holds 8 tokens"):
        generate(model, tiny_tokenizer, [Q1], settings=GREEDY, decoder=decoder)


def test_token_choice_feeds_padding_after_a_rows_end():
    choose = TokenChoice(SamplingSettings(), rows=2, eos={5}, pad_id=0, device=torch.device("cpu"))
    first = torch.tensor([[0.0] * 5 + [9.0] + [0.0] * 4, [0.0] * 7 + [9.0] + [0.0] * 2])  # row 0 picks eos 5
    assert choose(first).tolist() == [5, 7]
    assert choose.feed.tolist() == [[5], [7]]  # the end token itself is fed once
    assert choose(first).tolist() == [5, 7]
    assert choose.feed.tolist() == [[0], [7]]  # then padding
    assert choose.done.tolist() == [True, False]


def test_token_choice_samples_with_its_own_seeded_stream():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    settings = SamplingSettings(temperature=1.0, top_p=0.9, seed=7)
    runs = [
        [TokenChoice(settings, 3, set(), 0, torch.device("cpu"))(logits).tolist() for _ in range(1)] for _ in range(2)
    ]
    assert runs[0] == runs[1]
    one = TokenChoice(settings, 1, set(), 0, torch.device("cpu"))(logits[1:2]).tolist()
    assert one == [runs[0][0][1]]  # a row's token does not depend on the batch around it


def _fake_launches(order: list[str]):
    def launch(step: int) -> torch.Tensor:
        order.append(f"launch {step}")
        return torch.tensor([step, 10 * step])

    return launch


def test_token_reader_synchronous_and_lookahead_give_the_same_tokens_in_different_order():
    seen = {}
    for lookahead in (False, True):
        order: list[str] = []
        reader = TokenReader(torch.device("cpu"), lookahead=lookahead)
        for tokens in reader.steps(_fake_launches(order), 3):
            order.append(f"read {tokens[0]}")
        seen[lookahead] = order
        assert not reader.stopped
    assert seen[False] == ["launch 0", "read 0", "launch 1", "read 1", "launch 2", "read 2"]
    assert seen[True] == ["launch 0", "launch 1", "read 0", "launch 2", "read 1", "read 2"]
    assert TokenReader(torch.device("cpu")).lookahead is False  # None: lookahead on CUDA only
    assert not hasattr(generation, "LOOKAHEAD")  # no module global to flip


def test_token_reader_stops_before_the_next_step():
    stop = threading.Event()
    order: list[str] = []
    reader = TokenReader(torch.device("cpu"), lookahead=False)
    for tokens in reader.steps(_fake_launches(order), 5, stop.is_set):
        if tokens[0] == 1:
            stop.set()
    assert reader.stopped and order == ["launch 0", "launch 1"]


def test_replies_drop_the_end_token_and_stream(tiny_tokenizer):
    streamed: list[list[str]] = []
    hello = tiny_tokenizer("hello world", add_special_tokens=False)["input_ids"]
    replies = Replies(tiny_tokenizer, 2, eos={-1}, on_text=streamed.append)
    for step, token in enumerate(hello):
        replies.take([token, -1 if step == 0 else token])
    assert replies.generated == [hello, []] and replies.finished == [False, True]
    assert replies.texts() == ["hello world", ""] and streamed[-1] == ["hello world", ""]
    assert not replies.all_finished
