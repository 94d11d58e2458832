"""The compiled fast path in the multi-user static batch (issue 12 item 1; decode/compiled_batch.py): on a tiny
random Llama on the CPU with torch.compile's "eager" backend (graph capture, no code generation), several users'
requests decode in one static batch through the compiled step for the shapes warmed at start, each getting what it
gets alone (greedy and sampled, different layers / vectors / operators); other shapes run the plain step; no
request triggers a compile; a compiled step that fails falls back to the plain step, logged.
"""

from __future__ import annotations

import logging

import pytest
import torch
from fixtures import make_tiny_lm
from scheduler_helpers import alone, submit_together, user

from steering.decode import compiled_batch
from steering.decode.fast_path import FastPath
from steering.decode.scheduler import Scheduler
from steering.decode.static_batch import StaticBatch

TOKENS = (12, 16, 8)


@pytest.fixture(scope="module")
def vectors():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(64, generator=generator) * 4.0 for _ in range(3)]


@pytest.fixture(scope="module")
def lm(tiny_tokenizer):
    lm = make_tiny_lm(tiny_tokenizer)
    lm.fast_path = FastPath(lm.model, compile=True, backend="eager", bucket=16)
    yield lm
    lm.fast_path.steering.remove()


def batch_shapes(lm, vectors) -> set[tuple[int, int]]:
    """The (rows, columns) shapes three users' static batch steps with (recorded from a plain run)."""
    seen: set[tuple[int, int]] = set()
    original = lm.fast_path.batch_steps.plain

    def plain(**kwargs):
        seen.add(lm.fast_path.batch_steps.shape(kwargs))
        return original(**kwargs)

    lm.fast_path.batch_steps.plain = plain
    try:
        sched = Scheduler(lm, fast_path=lm.fast_path)
        for ticket in submit_together(sched, lm, [user(i, vectors, n) for i, n in enumerate(TOKENS)]):
            ticket.wait(60)
        sched.close()
    finally:
        del lm.fast_path.batch_steps.plain
    return seen


def test_users_in_one_compiled_batch_get_what_each_gets_alone_and_nobody_waits_for_a_compile(lm, vectors, monkeypatch):
    monkeypatch.setattr(compiled_batch, "STANCE", "fail_on_recompile")  # a guard failure would show as a fallback
    steps = lm.fast_path.batch_steps
    shapes = batch_shapes(lm, vectors)
    assert shapes and steps.compiled_steps == 0 and steps.plain_steps > 0  # nothing warmed: plain step only
    assert lm.fast_path.compiles == 0
    steps.warm_up(sorted({rows for rows, _ in shapes}), sorted({cols for _, cols in shapes}))
    assert steps.ready >= shapes and lm.fast_path.compiles > 0
    compiles, plain = lm.fast_path.compiles, steps.plain_steps
    requests = [user(i, vectors, n) for i, n in enumerate(TOKENS)]
    expected = [alone(lm, r) for r in requests]
    sched = Scheduler(lm, fast_path=lm.fast_path)
    results = [t.wait(60) for t in submit_together(sched, lm, requests)]
    sched.close()
    assert [r.token_ids for r in results] == expected  # greedy (user 0) and sampled (users 1, 2) alike
    assert sched.stats.most_requests == 3 and sched.stats.most_rows == 9
    assert all(r.token_ids[0] != r.token_ids[1] for r in results)  # steering acted per row
    assert steps.compiled_steps >= max(TOKENS) - 1 and steps.plain_steps == plain  # every step compiled
    assert lm.fast_path.compiles == compiles and steps.ready >= shapes  # no request compiled, no guard failed


def test_a_shape_not_warmed_runs_the_plain_step_without_compiling(lm, vectors):
    steps = lm.fast_path.batch_steps
    compiles, compiled = lm.fast_path.compiles, steps.compiled_steps
    requests = [user(0, vectors, 6, text="x" * 200)]  # a longer prompt: a cache length nobody warmed
    expected = [alone(lm, r) for r in requests]
    sched = Scheduler(lm, fast_path=lm.fast_path)
    assert [t.wait(60).token_ids for t in submit_together(sched, lm, requests)] == expected
    sched.close()
    assert steps.compiled_steps == compiled and lm.fast_path.compiles == compiles


def test_a_failing_compiled_step_falls_back_logged_and_users_are_served(lm, vectors, caplog, monkeypatch):
    steps = lm.fast_path.batch_steps
    batch = StaticBatch(lm.model, lm.fast_path)
    batch._resize(4, 16)
    steps.ready.add((4, batch.length))

    def broken(**kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(lm.fast_path, "decode_step", broken)
    requests = [user(1, vectors, 6, text="x")]
    expected = [alone(lm, r) for r in requests]
    sched = Scheduler(lm, fast_path=lm.fast_path)
    with caplog.at_level(logging.WARNING, logger="steering.decode.compiled_batch"):
        assert [t.wait(60).token_ids for t in submit_together(sched, lm, requests)] == expected
    sched.close()
    assert "compiled step off" in caplog.text and "no compiler here" in caplog.text
    assert (4, batch.length) not in steps.ready


def test_the_users_bench_runs_the_compiled_batch_steps(lm, vectors, monkeypatch):
    """bench --users N --fast-path --compile: warm_rows compiles the buckets of 3 x N rows first, then every user
    is served from the compiled batch steps, each row equal to running alone."""
    from steering.bench.users import run_users

    steps = lm.fast_path.batch_steps
    monkeypatch.setattr(lm.fast_path, "bucket", 256)  # the default length bucket: the bench's prompts fit it
    steps.warm_rows([3, 6])
    assert {4, 8} <= {rows for rows, cols in steps.ready if cols == lm.fast_path.bucket}
    compiles, compiled = lm.fast_path.compiles, steps.compiled_steps
    users = run_users(
        lm, [1, 2], 4, lambda layer: vectors[0], base_layer=1, multiplier=2.0, repeats=1, fast_path=lm.fast_path
    )
    two = users["runs"][1]
    assert two["rows_identical"] == two["rows"] == 6 and two["most_requests_in_batch"] == 2
    assert "compiled (" in users["path"] and steps.compiled_steps > compiled
    assert lm.fast_path.compiles == compiles


def test_the_static_cache_of_a_compiled_shape_is_never_evicted(lm):
    """transformers marks a static cache's tensors static (the compiled graph guards on them): the cache of a
    warmed shape stays while other shapes come and go past FastPath.MAX_CACHES."""
    fast = lm.fast_path
    warmed = fast.cache_factory(4, 16)
    ready = {(4, 16)} | fast.batch_steps.ready
    fast.batch_steps.ready = ready
    for rows in range(1, FastPath.MAX_CACHES + 3):
        fast.cache_factory(8 + rows, 16)  # larger than max_batch: each evicts the previous big one
        fast.cache_factory(rows, 32 * rows)
    assert fast.cache_factory(4, 16) is warmed and len(fast._caches) <= FastPath.MAX_CACHES + len(ready)
