"""The Engine on a tiny random Llama, on the eager path and on the fast path (issue 10 items 3 and 4).

"fast" is `model.compile: true` with `compile_backend: eager`: torch.compile captures the decoding step
(dynamo, no code generation, cheap on a CPU) behind the persistent hooks and the static cache, the same
FastPath code the GPU runs with inductor or CUDA graphs.
"""

from __future__ import annotations

import math

import pytest
import torch
from fixtures import PATHS, make_engine, make_tiny_engine, make_tiny_model

from steering.config import ModelSettings, load_config, override
from steering.decode.generation import SamplingSettings, SteeringSpec, generate
from steering.engine import Engine
from steering.errors import SteeringError

GREEDY = SamplingSettings(max_new_tokens=8)
SAMPLED = SamplingSettings(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=0)
Q1 = [{"role": "user", "content": "What's your favorite planet?"}]
Q2 = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there!"},
    {"role": "user", "content": "Tell me a story."},
]


@pytest.fixture(params=sorted(PATHS))
def engine(request, tiny_tokenizer):
    engine = make_engine(tiny_tokenizer, PATHS[request.param])
    assert (engine.fast_path is not None) == (request.param == "fast")
    return engine


@pytest.fixture(scope="module")
def reference(tiny_tokenizer):
    """A model with the same weights and no hooks at all."""
    return make_tiny_model(len(tiny_tokenizer))


@pytest.fixture(scope="module")
def vector():
    torch.manual_seed(1)
    return torch.randn(64) * 4.0


def test_compare_matches_a_hook_free_model(engine, reference, tiny_tokenizer, vector):
    result = engine.compare(Q2, vector, 1, 3.0, GREEDY)
    expected = generate(
        reference,
        tiny_tokenizer,
        [Q2] * 3,
        multipliers=[3.0, 0.0, -3.0],
        steer=SteeringSpec(1, vector),
        settings=GREEDY,
    )
    assert result.token_ids == expected.token_ids
    assert result.texts[0] != result.texts[1] != result.texts[2]
    assert result.texts[1] == engine.plain(Q2, GREEDY)


def test_batches_beyond_the_fast_path_capacity(engine, reference, tiny_tokenizer, vector):
    """`steering test --compile --batch-size 2` crashed: 6 rows in hooks built for 4 (issue 10 item 3)."""
    prompts = ["What's your favorite planet?", "Hi", "Tell me a story.", "Why is the sky blue?"]
    got = engine.compare_batch(prompts, vector, 2, 2.0, GREEDY)  # 12 rows
    for prompt, panes in zip(prompts, got):
        expected = generate(
            reference,
            tiny_tokenizer,
            [[{"role": "user", "content": prompt}]] * 3,
            multipliers=[2.0, 0.0, -2.0],
            steer=SteeringSpec(2, vector),
            settings=GREEDY,
        ).texts
        assert [panes["added"], panes["unsteered"], panes["subtracted"]] == expected
    if engine.fast_path is not None:  # the fast path itself takes any batch too
        fast = engine.fast_path.generate(
            tiny_tokenizer,
            [Q1, Q2, Q1, Q2, Q1, Q2, Q1, Q2, Q1],
            multipliers=[1.0, -1.0, 0.0] * 3,
            steer=SteeringSpec(2, vector),
            settings=GREEDY,
        )
        eager = generate(
            reference,
            tiny_tokenizer,
            [Q1, Q2, Q1, Q2, Q1, Q2, Q1, Q2, Q1],
            multipliers=[1.0, -1.0, 0.0] * 3,
            steer=SteeringSpec(2, vector),
            settings=GREEDY,
        )
        assert fast.token_ids == eager.token_ids


def test_other_forwards_are_untouched_by_the_fast_path(engine, reference, tiny_tokenizer, vector):
    """Extraction, evaluation and plain calls of any batch size see the model, not the fast path's hooks."""
    engine.compare(Q1, vector, 1, 5.0, GREEDY)
    ids = torch.randint(0, len(tiny_tokenizer), (9, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for rows in (1, 3, 9):
            assert torch.equal(engine.lm.model(input_ids=ids[:rows]).logits, reference(input_ids=ids[:rows]).logits)
    from steering.extract.extraction import extract_vectors  # noqa: F401  (the module extraction uses runs the model plainly)

    assert engine.hidden_norm(1) > 0


def test_sampled_panes_at_alpha_zero_are_identical_and_equal_plain(engine, tiny_tokenizer, vector):
    """temperature 0.8, top-p 0.9, seed 0, alpha 0: three identical panes equal to plain (issue 10 item 4)."""
    panes = engine.compare(Q1, vector, 1, 0.0, SAMPLED).texts
    plain = engine.plain(Q1, SAMPLED)
    assert panes == [plain] * 3
    assert plain != engine.plain(Q1, SamplingSettings(max_new_tokens=12)), "sampling should differ from greedy"
    assert engine.plain(Q1, SamplingSettings(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=1)) != plain


def test_sampled_unsteered_pane_equals_plain_at_nonzero_alpha(engine, tiny_tokenizer, vector):
    added, unsteered, subtracted = engine.compare(Q2, vector, 1, 3.0, SAMPLED).texts
    assert unsteered == engine.plain(Q2, SAMPLED)
    assert added != unsteered and subtracted != unsteered
    # a row's text does not depend on the rows around it: one prompt among others, same text
    batch = engine.compare_batch(["Hi", "Tell me a story."], vector, 1, 3.0, SAMPLED)
    alone = engine.compare_batch(["Tell me a story."], vector, 1, 3.0, SAMPLED)
    assert batch[1] == alone[0]


def test_token_budget_is_refused_before_the_model_runs(engine, tiny_tokenizer, vector, monkeypatch):
    calls = []
    monkeypatch.setattr(engine.lm.model, "forward", lambda *a, **k: calls.append(1))
    huge = "x" * 100_000
    with pytest.raises(SteeringError, match=r"tokens long .*the limit is 4096"):
        engine.compare(Q1, vector, 1, 2.0, GREEDY, system_prompt=huge)
    with pytest.raises(SteeringError, match=r"the limit is 4096"):
        engine.plain(Q1, GREEDY, system_prompt=huge)
    with pytest.raises(SteeringError, match=r"context of 512 tokens"):  # the tiny model's context
        engine.compare(Q1, vector, 1, 2.0, SamplingSettings(max_new_tokens=500))
    with pytest.raises(SteeringError, match=r"max_new_tokens 2000 is out of range"):
        engine.compare_batch(["Hi"], vector, 1, 2.0, SamplingSettings(max_new_tokens=2000))
    assert calls == []
    assert engine.lm.lock.acquire(blocking=False)  # never held for a refused request
    engine.lm.lock.release()


def test_check_request_counts_tokens_without_the_model(engine, tiny_tokenizer):
    counts = engine.check_request([Q1, Q2], GREEDY, system_prompt="Be brief.")
    assert len(counts) == 2 and counts[1] > counts[0] > len("What's your favorite planet?")
    (alone,) = engine.check_request(Q1, GREEDY)  # one conversation; no system prompt: fewer tokens
    assert alone < counts[0]
    small = Engine(engine.lm, override(load_config(), {"limits.max_prompt_tokens": 40}))
    with pytest.raises(SteeringError, match=r"row 1's prompt is \d+ tokens long .*the limit is 40"):
        small.check_request([[{"role": "user", "content": "Hi"}], Q2 + [{"role": "user", "content": "x" * 50}]], GREEDY)
    with pytest.raises(SteeringError, match="multiplier"):
        engine.check_request(Q1, GREEDY, multiplier=math.inf)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e30])
def test_compare_refuses_non_finite_or_absurd_multipliers(engine, vector, bad):
    with pytest.raises(SteeringError, match="multiplier"):
        engine.compare(Q1, vector, 1, bad, GREEDY)
    with pytest.raises(SteeringError, match="multiplier"):
        engine.compare_batch(["Hi"], vector, 1, bad, GREEDY)


def test_a_second_engine_reuses_the_fast_path_hooks(tiny_tokenizer, vector):
    first = make_engine(tiny_tokenizer, PATHS["fast"])
    second = Engine(first.lm, load_config())
    assert second.fast_path is first.fast_path
    assert all(len(block._forward_hooks) == 1 for block in first.lm.model.model.layers)
    assert second.compare(Q1, vector, 1, 2.0, GREEDY).texts == first.compare(Q1, vector, 1, 2.0, GREEDY).texts


def test_a_fast_path_that_fails_to_set_up_leaves_the_eager_path(tiny_tokenizer, vector, monkeypatch):
    import logging

    from steering.decode.fast_path import FastPath

    warnings: list[str] = []
    monkeypatch.setattr(
        logging.getLogger("steering.engine"), "warning", lambda message, *args: warnings.append(message % args)
    )

    def broken(self, *args, **kwargs):
        raise RuntimeError("compiler exploded")

    monkeypatch.setattr(FastPath, "warm_up", broken)
    monkeypatch.setattr("steering.decode.fast_path_setup.graphs_supported", lambda lm: True)  # as on a GPU
    engine = make_engine(tiny_tokenizer, ModelSettings(name="tiny", compile=True, compile_backend="inductor"))
    assert engine.fast_path is None and engine.lm.fast_path is None
    assert len(warnings) == 1 and "compiler exploded" in warnings[0]
    assert all(len(block._forward_hooks) == 0 for block in engine.lm.model.model.layers)
    assert engine.compare(Q1, vector, 1, 2.0, GREEDY).texts[1] == engine.plain(Q1, GREEDY)


def test_constructing_an_engine_sets_up_no_fast_path_until_warm_up(tiny_tokenizer, vector):
    """issue 11 item 4: no compile, no hooks as a side effect of the constructor; warm_up() is the explicit call."""
    engine = make_tiny_engine(
        tiny_tokenizer, settings=ModelSettings(name="tiny", compile=True, compile_backend="eager"), config=load_config()
    )
    blocks = engine.lm.model.model.layers
    assert engine.fast_path is None and all(len(block._forward_hooks) == 0 for block in blocks)
    eager = engine.compare(Q1, vector, 1, 2.0, GREEDY)
    fast = engine.warm_up()
    assert fast is not None and engine.fast_path is fast and engine.warm_up() is fast  # once
    assert all(len(block._forward_hooks) == 1 for block in blocks)
    assert engine.compare(Q1, vector, 1, 2.0, GREEDY).token_ids == eager.token_ids
    plain = make_tiny_engine(tiny_tokenizer, config=load_config())  # no compile, no CUDA: nothing to set up
    assert plain.warm_up() is None and plain.fast_path is None
