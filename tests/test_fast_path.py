"""The GPU fast path (static KV cache, persistent hooks, compiled decoding step), checked on the CPU.

torch.compile runs with backend="eager" here (graph capture without the code generator), which is
quick on a CPU and exercises what matters: the same greedy tokens as the eager path, and no
recompile when alpha, the layer or the vector changes.
"""

from __future__ import annotations

import pytest
import torch

from steering.fast_path import FastPath, PersistentSteering
from steering.generation import SamplingSettings, SteeringSpec, generate

GREEDY = SamplingSettings(max_new_tokens=10, temperature=0.0)
Q1 = [{"role": "user", "content": "What's your favorite planet?"}]
Q2 = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"},
      {"role": "user", "content": "Tell me a longer story about a dragon."}]


@pytest.fixture()
def model(tiny_tokenizer):
    from tests.conftest import make_tiny_model

    return make_tiny_model(len(tiny_tokenizer))  # own copy: the fast path registers hooks on it


@pytest.fixture(scope="module")
def vector():
    torch.manual_seed(1)
    return torch.randn(64) * 4.0


def _eager(model, tok, convs, alphas, layer, vector):
    return generate(model, tok, convs, multipliers=alphas, steer=SteeringSpec(layer, vector), settings=GREEDY)


def test_static_cache_path_matches_eager(model, tiny_tokenizer, vector):
    fast = FastPath(model, compile=False, bucket=64)
    for alphas, layer in (([3.0, 0.0, -3.0], 1), ([1.5, 0.0, -1.5], 2)):
        expected = _eager(model, tiny_tokenizer, [Q1, Q2, Q1], alphas, layer, vector)  # hooks idle: multipliers 0
        got = fast.generate(tiny_tokenizer, [Q1, Q2, Q1], multipliers=alphas, steer=SteeringSpec(layer, vector),
                            settings=GREEDY)
        assert got.token_ids == expected.token_ids
    plain = generate(model, tiny_tokenizer, [Q2], settings=GREEDY)
    assert fast.generate(tiny_tokenizer, [Q2], settings=GREEDY).token_ids == plain.token_ids


def test_compiled_path_matches_eager_and_never_recompiles_for_alpha(model, tiny_tokenizer, vector):
    fast = FastPath(model, compile=True, backend="eager", bucket=64)
    identity = [t.data_ptr() for t in fast.steering.tensors()]
    first = fast.generate(tiny_tokenizer, [Q1, Q2, Q1], multipliers=[3.0, 0.0, -3.0],
                          steer=SteeringSpec(1, vector), settings=GREEDY)
    compiles = fast.graph_count()
    assert compiles >= 1
    for alphas, layer, vec in (([1.0, 0.0, -1.0], 1, vector), ([5.0, 0.0, -5.0], 3, -vector),
                               ([3.0, 0.0, -3.0], 1, vector)):
        result = fast.generate(tiny_tokenizer, [Q1, Q2, Q1], multipliers=alphas, steer=SteeringSpec(layer, vec),
                               settings=GREEDY)
        assert result.token_ids == _eager(model, tiny_tokenizer, [Q1, Q2, Q1], alphas, layer, vec).token_ids
    assert result.token_ids == first.token_ids  # back to the first settings: the same tokens
    assert fast.graph_count() == compiles, "changing alpha, layer or vector must not recompile"
    assert [t.data_ptr() for t in fast.steering.tensors()] == identity


def test_persistent_hooks_are_exact_noops_at_zero(model, tiny_tokenizer, vector):
    plain = generate(model, tiny_tokenizer, [Q1], settings=GREEDY)
    hooks = PersistentSteering(model)
    try:
        assert len(model.model.layers[0]._forward_hooks) == 1
        assert generate(model, tiny_tokenizer, [Q1], settings=GREEDY).token_ids == plain.token_ids
        with hooks.context(model, 2, vector, [2.0], [0]):
            assert generate(model, tiny_tokenizer, [Q1], settings=GREEDY).token_ids != plain.token_ids
        assert float(hooks.multipliers.abs().sum()) == 0.0  # cleared on exit
    finally:
        hooks.remove()
    assert len(model.model.layers[0]._forward_hooks) == 0


def test_bucketed_static_caches_are_reused(model, tiny_tokenizer):
    fast = FastPath(model, compile=False, bucket=64)
    fast.generate(tiny_tokenizer, [Q1, Q1, Q1], settings=GREEDY)
    fast.generate(tiny_tokenizer, [Q1, Q1, Q1], settings=GREEDY)
    assert len(fast._caches) == 1
    fast.generate(tiny_tokenizer, [Q2], settings=SamplingSettings(max_new_tokens=80))  # another bucket
    (b1, len1), (b3, len3) = sorted(fast._caches)
    assert (b1, b3, len3) == (1, 3, 64) and len1 % 64 == 0 and len1 > 64


def test_ignore_eos_gives_exact_lengths(model, tiny_tokenizer):
    model.generation_config.eos_token_id = tiny_tokenizer.convert_tokens_to_ids("<|end|>")
    try:
        result = generate(model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(max_new_tokens=7),
                          ignore_eos=True)
    finally:
        model.generation_config.eos_token_id = None
    assert [len(ids) for ids in result.token_ids] == [7, 7]


def test_streamed_text_matches_full_decode(model, tiny_tokenizer):
    seen = []
    result = generate(model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(max_new_tokens=16),
                      on_text=seen.append)
    assert len(seen) == 16
    assert seen[-1] == result.texts


def test_incremental_decoding_waits_for_whole_characters(tiny_tokenizer):
    from steering.generation import _StreamingText

    ids = tiny_tokenizer("Héllo wörld, 你好 🙂!", add_special_tokens=False)["input_ids"]
    stream = _StreamingText(tiny_tokenizer, 1)
    for n in range(1, len(ids) + 1):
        shown = stream.update([ids[:n]])[0]
        assert "\ufffd" not in shown
        assert tiny_tokenizer.decode(ids[:n]).startswith(shown)
    assert shown == "Héllo wörld, 你好 🙂!"


def test_lookahead_decoding_gives_the_same_tokens_and_stops_on_time(model, tiny_tokenizer, vector, monkeypatch):
    import threading

    import steering.generation as generation

    model.generation_config.eos_token_id = tiny_tokenizer.convert_tokens_to_ids("<|end|>")
    try:
        settings = SamplingSettings(max_new_tokens=12)
        args = dict(multipliers=[2.0, 0.0, -2.0], steer=SteeringSpec(1, vector), settings=settings)
        monkeypatch.setattr(generation, "LOOKAHEAD", False)
        plain = generate(model, tiny_tokenizer, [Q1, Q2, Q1], **args)
        sampled = generate(model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(temperature=1.0, seed=3))
        monkeypatch.setattr(generation, "LOOKAHEAD", True)
        assert generate(model, tiny_tokenizer, [Q1, Q2, Q1], **args).token_ids == plain.token_ids
        fast = FastPath(model, compile=False, bucket=64)
        assert fast.generate(tiny_tokenizer, [Q1, Q2, Q1], **args).token_ids == plain.token_ids
        again = generate(model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(temperature=1.0, seed=3))
        assert again.token_ids == sampled.token_ids
        stop, seen = threading.Event(), []

        def on_text(texts):
            seen.append(texts)
            if len(seen) == 3:
                stop.set()

        result = generate(model, tiny_tokenizer, [Q1, Q1, Q1], on_text=on_text, stop_event=stop, **args)
        assert result.stopped and result.new_tokens == [3, 3, 3]
    finally:
        model.generation_config.eos_token_id = None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_steps_match_eager_and_follow_alpha_and_layer(tiny_tokenizer, vector):
    from tests.conftest import make_tiny_model

    model = make_tiny_model(len(tiny_tokenizer)).cuda()
    fast = FastPath(model, compile=False, bucket=64, cuda_graphs=True)
    convs = [Q1, Q2, Q1]
    for alphas, layer, vec in (([3.0, 0.0, -3.0], 1, vector), ([1.0, 0.0, -1.0], 1, vector),
                               ([5.0, 0.0, -5.0], 3, -vector), ([3.0, 0.0, -3.0], 1, vector)):
        expected = _eager(model, tiny_tokenizer, convs, alphas, layer, vec.cuda())
        got = fast.generate(tiny_tokenizer, convs, multipliers=alphas, steer=SteeringSpec(layer, vec), settings=GREEDY)
        assert got.token_ids == expected.token_ids
    assert len(fast.graphs.graphs) == 2  # one capture per steered layer; alpha and vector are data
    plain = generate(model, tiny_tokenizer, [Q2], settings=GREEDY)
    assert fast.generate(tiny_tokenizer, [Q2], settings=GREEDY).token_ids == plain.token_ids
