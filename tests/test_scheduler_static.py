"""The scheduler on the fast path (issue 12 item 1): requests of several users in one static-cache batch
(steering/decode/static_batch.py), on a tiny random Llama on the CPU (FastPath(compile=False): the static cache
and persistent hooks the CUDA-graph path replays, without the graphs).

Every request is compared with the same request run alone through generation.generate, token for token, greedy
and sampled; the tests that exist for both run on the eager scheduler too (parametrized "eager" / "static").
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from fixtures import make_tiny_lm
from scheduler_helpers import LONG, SHORT, alone, conv, submit_together, user

from steering.core.hooks import SteeringPlan
from steering.decode.fast_path import FastPath
from steering.decode.generation import SamplingSettings
from steering.decode.scheduler import Request, Scheduler
from steering.decode.static_batch import StaticBatch, bucket_for
from steering.errors import SteeringError


@pytest.fixture(scope="module")
def lm(static_lm):
    return static_lm  # conftest: static cache, persistent hooks, no graphs


@pytest.fixture(scope="module")
def vectors():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(64, generator=generator) * 4.0 for _ in range(3)]


@pytest.fixture(params=["eager", "static"])
def kind(request):
    return request.param


def scheduler(lm, kind: str, **kwargs) -> Scheduler:
    return Scheduler(lm, fast_path=lm.fast_path if kind == "static" else None, **kwargs)


def moves(monkeypatch) -> list[int]:
    """The column shifts of every StaticBatch from now on: > 0 right (a longer prompt joins), < 0 compaction."""
    seen: list[int] = []
    original = StaticBatch._move

    def move(self, lo, hi, by):
        seen.append(by)
        return original(self, lo, hi, by)

    monkeypatch.setattr(StaticBatch, "_move", move)
    return seen


def test_buckets():
    assert [bucket_for(n) for n in (1, 4, 5, 9, 17, 33, 48, 49, 70)] == [4, 4, 8, 16, 32, 48, 48, 64, 80]


def test_three_users_in_one_batch_get_what_each_gets_alone(lm, vectors, kind):
    sched = scheduler(lm, kind)
    requests = [user(i, vectors, tokens) for i, tokens in enumerate((16, 24, 10))]
    expected = [alone(lm, r) for r in requests]
    tickets = submit_together(sched, lm, requests)
    results = [t.wait(60) for t in tickets]
    assert [r.token_ids for r in results] == expected  # greedy (user 0) and sampled (users 1, 2) alike
    assert sched.stats.most_requests == 3 and sched.stats.most_rows == 9 and sched.stats.prefills == 1
    assert all(t.shared_steps > 0 for t in tickets)
    assert all(r.token_ids[0] != r.token_ids[1] for r in results)  # steering acted per row
    assert not lm.lock.locked()


def test_a_late_joiner_with_a_longer_prompt_shifts_the_cache(lm, vectors, monkeypatch):
    """The joiner's prompt is longer than the batch's write position: every column moves right first."""
    shifts = moves(monkeypatch)
    sched = scheduler(lm, "static")
    first, late = user(0, vectors, 40, text=SHORT), user(1, vectors, 12, text=LONG * 2)
    expected = [alone(lm, first), alone(lm, late)]
    started = threading.Event()
    first.on_text = lambda texts: started.set()
    running = sched.submit(first)
    assert started.wait(30)
    joiner = sched.submit(late)
    assert [running.wait(60).token_ids, joiner.wait(60).token_ids] == expected
    assert joiner.joined_running and joiner.shared_steps == 11
    assert any(by > 0 for by in shifts)


def after_steps(sched: Scheduler, steps: int) -> None:
    deadline = time.monotonic() + 30
    while sched.stats.steps < steps and time.monotonic() < deadline:
        time.sleep(0.0005)


def test_a_request_that_does_not_fit_waits(lm, vectors):
    """max_length 64: a second request arriving after 30 steps of the first would need more columns than are
    left (FIFO: it waits), and starts when the first has ended."""
    sched = scheduler(lm, "static", max_length=64)
    first, second = user(0, vectors, 40, text=SHORT), user(2, vectors, 40, text=SHORT)
    expected = [alone(lm, first), alone(lm, second)]
    running = sched.submit(first)
    after_steps(sched, 30)
    waiting = sched.submit(second)
    assert [running.wait(60).token_ids, waiting.wait(60).token_ids] == expected
    assert waiting.first_token >= running.finished and waiting.shared_steps == 0


def test_the_columns_compact_when_the_write_position_reaches_the_end(lm, vectors, monkeypatch):
    """max_length 80: A (30 tokens), B joining after 15 steps (50 tokens), C after 42 steps (40 tokens): the
    batch lives longer than the cache is long, so the columns shift left (by the first column still used);
    everybody gets what they get alone."""
    shifts = moves(monkeypatch)
    sched = scheduler(lm, "static", max_length=80)
    requests = [user(0, vectors, 30, text=SHORT), user(1, vectors, 50, text=SHORT), user(2, vectors, 40, text=SHORT)]
    expected = [alone(lm, r) for r in requests]
    tickets = [sched.submit(requests[0])]
    after_steps(sched, 15)
    tickets.append(sched.submit(requests[1]))
    after_steps(sched, 42)
    tickets.append(sched.submit(requests[2]))
    assert [t.wait(60).token_ids for t in tickets] == expected
    assert tickets[1].shared_steps > 0 and tickets[2].shared_steps > 0  # B and C joined running batches
    assert any(by < 0 for by in shifts)  # compaction


def test_a_request_too_long_for_the_static_batch_fails_alone(lm, vectors):
    sched = scheduler(lm, "static", max_length=48)
    ok = user(0, vectors, 8, text=SHORT)
    tickets = submit_together(sched, lm, [user(1, vectors, 40), ok])
    with pytest.raises(SteeringError, match="tokens of cache"):
        tickets[0].wait(60)
    assert tickets[1].wait(60).token_ids == alone(lm, ok)


def test_a_request_of_more_rows_than_the_batch_limit_runs_alone(lm, vectors):
    """max_rows 4: a 3-row request and a 5-row one (a large `steering test` batch) take turns; the large one in a
    bucket of its own (8 rows); each gets what it gets alone."""
    sched = scheduler(lm, "static", max_rows=4)
    small = user(0, vectors, 10, text=SHORT)
    large = Request([conv(SHORT), conv(LONG)] * 2 + [conv(SHORT)], None, SamplingSettings(max_new_tokens=8))
    tickets = submit_together(sched, lm, [small, large])
    assert [t.wait(60).token_ids for t in tickets] == [alone(lm, small), alone(lm, large)]
    assert tickets[1].first_token >= tickets[0].finished and sched.stats.most_rows == 5


def test_stop_cancels_only_its_own_rows(lm, vectors, kind):
    sched = scheduler(lm, kind)
    stop = threading.Event()
    seen = []
    stopped = user(0, vectors, 60, stop_event=stop, on_text=lambda t: (seen.append(1), len(seen) >= 3 and stop.set()))
    other = user(1, vectors, 20)
    expected = alone(lm, other)
    tickets = submit_together(sched, lm, [stopped, other])
    cut, full = tickets[0].wait(60), tickets[1].wait(60)
    assert cut.stopped and max(cut.new_tokens) < 60
    assert not full.stopped and full.token_ids == expected


def test_a_bad_request_never_touches_the_others(lm, vectors, kind):
    sched = scheduler(lm, kind)

    def broken(texts):
        if len(texts[0]) > 3:
            raise RuntimeError("this user's callback broke")

    bad, good = user(2, vectors, 30, on_text=broken), user(0, vectors, 16)
    tickets = submit_together(sched, lm, [bad, good])
    with pytest.raises(RuntimeError, match="callback broke"):
        tickets[0].wait(60)
    assert tickets[1].wait(60).token_ids == alone(lm, good) and tickets[1].shared_steps > 0


def test_a_metered_request_is_refused_by_the_static_scheduler(lm, vectors):
    from steering.ui.meter import Meter

    with pytest.raises(ValueError, match="eager path"):
        scheduler(lm, "static").submit(Request([conv(SHORT)], meter=Meter(vectors[0], 1, 2.0)))


def test_unsteered_rows_and_plain_requests_share_the_batch(lm, vectors):
    sched = scheduler(lm, "static")
    plain = Request([conv(SHORT), conv(LONG)], None, SamplingSettings(max_new_tokens=12))
    steered = user(1, vectors, 9)
    tickets = submit_together(sched, lm, [plain, steered])
    assert [t.wait(60).token_ids for t in tickets] == [alone(lm, plain), alone(lm, steered)]
    assert sched.stats.most_rows == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_static_scheduler_on_cuda_graphs_equals_alone_with_a_graph_per_bucket(tiny_tokenizer, vectors):
    """The default GPU path: the batch's steps replayed from CUDA graphs, one per (bucket, cache length, steered
    layers); a late joiner keeps the bucket's graph replaying; every request equals its eager run alone."""
    from dataclasses import replace

    lm = make_tiny_lm(tiny_tokenizer)
    lm = replace(lm, model=lm.model.cuda(), device=torch.device("cuda", 0))
    fast = FastPath(lm.model, compile=False, bucket=64, cuda_graphs=True)
    try:
        vecs = [v.cuda() for v in vectors]
        sched = Scheduler(lm, fast_path=fast)
        first, late = user(0, vecs, 30, text=SHORT), user(1, vecs, 12)
        expected = [alone(lm, first), alone(lm, late)]
        running = sched.submit(first)
        after_steps(sched, 5)
        joiner = sched.submit(late)
        assert [running.wait(60).token_ids, joiner.wait(60).token_ids] == expected
        assert joiner.shared_steps > 0 and fast.graphs is not None and len(fast.graphs.capture_seconds) >= 2
        buckets = {key[-1][0] for key in fast.graphs.graphs}  # the input shapes: (bucket, 1) ids, ...
        assert buckets <= {4, 8}
    finally:
        fast.steering.remove()


def test_per_row_vectors_equal_each_row_steered_alone():
    """apply_steering with one vector per row ((batch, hidden): rows of different users at one layer) gives each
    row what the (hidden,) form gives it alone: addition exactly, a clamp to float32 rounding."""
    from steering.core.operators import apply_steering, steering_active, unit_vector

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 16, generator=generator)
    vectors = torch.randn(3, 16, generator=generator)
    add, project, target = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 3.0, 0.0])
    active = steering_active(torch.arange(5)[None].expand(3, 5), torch.tensor([0, 2, 4]), hidden.dtype)
    rows = apply_steering(hidden, vectors, unit_vector(vectors), add, project, target, active)
    for i in range(3):
        one = apply_steering(
            hidden[i : i + 1], vectors[i], unit_vector(vectors[i]), add[i : i + 1], project[i : i + 1],
            target[i : i + 1], active[i : i + 1],
        )  # fmt: skip
        assert torch.allclose(rows[i], one[0], atol=1e-6, rtol=0)
    assert torch.equal(rows[0], hidden[0] + 2.0 * vectors[0])  # CAA addition: exact
    assert torch.equal(rows[1, :2], hidden[1, :2]) and not torch.equal(rows[1, 2:], hidden[1, 2:])  # from position 2


def test_set_rows_puts_each_plan_on_its_own_slots(lm, vectors):
    """PersistentSteering.set_rows: each request's plan on its slots, other slots and blocks untouched (zeros)."""
    steering = lm.fast_path.steering
    plans = [SteeringPlan.addition(1, vectors[0], [2.0, -2.0]), SteeringPlan.addition(1, vectors[1], [5.0])]
    try:
        steering.set_rows([([3, 0], plans[0], [4, 5]), ([2], plans[1], [6]), ([1], None, [0])], rows=4)
        assert steering.layers == (1,) and steering.rows == 4
        assert torch.equal(steering.vectors[1, 3], vectors[0]) and torch.equal(steering.vectors[1, 0], vectors[0])
        assert torch.equal(steering.vectors[1, 2], vectors[1]) and not steering.vectors[1, 1].any()
        assert steering.add[1, :4].tolist() == [-2.0, 0.0, 5.0, 2.0] and not steering.add[0].any()
        assert steering.steer_from[:4].tolist() == [5, 0, 6, 4]
    finally:
        steering.clear()


def test_a_join_that_fails_ends_only_the_joiners(lm, vectors, monkeypatch):
    """Copying a joiner into the static batch fails (out of memory while growing the cache, say): the joiner
    ends with that error, the running request goes on and gets what it gets alone."""
    sched = scheduler(lm, "static")
    first, late = user(0, vectors, 30, text=SHORT), user(1, vectors, 12)
    original = StaticBatch.merge

    def merge(self, other, steps):
        if self.rows:  # the second join
            raise RuntimeError("CUDA out of memory while growing the static cache")
        return original(self, other, steps)

    monkeypatch.setattr(StaticBatch, "merge", merge)
    running = sched.submit(first)
    after_steps(sched, 5)
    joiner = sched.submit(late)
    with pytest.raises(RuntimeError, match="out of memory"):
        joiner.wait(60)
    assert running.wait(60).token_ids == alone(lm, first)


def test_a_nan_vector_is_refused_in_one_line_and_the_others_run(lm, vectors, kind):
    # the Python API can hand the engine any tensor (uploads are checked when read): a NaN vector must be a
    # one-line error for its request, not three empty panes (0 x NaN = NaN empties the unsteered row too)
    sched = scheduler(lm, kind)
    nan = torch.full_like(vectors[0], float("nan"))
    bad = Request([conv(LONG)] * 3, SteeringPlan.addition(1, nan, [2.0, 0.0, -2.0]), SamplingSettings(max_new_tokens=8))
    good = user(0, vectors, 8)
    with lm.lock:  # the good request is queued first; the bad one is refused when it is submitted
        ticket = sched.submit(good)
        with pytest.raises(SteeringError, match=r"^layer 1: the steering vector contains NaN or infinite values$"):
            sched.submit(bad).wait(60)
    assert ticket.wait(60).token_ids == alone(lm, good)
